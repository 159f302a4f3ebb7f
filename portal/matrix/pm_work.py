"""Permissions matrix rows of the PM's own screens: raising change orders, reading the invoices of their projects."""

TABLE = """
# Project managers: change orders they raise, the invoices of their projects (read only)
approvals:pm_change_order_new     GET    -              login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_change_order_new     POST   -              login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_change_order_edit    GET    co-draft-own   login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_change_order_edit    GET    co-draft-other login   deny    deny    deny    deny    deny    deny    deny
approvals:pm_change_order_edit    POST   co-draft-own   login   deny    allow   deny    deny    deny    deny    deny
approvals:pm_change_order_edit    POST   co-draft-other login   deny    deny    deny    deny    deny    deny    deny
billing:pm_invoice_list           GET    -              login   deny    allow   deny    deny    deny    deny    deny
billing:pm_invoice_detail         GET    inv-pm-own     login   deny    allow   deny    deny    deny    deny    deny
billing:pm_invoice_detail         GET    inv-pm-other   login   deny    deny    deny    deny    deny    deny    deny
"""

TARGETS = {
    "co-draft-own": "a draft change order on the PM's contract (`pm_change_order_new` POST raises one there)",
    "co-draft-other": "a draft change order on another PM's contract",
    "inv-pm-own": "an invoice of the PM's contract (the whole contract, so of the PM's project too)",
    "inv-pm-other": "`inv-pending`: an invoice of another PM's project",
}

NOTES = {
    "approvals:pm_change_order_new": "PMs raise change orders on contracts of their projects: a draft, then submit "
    "(another PM of the contract or a controller decides). Finance and billing admins raise them in the admin.",
    "approvals:pm_change_order_edit": "Drafts only; a submitted or decided one redirects to the queue.",
    "billing:pm_invoice_list": "A PM reads the invoices (and credit notes) of their projects: no action, no "
    "documents. Finance, collections and auditors have their own invoice screens.",
    "billing:pm_invoice_detail": "Another PM's invoice is a 403.",
}

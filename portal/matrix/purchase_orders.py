"""Permissions matrix rows of purchase orders: the PO page (amount, invoiced, credited, remaining, invoices)."""

TABLE = """
# Purchase orders: finance and billing admins keep them (admin, API); auditors read
billing:purchase_order              GET    po           login   deny    deny    allow   allow   deny    allow   allow
"""

TARGETS = {
    "po": "a client's purchase order that one invoice of the run draws on",
}

NOTES = {
    "billing:purchase_order": "Finance works PO_EXCEEDED invoices from it; billing admins maintain POs in admin and "
    "read their drawdown here; consultants, PMs and collections have no business with a client's PO balance.",
}

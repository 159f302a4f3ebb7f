"""Permissions matrix rows of disputes and credit notes (disputes/urls_disputes.py)."""

TABLE = """
# Disputes and credit notes (finance and collections work disputes; credit notes are finance's; auditors read)
disputes:dispute_list             GET    -            login   deny    deny    allow   allow   allow   deny    allow
disputes:dispute_detail           GET    disp-live    login   deny    deny    allow   allow   allow   deny    allow
disputes:dispute_open             GET    disp-inv     login   deny    deny    allow   allow   allow   deny    deny
disputes:dispute_open             POST   disp-inv     login   deny    deny    allow   allow   allow   deny    deny
disputes:category_suggest         GET    disp-inv     method  method  method  method  method  method  method  method
disputes:category_suggest         POST   disp-inv     login   deny    deny    allow   allow   allow   deny    deny
disputes:classifier               GET    -            login   deny    deny    allow   allow   allow   deny    allow
disputes:dispute_investigate      GET    disp-live    method  method  method  method  method  method  method  method
disputes:dispute_investigate      POST   disp-live    login   deny    deny    allow   allow   allow   deny    deny
disputes:dispute_note             GET    disp-live    method  method  method  method  method  method  method  method
disputes:dispute_note             POST   disp-live    login   deny    deny    allow   allow   allow   deny    deny
disputes:dispute_withdraw         GET    disp-live    method  method  method  method  method  method  method  method
disputes:dispute_withdraw         POST   disp-live    login   deny    deny    allow   allow   allow   deny    deny
disputes:dispute_reassign         GET    disp-live    method  method  method  method  method  method  method  method
disputes:dispute_reassign         POST   disp-live    login   deny    deny    allow   allow   allow   deny    deny
disputes:dispute_resolve          GET    disp-live    method  method  method  method  method  method  method  method
disputes:dispute_resolve          POST   disp-live    login   deny    deny    allow   allow   allow   deny    deny
disputes:dispute_attachment       GET    disp-note    login   deny    deny    allow   allow   allow   deny    allow
disputes:credit_note_new          GET    disp-inv     login   deny    deny    allow   allow   deny    deny    deny
disputes:credit_note_new          POST   disp-inv     login   deny    deny    allow   allow   deny    deny    deny
disputes:credit_note_withdraw     GET    cn-pending   method  method  method  method  method  method  method  method
disputes:credit_note_withdraw     POST   cn-pending   login   deny    deny    allow   allow   deny    deny    deny
disputes:invoice_reissue          GET    inv-credited method  method  method  method  method  method  method  method
disputes:invoice_reissue          POST   inv-credited login   deny    deny    allow   allow   deny    deny    deny
"""

TARGETS = {
    "disp-inv": "a sent invoice without a dispute or credit note (`invoice_id`)",
    "disp-live": "an open dispute on another sent invoice; resolve posts outcome `upheld`",
    "disp-note": "a note with an attachment on `disp-live`",
    "cn-pending": "a credit note awaiting a controller's approval",
    "inv-credited": "an invoice fully credited by an approved credit note, its items released (`invoice_id`)",
}

NOTES = {
    "disputes:dispute_list": "Finance, collections and auditors; PMs and billing admins have no dispute screens.",
    "disputes:dispute_resolve": "Collections may resolve `upheld` (and withdraw); an outcome with a credit note "
    "is refused to collections by the service (finance makes credit notes).",
    "disputes:dispute_attachment": "Attachments are served only through this view, to the readers of disputes.",
    "disputes:category_suggest": "The category the model suggests for the typed description and ticked lines; "
    "it sets nothing (the person picks the category when opening the dispute).",
    "disputes:classifier": "The dispute-category model's held-out accuracy against the most-common-category baseline.",
    "disputes:credit_note_new": "Finance analysts and controllers; a controller approves it (segregation of "
    "duties: not the one who made it).",
    "disputes:invoice_reissue": "Bills the released items of a credited invoice now (a run of its contract and "
    "period).",
}

"""Permissions matrix rows of payments: the payment list and unapplied cash, record, apply, close an exception."""

TABLE = """
# Payments: all payments and unapplied cash (finance acts; collections and auditors read)
disputes:payment_list               GET    -            login   deny    deny    allow   allow   allow   deny    allow
disputes:payment_new                GET    -            login   deny    deny    allow   allow   deny    deny    deny
disputes:payment_new                POST   -            login   deny    deny    allow   allow   deny    deny    deny
disputes:payment_apply              GET    pay-cash     login   deny    deny    allow   allow   deny    deny    deny
disputes:payment_apply              POST   pay-cash     login   deny    deny    allow   allow   deny    deny    deny
disputes:payment_exception_resolve  GET    pay-exc      method  method  method  method  method  method  method  method
disputes:payment_exception_resolve  POST   pay-exc      login   deny    deny    allow   allow   deny    deny    deny
"""

TARGETS = {
    "pay-cash": "unapplied cash: a EUR payment naming no known invoice (PAYMENT_UNMATCHED), applied to a sent "
    "EUR invoice",
    "pay-exc": "the open PAYMENT_UNMATCHED exception of `pay-cash` (closed with a reason: refunded)",
}

NOTES = {
    "disputes:payment_list": "Collections and auditors read payments and unapplied cash; only finance records "
    "and applies them.",
    "disputes:payment_new": "Also the target of the invoice page's 'Record payment' form (finance only).",
    "disputes:payment_exception_resolve": "Closes a payment exception without applying the cash (refund made, "
    "returned by the bank); finance only.",
}

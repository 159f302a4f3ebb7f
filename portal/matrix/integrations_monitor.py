"""Permissions-matrix rows of the integration monitor (ERP outbox, circuits, worker, webhooks, imports)."""

TARGETS = {
    "outbox-dead": "a dead-letter ERP outbox message (the posting of `inv-posted`, out of attempts)",
}

TABLE = """
# Integrations: monitor (finance, billing admins and auditors read; finance retries dead letters)
integrations:monitor              GET    -            login   deny    deny    allow   allow   deny    allow   allow
integrations:outbox_retry         GET    outbox-dead  method  method  method  method  method  method  method  method
integrations:outbox_retry         POST   outbox-dead  login   deny    deny    allow   allow   deny    deny    deny
"""

NOTES = {
    "integrations:monitor": "Read-only for billing admins and auditors; the retry buttons show to finance only.",
    "integrations:outbox_retry": "Finance analysts and controllers send a dead letter again, with a reason "
    "(audited in the transition log); the ERP is asked first whether it has the document.",
}

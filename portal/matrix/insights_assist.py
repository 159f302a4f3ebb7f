"""Permissions matrix rows of assistive intelligence: the risk model's page, SOW upload and suggestions."""

TABLE = """
# Insights: assistive intelligence (risk model quality; SOW suggestions finance and billing admins decide)
insights:model                    GET    -            login   deny    deny    allow   allow   allow   allow   allow
insights:sow_index                GET    -            login   deny    deny    allow   allow   deny    allow   allow
insights:sow_upload               GET    sow-contract login   deny    deny    allow   allow   deny    allow   deny
insights:sow_upload               POST   sow-contract login   deny    deny    allow   allow   deny    allow   deny
insights:sow_review               GET    sow-contract login   deny    deny    allow   allow   deny    allow   allow
insights:sow_reading              GET    sow-reading  login   deny    deny    allow   allow   deny    allow   allow
insights:sow_decide               GET    sow-sugg     method  method  method  method  method  method  method  method
insights:sow_decide               POST   sow-sugg     login   deny    deny    allow   allow   deny    allow   deny
"""

TARGETS = {
    "sow-contract": "a contract (time & materials) to upload a statement of work to and review its suggestions",
    "sow-sugg": "a pending SOW suggestion (a PO number) of that contract; action `accept`",
    "sow-reading": "the reading of a SOW uploaded to that contract (done)",
}

NOTES = {
    "insights:model": "The dispute-risk model's quality (held-out ROC AUC against the baseline) and coefficients: "
    "finance, collections, billing admins and auditors read it.",
    "insights:sow_index": "Contracts with SOW suggestions to decide, and a search to find any contract (`?q=`).",
    "insights:sow_upload": "Finance analysts, controllers and billing admins upload a SOW; auditors change nothing.",
    "insights:sow_review": "Auditors read the suggestions and who decided them.",
    "insights:sow_reading": "The status box of a SOW being read in the background, polled by the review page.",
    "insights:sow_decide": "Accepting needs a reason; on a draft contract it applies the term through an audited "
    "save (a rate: a contract rate from today), on a live contract it drafts a change order that someone else "
    "approves; the service checks the role again.",
}

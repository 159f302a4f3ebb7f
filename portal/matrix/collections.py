"""Permissions matrix rows of collections: AR aging, dunning, hand-offs, client statements and profiles."""

TABLE = """
# Collections: AR aging, dunning, hand-offs, client statements (collections acts; finance and auditors read)
disputes:aging                    GET    -            login   deny    deny    allow   allow   allow   deny    allow
disputes:dunning                  GET    -            login   deny    deny    allow   allow   allow   deny    allow
disputes:dunning_send             GET    -            method  method  method  method  method  method  method  method
disputes:dunning_send             POST   -            login   deny    deny    deny    deny    allow   deny    deny
disputes:handoff_list             GET    -            login   deny    deny    allow   allow   allow   deny    allow
disputes:handoff_new              GET    coll-inv     login   deny    deny    deny    deny    allow   deny    deny
disputes:handoff_new              POST   coll-inv     login   deny    deny    deny    deny    allow   deny    deny
disputes:handoff_close            GET    coll-handoff method  method  method  method  method  method  method  method
disputes:handoff_close            POST   coll-handoff login   deny    deny    deny    deny    allow   deny    deny
disputes:client_statement         GET    coll-client  login   deny    deny    allow   allow   allow   deny    allow
disputes:collections_profile      GET    coll-client  method  method  method  method  method  method  method  method
disputes:collections_profile      POST   coll-client  login   deny    deny    allow   allow   allow   deny    deny
"""

TARGETS = {
    "coll-inv": "an overdue, sent invoice with an open balance (collections hands it off)",
    "coll-handoff": "an open collections hand-off of another overdue invoice",
    "coll-client": "the client of `coll-inv` (`client_id`): its statement and collections profile",
}

NOTES = {
    "disputes:aging": "Collections' landing page; finance and auditors read it too (and its CSV export, "
    "`?format=csv`, and drill-down, `?client=&bucket=`).",
    "disputes:dunning_send": "Sending payment reminders to customers is collections' job only; the daily "
    "schedule sends without a user.",
    "disputes:handoff_new": "Handing an invoice to an agency, legal or an account manager: collections only.",
    "disputes:collections_profile": "Payment plan and reminder offsets: collections and finance; auditors read "
    "the statement only.",
}

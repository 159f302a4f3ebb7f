"""Permissions-matrix rows of the inbound imports (CSV time import, import history)."""

TARGETS = {
    "imp-dry": "a dry run of a CSV time import whose rows all passed, its file kept (so it can be imported)",
}

TABLE = """
# Integrations: imports (finance imports, auditors read the history)
integrations:import_list          GET    -            login   deny    deny    allow   allow   deny    deny    allow
integrations:import_detail        GET    imp-dry      login   deny    deny    allow   allow   deny    deny    allow
integrations:import_upload        GET    -            login   deny    deny    allow   allow   deny    deny    deny
integrations:import_upload        POST   -            login   deny    deny    allow   allow   deny    deny    deny
integrations:import_confirm       GET    imp-dry      method  method  method  method  method  method  method  method
integrations:import_confirm       POST   imp-dry      login   deny    deny    allow   allow   deny    deny    deny
"""

NOTES = {
    "integrations:import_list": "Every inbound import (CSV and API bulk); auditors read it, nobody else outside "
    "finance.",
    "integrations:import_upload": "Finance analysts and controllers import time; the POST here is a dry run.",
    "integrations:import_confirm": "Imports the file a dry run checked, as a new import.",
}

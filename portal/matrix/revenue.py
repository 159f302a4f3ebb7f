"""Permissions matrix rows of revenue recognition: reports, the monthly close, the reconciliation, estimates."""

TABLE = """
# Revenue recognition: finance and auditors read; finance computes the close (controllers lock it, the service
# checks); PMs propose estimates at completion for their fixed-fee contracts
revenue:report                    GET    -            login   deny    deny    allow   allow   deny    deny    allow
revenue:balances                  GET    -            login   deny    deny    allow   allow   deny    deny    allow
revenue:reconciliation            GET    -            login   deny    deny    allow   allow   deny    deny    allow
revenue:items                     GET    -            login   deny    deny    allow   allow   deny    deny    allow
revenue:close                     GET    -            login   deny    deny    allow   allow   deny    deny    allow
revenue:close                     POST   -            login   deny    deny    allow   allow   deny    deny    deny
revenue:estimates                 GET    -            login   deny    allow   allow   allow   deny    deny    allow
revenue:estimates                 POST   rev-ffc      login   deny    allow   allow   allow   deny    deny    deny
"""

TARGETS = {
    "rev-ffc": "a fixed-fee contract whose project the PM column manages (an estimate is proposed for it)",
}

NOTES = {
    "revenue:close": "POST computes the month's close as a draft (finance); locking it (`action=close`) is for "
    "finance controllers only, checked by `revenue_close`. Auditors see the checklist and progress.",
    "revenue:estimates": "PMs see and propose estimates for their own fixed-fee contracts; finance for all; "
    "approval is a step in the approvals queue (policy 'Estimate at completion').",
}

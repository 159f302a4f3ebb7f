"""Permissions matrix rows of the approval controls (docs/rules/approvals.md): the four-eyes override of a route, and
approval decisions taken *as a delegate* — the matrix's "delegate" dimension.

In the `*-dlg-*` rows every column's user holds a delegation from the open step's approver (a PM, or a
finance controller): only a delegate holding a role the step accepts decides; auditors, consultants
(and API service users) never do, whatever delegation they hold.
"""

TABLE = """
# Approvals: four-eyes override of a pending route (controllers only; the service checks four eyes)
approvals:override_request          GET    req-ovr      method  method  method  method  method  method  method  method
approvals:override_request          POST   req-ovr      login   deny    deny    deny    allow   deny    deny    deny
approvals:override_confirm          GET    ovr-pending  method  method  method  method  method  method  method  method
approvals:override_confirm          POST   ovr-pending  login   deny    deny    deny    allow   deny    deny    deny
approvals:override_withdraw         GET    ovr-pending  method  method  method  method  method  method  method  method
approvals:override_withdraw         POST   ovr-pending  login   deny    deny    deny    allow   deny    deny    deny

# Approvals as a delegate: each column holds a delegation from the open step's approver
approvals:request_decide            POST   req-dlg-pm   login   deny    refused refused allow   deny    refused refused
approvals:request_decide            POST   req-dlg-fc   login   deny    deny    refused allow   deny    refused refused
billing:invoice_approve             POST   inv-dlg-fc   login   deny    deny    refused allow   deny    deny    deny
"""

TARGETS = {
    "req-ovr": "the approval of a 50,000 invoice (analyst, then controller), open at step 1; its policy allows "
    "overrides",
    "ovr-pending": "an override of such an approval, requested by another controller, awaiting confirmation",
    "req-dlg-pm": "the approval of time on a third PM's project (step 1: that PM, escalation: controller); every "
    "column's user holds a delegation from that PM (rows written directly: the service would refuse some)",
    "req-dlg-fc": "the approval of a 50,000 invoice open at step 2 (controller); every column's user holds a "
    "delegation from a third controller",
    "inv-dlg-fc": "the invoice of `req-dlg-fc`",
}

NOTES = {
    "approvals:override_request": "A controller requests an override with a reason; a second, different controller "
    "must confirm it (the service refuses the requester, the preparer and anyone who decided a step).",
    "approvals:override_confirm": "Confirming records an approval on every remaining step, marked as overridden.",
    "approvals:request_decide": "Whoever may view the request may post; the approval engine decides who may "
    "decide the open step (and segregation of duties: a consultant never approves their own time). As a "
    "delegate (`req-dlg-*`): auditors, consultants and roles the step does not accept are refused; a PM "
    "deputising for another PM passes the engine but the time entry's own service accepts only its project's "
    "PM or a controller on the last step (a known limit, refused).",
}

"""The approval screens, one module per screen: the queue, a request and its decision, delegations, overrides.

The work screens that feed approvals (timesheet, expenses, the PM's time, milestone and change-order
queues) live in billing beside their services (`billing.views_work`, `billing.views_pm_work`,
`billing.views_change_orders`); their URLs keep the `approvals:` names (`portal/urls.py`).
"""

from approvals.views.delegations import delegation_end_view, delegations
from approvals.views.queue import index, my_queue, queue_decide
from approvals.views.requests import request_decide, request_detail

__all__ = [
    "delegation_end_view",
    "delegations",
    "index",
    "my_queue",
    "queue_decide",
    "request_decide",
    "request_detail",
]

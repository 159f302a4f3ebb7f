"""Approval screens, mounted at /approvals/.

The work screens that feed approvals (timesheet, expenses, the PM's queues) live in billing
(`billing/urls_work.py`); `portal/urls.py` mounts them under the same `/approvals/` paths and
`approvals:` names, so a link to `approvals:timesheet` is unchanged.
"""

from django.urls import path

from approvals import views
from approvals.views import overrides

app_name = "approvals"

urlpatterns = [
    path("", views.index, name="index"),
    # everyone
    path("mine/", views.my_queue, name="mine"),
    path("mine/decide/", views.queue_decide, name="mine_decide"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("requests/<int:pk>/decide/", views.request_decide, name="request_decide"),
    path("requests/<int:pk>/override/", overrides.override_request, name="override_request"),
    path("overrides/<int:pk>/confirm/", overrides.override_confirm, name="override_confirm"),
    path("overrides/<int:pk>/withdraw/", overrides.override_withdraw, name="override_withdraw"),
    path("delegation/", views.delegations, name="delegation"),
    path("delegation/<int:pk>/end/", views.delegation_end_view, name="delegation_end"),
]

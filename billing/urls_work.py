"""Billing's work screens (consultants' time and expenses, the PM's queues), mounted at /approvals/.

Not a namespace of its own: `portal/urls.py` mounts these patterns together with `approvals.urls`
under the `approvals` namespace, so their paths and names (`approvals:timesheet`, ...) stay as they were.
"""

from django.urls import path

from billing import views_change_orders, views_pm_work, views_work

urlpatterns = [
    # consultants
    path("timesheet/", views_work.timesheet, name="timesheet"),
    path("expenses/", views_work.expense_list, name="expense_list"),
    path("expenses/new/", views_work.expense_new, name="expense_new"),
    path("expenses/<int:pk>/edit/", views_work.expense_edit, name="expense_edit"),
    path("expenses/<int:pk>/submit/", views_work.expense_submit, name="expense_submit"),
    path("expenses/<int:pk>/receipt/", views_work.expense_receipt, name="expense_receipt"),
    # project managers
    path("time/", views_pm_work.pm_time, name="pm_time"),
    path("time/approve-week/", views_pm_work.pm_time_approve_week, name="pm_time_approve_week"),
    path("work/<str:kind>/<int:pk>/reject/", views_pm_work.pm_work_reject, name="pm_work_reject"),
    path("milestones/", views_pm_work.pm_milestone_queue, name="pm_milestones"),
    path("milestones/<int:pk>/<str:action>/", views_pm_work.pm_milestone_action, name="pm_milestone_action"),
    path("change-orders/", views_pm_work.pm_change_order_queue, name="pm_change_orders"),
    path("change-orders/new/", views_change_orders.pm_change_order_new, name="pm_change_order_new"),
    path("change-orders/<int:pk>/edit/", views_change_orders.pm_change_order_edit, name="pm_change_order_edit"),
    path("change-orders/<int:pk>/<str:action>/", views_pm_work.pm_change_order_action, name="pm_change_order_action"),
]

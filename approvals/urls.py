"""Approval screens, mounted at /approvals/."""

from django.urls import path

from approvals import views, views_change_orders, views_override

app_name = "approvals"

urlpatterns = [
    path("", views.index, name="index"),
    # consultants
    path("timesheet/", views.timesheet, name="timesheet"),
    path("expenses/", views.expense_list, name="expense_list"),
    path("expenses/new/", views.expense_new, name="expense_new"),
    path("expenses/<int:pk>/edit/", views.expense_edit, name="expense_edit"),
    path("expenses/<int:pk>/submit/", views.expense_submit, name="expense_submit"),
    path("expenses/<int:pk>/receipt/", views.expense_receipt, name="expense_receipt"),
    # project managers
    path("time/", views.pm_time, name="pm_time"),
    path("time/approve-week/", views.pm_time_approve_week, name="pm_time_approve_week"),
    path("work/<str:kind>/<int:pk>/reject/", views.pm_work_reject, name="pm_work_reject"),
    path("milestones/", views.pm_milestone_queue, name="pm_milestones"),
    path("milestones/<int:pk>/<str:action>/", views.pm_milestone_action, name="pm_milestone_action"),
    path("change-orders/", views.pm_change_order_queue, name="pm_change_orders"),
    path("change-orders/new/", views_change_orders.pm_change_order_new, name="pm_change_order_new"),
    path("change-orders/<int:pk>/edit/", views_change_orders.pm_change_order_edit, name="pm_change_order_edit"),
    path("change-orders/<int:pk>/<str:action>/", views.pm_change_order_action, name="pm_change_order_action"),
    # everyone
    path("mine/", views.my_queue, name="mine"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("requests/<int:pk>/decide/", views.request_decide, name="request_decide"),
    path("requests/<int:pk>/override/", views_override.override_request, name="override_request"),
    path("overrides/<int:pk>/confirm/", views_override.override_confirm, name="override_confirm"),
    path("overrides/<int:pk>/withdraw/", views_override.override_withdraw, name="override_withdraw"),
    path("delegation/", views.delegations, name="delegation"),
    path("delegation/<int:pk>/end/", views.delegation_end_view, name="delegation_end"),
]

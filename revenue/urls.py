from django.urls import path

from revenue import views

app_name = "revenue"

urlpatterns = [
    path("", views.revenue_report, name="report"),
    path("balances/", views.balances, name="balances"),
    path("close/", views.close_screen, name="close"),
    path("reconciliation/", views.reconciliation_page, name="reconciliation"),
    path("items/", views.items, name="items"),
    path("estimates/", views.estimates, name="estimates"),
]

"""/customers/: staff screens of the customer side (client contacts, sending change orders for signature)."""

from django.urls import path

from customers import views_staff

app_name = "customers_staff"

urlpatterns = [
    path("contacts/", views_staff.contacts, name="contacts"),
    path("change-orders/<int:pk>/send/", views_staff.change_order_send, name="change_order_send"),
]

"""Staff screens of the customer side (/customers/): client contacts (invite) and sending a change order for
signature. Thin: the services check the roles again, per object."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from billing.models import ChangeOrder, Client
from customers.models import ClientContact, SignatureEnvelope
from customers.services.contacts import INVITER_ROLES, contact_invite
from customers.services.signatures import envelope_send
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther, require_roles
from kernel.roles import FINANCE_CONTROLLER, PROJECT_MANAGER


class InviteForm(forms.Form):
    client = forms.ModelChoiceField(queryset=Client.objects.order_by("code"))
    name = forms.CharField(max_length=200)
    email = forms.EmailField(max_length=254)


class SendForm(forms.Form):
    contact = forms.ModelChoiceField(queryset=ClientContact.objects.none())
    provider = forms.ChoiceField(choices=SignatureEnvelope.Provider.choices)

    def __init__(self, *args, change_order: ChangeOrder, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["contact"].queryset = ClientContact.objects.filter(
            client_id=change_order.contract.client_id, is_active=True
        )


@require_http_methods(["GET", "POST"])
@require_roles(INVITER_ROLES, "Only finance and billing admins manage client contacts.")
def contacts(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            contact = contact_invite(
                client=form.cleaned_data["client"],
                email=form.cleaned_data["email"],
                name=form.cleaned_data["name"],
                user=request.user,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Invitation sent to {contact.email}.")
            return HttpResponseSeeOther(reverse("customers_staff:contacts"))
    rows = ClientContact.objects.select_related("client").order_by("client__code", "name")[:500]
    return render(
        request,
        "customers/staff/contacts.html",
        {"form": form, "contacts": rows},
        status=400 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
@require_roles(
    (PROJECT_MANAGER, FINANCE_CONTROLLER),
    "Only project managers and finance controllers send change orders for signature.",
)
def change_order_send(request: HttpRequest, pk: int) -> HttpResponse:
    change_order = ChangeOrder.objects.select_related("contract", "contract__client").filter(pk=pk).first()
    if change_order is None:
        raise Http404("No such change order.")
    form = SendForm(request.POST or None, change_order=change_order)
    if request.method == "POST" and form.is_valid():
        try:
            envelope = envelope_send(
                change_order=change_order,
                contact=form.cleaned_data["contact"],
                provider=form.cleaned_data["provider"],
                user=request.user,
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request, f"Change order {change_order.code} sent to {envelope.contact.email} for signature."
            )
            return HttpResponseSeeOther(reverse("customers_staff:change_order_send", args=[pk]))
    envelopes = SignatureEnvelope.objects.filter(change_order=change_order).select_related("contact")
    return render(
        request, "customers/staff/change_order_send.html", {"co": change_order, "form": form, "envelopes": envelopes}
    )

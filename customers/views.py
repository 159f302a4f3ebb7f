"""The customer portal's screens (/customer/): thin views over `customers.selectors` and `customers.services`.

Every page but the login, password and webhook pages is a `contact_view`: anonymous visitors go to the
customer login, a staff session gets 403, and the contact is resolved from the session — every object
is then looked up through the contact's client (another client's record is a 404).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login

from billing.models import InvoiceDocument
from billing.services.documents import invoice_document
from customers import documents as co_documents
from customers import selectors
from customers.auth import CUSTOMER_BACKEND, SESSION_FLAG, is_customer_session
from customers.esign.adapter import SIGNATURE_HEADER
from customers.forms import (
    DeclineForm,
    DisputeForm,
    EmailForm,
    LoginForm,
    NoteForm,
    SetPasswordForm,
    SignForm,
    SignoffForm,
    TokenForm,
)
from customers.services import mfa
from customers.services.contacts import contact_password_reset_request, contact_set_password
from customers.services.portal import customer_dispute_note, customer_dispute_open, milestone_signoff
from customers.services.signatures import (
    WebhookRefused,
    change_order_sign,
    envelope_decline,
    esign_webhook_receive,
)
from customers.tokens import read_token
from kernel.errors import ApplicationError
from kernel.http import stored_file_response
from kernel.security import SESSION_ENROLLED_KEY, client_ip

PENDING_KEY = "customer_pending_login"


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/customer/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("customers:home")


def contact_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A customer page: the contact of a customer session, else the customer login (anonymous) or 403 (staff)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return HttpResponseRedirect(f"{reverse('customers:login')}?next={request.get_full_path()}")
        if not is_customer_session(request):
            return HttpResponseForbidden(
                "The customer portal is for client contacts; staff use the staff pages.", content_type="text/plain"
            )
        contact = selectors.contact_for_user(request.user)
        if contact is None:
            auth_logout(request)
            return HttpResponseRedirect(reverse("customers:login"))
        request.contact = contact
        return view(request, *args, **kwargs)

    return wrapped


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context.setdefault("contact", getattr(request, "contact", None))
    return render(request, f"customers/{template}", context, status=status)


# --- logging in and out -------------------------------------------------------------------------------


def _complete_login(request: HttpRequest, user: Any, device: Any = None) -> None:
    auth_login(request, user, backend=CUSTOMER_BACKEND)
    request.session[SESSION_FLAG] = True
    request.session[SESSION_ENROLLED_KEY] = device is not None
    if device is not None:
        otp_login(request, device)


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = authenticate(
            request, username=form.cleaned_data["email"], password=form.cleaned_data["password"], portal="customer"
        )
        if user is not None:
            if mfa.has_device(user):
                request.session[PENDING_KEY] = {"user": user.pk, "next": _next(request)}
                return HttpResponseRedirect(reverse("customers:login_verify"))
            _complete_login(request, user)
            return HttpResponseRedirect(_next(request))
        form.add_error(None, "That e-mail address and password do not match an active contact.")
    status = 400 if request.method == "POST" else 200
    return _render(request, "login.html", {"form": form, "next": _next(request)}, status)


@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(PENDING_KEY)
    if not pending:
        return HttpResponseRedirect(reverse("customers:login"))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = get_user_model().objects.filter(pk=pending["user"], client_contact__is_active=True).first()
        device = mfa.verify(user=user, token=form.cleaned_data["token"]) if user else None
        if device is not None:
            del request.session[PENDING_KEY]
            _complete_login(request, user, device)
            return HttpResponseRedirect(pending.get("next") or reverse("customers:home"))
        form.add_error("token", "That code is not valid (or was already used). Wait for the next code.")
    return _render(request, "login_verify.html", {"form": form})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if is_customer_session(request):
        auth_logout(request)
    return HttpResponseRedirect(reverse("customers:login"))


@require_http_methods(["GET", "POST"])
def set_password(request: HttpRequest, token: str) -> HttpResponse:
    try:
        contact, purpose = read_token(token)
    except ApplicationError as exc:
        return _render(request, "set_password.html", {"invalid": exc.message})
    form = SetPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            contact_set_password(token=token, password=form.cleaned_data["password"])
        except ApplicationError as exc:
            form.add_error("password", exc.message)
        else:
            return HttpResponseRedirect(reverse("customers:login") + "?done=1")
    return _render(request, "set_password.html", {"form": form, "who": contact, "purpose": purpose})


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST or None)
    sent = False
    if request.method == "POST" and form.is_valid():
        contact_password_reset_request(email=form.cleaned_data["email"])
        sent = True  # the same answer whether or not the address is a contact's
    return _render(request, "password_reset.html", {"form": form, "sent": sent})


@require_http_methods(["GET", "POST"])
@contact_view
def mfa_view(request: HttpRequest) -> HttpResponse:
    enrolled = mfa.has_device(request.user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and not enrolled and form.is_valid():
        device = mfa.enrolment_confirm(user=request.user, token=form.cleaned_data["token"])
        if device is not None:
            otp_login(request, device)
            request.session[SESSION_ENROLLED_KEY] = True
            messages.success(request, "Authenticator app enrolled: you now sign in with a code too.")
            return HttpResponseRedirect(reverse("customers:home"))
        form.add_error("token", "That code is not valid. Wait for the next code and try again.")
    enrolment = None if enrolled else mfa.enrolment_start(user=request.user)
    return _render(request, "mfa.html", {"form": form, "enrolled": enrolled, "enrolment": enrolment})


# --- invoices, documents, statement ------------------------------------------------------------------


@require_GET
@contact_view
def home(request: HttpRequest) -> HttpResponse:
    return _render(request, "home.html", {"lists": selectors.invoice_lists(request.contact)})


@require_GET
@contact_view
def invoice(request: HttpRequest, pk: int) -> HttpResponse:
    inv = selectors.contact_invoice(request.contact, pk)
    return _render(
        request,
        "invoice.html",
        {
            "invoice": inv,
            "lines": selectors.invoice_lines(inv),
            "dispute": selectors.live_dispute(inv),
        },
    )


def _document(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    inv = selectors.contact_invoice(request.contact, pk)
    try:
        document = invoice_document(invoice=inv, kind=kind, user=None)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("customers:invoice", args=[pk]))
    return stored_file_response(
        document.content,
        content_type=document.content_type,
        filename=document.filename,
        sha256=document.sha256,
        attachment=kind != InvoiceDocument.Kind.PDF,
    )


@require_GET
@contact_view
def invoice_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    return _document(request, pk, InvoiceDocument.Kind.PDF)


@require_GET
@contact_view
def invoice_ubl(request: HttpRequest, pk: int) -> HttpResponse:
    return _document(request, pk, InvoiceDocument.Kind.UBL)


@require_GET
@contact_view
def statement(request: HttpRequest) -> HttpResponse:
    return _render(request, "statement.html", {"statement": selectors.statement(request.contact)})


# --- disputes -------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@contact_view
def dispute_new(request: HttpRequest, pk: int) -> HttpResponse:
    inv = selectors.contact_invoice(request.contact, pk)
    form = DisputeForm(request.POST or None, request.FILES or None, lines=selectors.invoice_lines(inv))
    if request.method == "POST" and form.is_valid():
        try:
            dispute = customer_dispute_open(
                contact=request.contact,
                invoice=inv,
                lines=form.selected_lines(),
                category=form.cleaned_data["category"],
                description=form.cleaned_data["description"],
                attachments=form.cleaned_data.get("attachments") or [],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                f"Dispute {dispute.pk} received: {dispute.disputed_amount} {dispute.currency} "
                "is on hold while we look into it; the rest of the invoice stays due.",
            )
            return HttpResponseRedirect(reverse("customers:dispute", args=[dispute.pk]))
    status = 400 if request.method == "POST" else 200
    return _render(request, "dispute_new.html", {"invoice": inv, "form": form}, status)


@require_GET
@contact_view
def disputes(request: HttpRequest) -> HttpResponse:
    return _render(request, "disputes.html", {"disputes": selectors.contact_disputes(request.contact)})


@require_GET
@contact_view
def dispute(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.contact_dispute(request.contact, pk)
    return _render(
        request,
        "dispute.html",
        {
            "dispute": item,
            "notes": selectors.dispute_notes(request.contact, item),
            "timeline": selectors.dispute_history(item),
            "form": NoteForm(),
        },
    )


@require_POST
@contact_view
def dispute_note(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.contact_dispute(request.contact, pk)
    form = NoteForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            customer_dispute_note(
                contact=request.contact,
                dispute=item,
                text=form.cleaned_data["text"],
                attachment=form.cleaned_data.get("attachment"),
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Message sent.")
    else:
        messages.error(request, "Write a message.")
    return HttpResponseRedirect(reverse("customers:dispute", args=[pk]))


@require_GET
@contact_view
def dispute_attachment(request: HttpRequest, pk: int) -> HttpResponse:
    note = selectors.contact_note(request.contact, pk)
    return FileResponse(
        note.attachment.open("rb"), as_attachment=True, filename=note.attachment.name.rsplit("/", 1)[-1]
    )


# --- change orders and milestones -----------------------------------------------------------------------


@require_GET
@contact_view
def change_orders(request: HttpRequest) -> HttpResponse:
    return _render(request, "change_orders.html", {"change_orders": selectors.contact_change_orders(request.contact)})


@require_GET
@contact_view
def change_order(request: HttpRequest, pk: int) -> HttpResponse:
    co = selectors.contact_change_order(request.contact, pk)
    envelope = selectors.live_envelope(co)
    mine = envelope is not None and envelope.contact_id == request.contact.pk and envelope.provider == "portal"
    return _render(
        request,
        "change_order.html",
        {
            "co": co,
            "envelope": envelope,
            "can_sign": mine,
            "signed": selectors.signed_document(co),
            "sign_form": SignForm(initial={"signer_name": request.contact.name}),
            "decline_form": DeclineForm(),
        },
    )


@require_GET
@contact_view
def change_order_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    co = selectors.contact_change_order(request.contact, pk)
    signed = selectors.signed_document(co)
    envelope = selectors.live_envelope(co)
    if signed:
        data = bytes(signed.content)
    elif envelope is not None:
        data = bytes(envelope.document)  # exactly what was sent for signature
    else:
        data = co_documents.change_order_pdf(co)
    name = f"change-order-{co.contract.code}-{co.code}{'-signed' if signed else ''}.pdf"
    response = HttpResponse(data, content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response


@require_POST
@contact_view
def change_order_sign_view(request: HttpRequest, pk: int) -> HttpResponse:
    co = selectors.contact_change_order(request.contact, pk)
    form = SignForm(request.POST)
    if form.is_valid():
        try:
            change_order_sign(
                contact=request.contact,
                change_order=co,
                signer_name=form.cleaned_data["signer_name"],
                agree=form.cleaned_data["agree"],
                ip=client_ip(request) or None,
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"You signed change order {co.code}. The signed PDF is below.")
    else:
        messages.error(request, "Type your full name to sign.")
    return HttpResponseRedirect(reverse("customers:change_order", args=[pk]))


@require_POST
@contact_view
def change_order_decline(request: HttpRequest, pk: int) -> HttpResponse:
    co = selectors.contact_change_order(request.contact, pk)
    form = DeclineForm(request.POST)
    if form.is_valid():
        try:
            envelope_decline(contact=request.contact, change_order=co, reason=form.cleaned_data["reason"])
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"You declined change order {co.code}.")
    else:
        messages.error(request, "Say why you decline.")
    return HttpResponseRedirect(reverse("customers:change_order", args=[pk]))


@require_GET
@contact_view
def milestones(request: HttpRequest) -> HttpResponse:
    return _render(
        request, "milestones.html", {"milestones": selectors.contact_milestones(request.contact), "form": SignoffForm()}
    )


@require_POST
@contact_view
def milestone_signoff_view(request: HttpRequest, pk: int) -> HttpResponse:
    milestone = selectors.contact_milestone(request.contact, pk)
    form = SignoffForm(request.POST)
    form.is_valid()
    try:
        milestone_signoff(
            contact=request.contact,
            milestone=milestone,
            ip=client_ip(request) or None,
            comment=form.cleaned_data.get("comment", ""),
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"You signed off {milestone.name}.")
    return HttpResponseRedirect(reverse("customers:milestones"))


# --- the e-signature provider's webhook ------------------------------------------------------------------


@csrf_exempt
@require_POST
def esign_webhook(request: HttpRequest) -> HttpResponse:
    """Signed provider events (HMAC, freshness, once); anything else is 403 and changes nothing."""
    try:
        envelope = esign_webhook_receive(body=request.body, signature=request.headers.get(SIGNATURE_HEADER, ""))
    except WebhookRefused as exc:
        return JsonResponse({"error": exc.message, "code": exc.code}, status=403)
    except ApplicationError as exc:
        return JsonResponse({"error": exc.message, "code": exc.code}, status=409)
    return JsonResponse({"envelope": envelope.pk, "status": envelope.status})

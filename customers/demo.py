"""Demo client contacts for `manage.py seed_demo` (billing.demo.DEMO_EXTENSIONS): two contacts of two clients
that have issued invoices, with the demo password; a submitted change order of the first is out for signature."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from billing.demo import DEMO_PASSWORD
from billing.models import ChangeOrder, Client, Invoice
from customers.models import ClientContact, SignatureEnvelope

DEMO_CONTACTS = (("ap", "Alex Payable"), ("legal", "Lee Legal"))


def demo_contact_email(client: Client, prefix: str) -> str:
    return f"{prefix}@{client.code.lower()}.example"


def seed_demo_extension(*, scale: int = 1, seed: int = 0, log: Callable[[str], None] = print) -> Counter:
    made: Counter = Counter()
    clients = list(
        Client.objects.filter(invoices__number__isnull=False, invoices__kind=Invoice.Kind.INVOICE)
        .distinct()
        .order_by("code")[: len(DEMO_CONTACTS)]
    )
    with transaction.atomic():
        for client, (prefix, name) in zip(clients, DEMO_CONTACTS, strict=False):
            email = demo_contact_email(client, prefix)
            if ClientContact.objects.filter(email=email).exists():
                continue
            first, _, last = name.partition(" ")
            user = get_user_model().objects.create_user(
                username=f"contact:{email}", email=email, first_name=first, last_name=last, password=DEMO_PASSWORD
            )
            ClientContact.objects.create(
                user=user,
                client=client,
                email=email,
                name=name,
                invited_at=timezone.now(),
                activated_at=timezone.now(),
            )
            made["client contacts"] += 1
        first_contact = ClientContact.objects.filter(email__startswith="ap@").order_by("pk").first()
        if first_contact is not None and not SignatureEnvelope.objects.filter(contact=first_contact).exists():
            co = (
                ChangeOrder.objects.filter(contract__client=first_contact.client, status=ChangeOrder.Status.SUBMITTED)
                .exclude(envelopes__isnull=False)
                .first()
            )
            if co is not None:
                from customers.documents import change_order_pdf, sha256

                sender = co.contract.projects.exclude(project_manager=None).first()
                if sender is not None:
                    pdf = change_order_pdf(co)
                    SignatureEnvelope.objects.create(
                        change_order=co,
                        contact=first_contact,
                        provider=SignatureEnvelope.Provider.PORTAL,
                        document=pdf,
                        document_sha256=sha256(pdf),
                        sent_by=sender.project_manager,
                        sent_at=timezone.now(),
                    )
                    made["signature envelopes"] += 1
    log(f"Customer portal logins (/customer/login/, password {DEMO_PASSWORD}):")
    for contact in ClientContact.objects.select_related("client").order_by("pk")[:5]:
        log(f"  {contact.email:<32} {contact.client.legal_name}")
    return made

"""E-mails of the customer side: invitations and reset links to contacts, notices to the owners (staff)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail

logger = logging.getLogger(__name__)


def portal_base_url() -> str:
    return getattr(settings, "CUSTOMER_PORTAL_BASE_URL", "http://localhost:8000").rstrip("/")


def send(to: Iterable[str], subject: str, body: str) -> None:
    recipients = sorted({address for address in to if address})
    if not recipients:
        logger.info("No recipient for %r", subject)
        return
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)


def owners_of_contract(contract) -> list[str]:
    """The project managers of a contract's projects (who own its change orders and milestones)."""
    from billing.models import Project

    return list(
        Project.objects.filter(contract=contract, project_manager__isnull=False)
        .values_list("project_manager__email", flat=True)
        .distinct()
    )

"""Objects of the approval-control rows of the permissions matrix (portal/matrix/approvals_four_eyes.py)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.contrib.contenttypes.models import ContentType

from approvals.models import ApprovalRequest, Delegation
from approvals.services import approval_decide, approval_override_request, approval_request_open
from billing.models import Person
from billing.services.work import time_entry_create, work_submit
from tests.factories import InvoiceFactory, PersonFactory, ProjectFactory, UserFactory


def _pending_invoice(total: str = "50000.00"):
    return InvoiceFactory(status="pending_approval", subtotal=Decimal(total), total=Decimal(total))


def _delegate_to_every_column(world, delegator) -> None:
    today = datetime.date.today()
    for user in world.users.values():
        Delegation.objects.create(
            delegator=delegator, delegate=user, starts_on=today - datetime.timedelta(days=1),
            ends_on=today + datetime.timedelta(days=7), reason="Matrix: delegate dimension", created_by=delegator,
        )


def build_targets(world) -> dict[str, Any]:
    controller_a = UserFactory(username="matrix-ovr-fc", groups=["finance_controller"])
    analyst = UserFactory(username="matrix-dlg-analyst", groups=["finance_analyst"])

    req_ovr = approval_request_open(subject=_pending_invoice())
    pending = approval_request_open(subject=_pending_invoice())
    override = approval_override_request(request=pending, user=controller_a, reason="Matrix: client deadline")

    # Delegate of a PM: time on a third PM's project.
    dlg_pm = UserFactory(username="matrix-dlg-pm", groups=["project_manager"])
    project = ProjectFactory(contract=world.own_project.contract, project_manager=dlg_pm)
    worker = PersonFactory(role=Person.objects.get(user=world.users["consultant"]).role, name="Dee Delegated")
    entry = time_entry_create(person=worker, project=project, date=datetime.date(2025, 3, 12), hours="3",
                              description="Workshop", user=worker.user)
    entry = work_submit(item=entry, user=worker.user)
    req_dlg_pm = ApprovalRequest.objects.get(
        content_type=ContentType.objects.get_for_model(type(entry)), object_id=entry.pk, status="pending"
    )
    _delegate_to_every_column(world, dlg_pm)

    # Delegate of a controller: an invoice at its controller step.
    dlg_fc = UserFactory(username="matrix-dlg-fc", groups=["finance_controller"])
    invoice = _pending_invoice()
    req_dlg_fc = approval_request_open(subject=invoice)
    approval_decide(request=req_dlg_fc, user=analyst, decision="approve", comment="Matrix: step 1")
    req_dlg_fc.refresh_from_db()
    assert req_dlg_fc.current_step == 2
    _delegate_to_every_column(world, dlg_fc)

    return {
        "req-ovr": req_ovr,
        "ovr-pending": override,
        "req-dlg-pm": req_dlg_pm,
        "req-dlg-fc": req_dlg_fc,
        "inv-dlg-fc": invoice,
    }


_REASON = {"reason": "Matrix check", "comment": "Matrix check"}
BODIES = {
    "approvals:override_request": lambda w, o: dict(_REASON),
    "approvals:override_confirm": lambda w, o: dict(_REASON),
    "approvals:override_withdraw": lambda w, o: dict(_REASON),
}

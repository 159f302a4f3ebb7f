"""Twelve months of billing history for the demo firm, so every KPI chart and the dispute-risk model have data.

`seed_demo` (billing/demo.py) calls `seed_demo_extension` after the billing blocks. The
blocks hold the current contracts' work (August–October 2026, unbilled: the demo's first
billing run makes those invoices). This module adds the history of each client's previous
engagement: a contract `<contract>-PY` (closed, with closed projects of the same practices and
PMs) invoiced monthly from November 2025 to October 2026, when it wound down — runs a few
days after each month end, exceptions and their resolution, approvals with realistic
latencies, numbering, posting, delivery, payments (some late, some partial, the latest still
open), disputes with causes and outcomes, and credit notes. Keeping the history on the
previous contracts means it never consumes a current contract's cap or retainer period, so
the demo's first run still fills the exception queue as documented.

The history is written directly as rows (the billing run and approval services take about a
minute per month at scale 1), keeping the invariants the services keep: statuses agree with
amounts (`paid_amount`, `credited_amount`, balance), numbers are gapless per entity, year
and series and the sequences continue after them, lines are written before the number (the
immutability trigger), every transition the KPIs read has its back-dated `StateLog` row,
every financial row its history with a user and a reason. History invoices carry their time
as summary lines per role (as exported from the previous system): no time entries are linked.

Volumes follow the current work: each previous contract bills, month by month (with ±15 %
variation and a quieter August and December), the lines the demo's first billing run will make
for its current contract (`_preview_first_run` prices them with the billing engine without
writing), so the first run's anomaly scores compare like with like and flag only the odd invoice.
Disputes follow the facts recorded on each invoice (late or unapproved time, PO or change-order
blocks, overridden blocks, real volume anomalies, credit hold) and each client's propensity, so
the dispute-risk model has something honest to learn (about a tenth of the invoices disputed).

Deterministic (`random.Random(f"{seed}:history:{block}")`), idempotent per block (a block
whose `-PY` contracts exist is skipped), and a larger scale adds only the missing blocks.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django_fsm_log.models import StateLog
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from approvals.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest
from billing.demo import BASE_RATES, CLIENTS, CLIENTS_PER_BLOCK, DEFAULT_SEED, PERIOD_END
from billing.models import (
    BillingRun,
    Client,
    Contract,
    DeliveryAttempt,
    Invoice,
    InvoiceException,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceTax,
    Milestone,
    Payment,
    Project,
    Role,
)
from billing.services.pricing import TaxRuleResolver
from disputes.models import Dispute
from insights.models import RiskModel
from kernel.periods import next_month

REASON = "Demo history (seed_demo)"
FIRST_MONTH = date(2025, 11, 1)
#: Days after the period end each monthly run issued its invoices: slow at first, then the 2nd of the month.
RUN_DELAY = (7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 2)
MONTHS = 12
TODAY = date(2026, 11, 27)  # the demo's "today": nothing in the history happens after it
SUFFIX = "-PY"
ROLE_MIX = (("PARTNER", 0.06), ("SENIOR", 0.30), ("CONSULTANT", 0.44), ("ANALYST", 0.20))
DISPUTE_CAUSES = (("hours", 30), ("rate", 24), ("scope", 15), ("missing_po", 9), ("quality", 9), ("tax", 5),
                  ("duplicate", 3), ("other", 5))
#: What clients write when they dispute, per cause (the demo's dispute-category model learns from it). Some
#: messages are vague or mention another cause too, as real ones do.
DISPUTE_WORDING = {
    "hours": ("Our timesheets show fewer hours than invoiced for {month}.",
              "The consultant was on leave two days but the hours were billed.",
              "Hours for the workshop week look overstated; please send the timesheet detail.",
              "We approved 62 hours, the invoice has more."),
    "rate": ("The hourly rate is higher than the rate card in the contract.",
             "A senior rate was charged for work done by a consultant.",
             "The rate increase was never agreed with procurement.",
             "Day rate on the invoice does not match the SOW."),
    "scope": ("This work is outside the agreed scope of the statement of work.",
              "The data migration was not part of the project; no change request was signed.",
              "We did not order the additional training sessions."),
    "missing_po": ("Please reissue quoting our purchase order number.",
                   "No PO reference on the document: our AP system rejects it.",
                   "The PO number quoted is closed; use the new purchase order."),
    "quality": ("The deliverable was not accepted: the report is incomplete.",
                "Defects in the build are still open; we will not pay for rework.",
                "Quality of the analysis was below what was agreed."),
    "tax": ("VAT was charged although the reverse charge applies.",
            "Our VAT number is missing and the tax rate is wrong.",
            "Sales tax should not apply; exemption certificate on file."),
    "duplicate": ("This is a duplicate of an invoice we already paid.",
                  "The same month was billed twice.",
                  "Identical charges appear on the previous invoice."),
    "other": ("Please call us about this invoice.",
              "The invoice was sent to the wrong address.",
              "We need more detail before we can approve it."),
}


def _dispute_description(cause: str, key: str) -> str:
    """A client's message for a dispute of this cause (its own random stream: the demo's numbers stay put)."""
    rng = random.Random(key)  # noqa: S311 - demo data, not secrets
    text = rng.choice(DISPUTE_WORDING.get(cause, DISPUTE_WORDING["other"])).format(month="last month")
    if rng.random() < 0.2:  # vague or mixed messages, as real ones are
        text += " " + rng.choice(DISPUTE_WORDING[rng.choice(list(DISPUTE_WORDING))]).format(month="last month")
    return text


#: Share of history invoices whose month had friction, and what the consultants' notes then said (ADR 0125).
FRICTION_SHARE = 0.08
FRICTION_NOTES = (
    "rework of the data model after the client's review",
    "extra requests outside the SOW from the steering committee",
    "waiting on client access for most of the week; escalated to the sponsor",
    "second attempt at the migration scripts; weekend work to recover the plan",
    "unplanned workshops requested by procurement",
    "client unhappy with the first draft; redone",
)
CALM_NOTES = (
    "workshops and status reporting as planned",
    "build and test of the agreed release",
    "analysis and documentation per the work plan",
    "steering committee and weekly updates",
)

#: The second analyst and controller of the history: the demo logins `analyst2` and `controller2` (billing/demo.py
#: creates them with the demo password; made here without one only when the billing seed did not run).
EXTRA_FINANCE = (("analyst2", "Mia", "Vogel", "finance_analyst"),
                 ("controller2", "Oliver", "Grant", "finance_controller"))
#: Invoices of the last history run per block left half-way through their route (step 1 approved by `analyst`,
#: prepared by `analyst2`), so the controllers' "My approvals" has work before anyone runs billing.
AWAITING_CONTROLLER = 3


def _q(value: Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _at(day: date, hour: float = 9.0) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(hours=hour)


@dataclass
class Refs:
    analysts: list
    controllers: list
    collections: Any
    admin: Any
    policies: dict[str, tuple[ApprovalPolicy, list]]  # name -> (policy, steps)
    roles: dict[str, Role]
    invoice_ct: ContentType
    taxes: TaxRuleResolver
    runs: dict[date, BillingRun]


@dataclass
class Plan:
    """Everything one block writes, gathered first and inserted in bulk."""

    invoices: list[Invoice] = field(default_factory=list)
    lines: dict[int, list[InvoiceLine]] = field(default_factory=lambda: defaultdict(list))  # by invoice index
    taxes: dict[int, list[InvoiceTax]] = field(default_factory=lambda: defaultdict(list))
    # invoice index -> (approved at, entity id, year, series)
    numbers: dict[int, tuple[datetime, int, int, str]] = field(default_factory=dict)
    created: dict[int, datetime] = field(default_factory=dict)
    exceptions: list[tuple[int, InvoiceException, datetime]] = field(default_factory=list)
    logs: list[tuple[int, str, str, str, datetime, Any, str]] = field(default_factory=list)
    requests: list[tuple[int, ApprovalRequest, list[ApprovalDecision]]] = field(default_factory=list)
    payments: list[tuple[int, Payment]] = field(default_factory=list)
    disputes: list[tuple[int, Dispute, int | None]] = field(default_factory=list)  # credit-note index
    deliveries: list[tuple[int, DeliveryAttempt]] = field(default_factory=list)
    milestones: list[tuple[int, int, Milestone]] = field(default_factory=list)  # (invoice idx, line pos, ms)


def seed_demo_extension(*, scale: int = 1, seed: int = DEFAULT_SEED, log: Callable[[str], None] = print) -> Counter:
    """Add the twelve months of history of blocks 0..scale-1 that are missing."""
    total: Counter = Counter()
    if not Client.objects.exists():
        return total
    refs = _refs()
    for block in range(scale):
        codes = [f"CL{block * CLIENTS_PER_BLOCK + i + 1:05d}" for i in range(CLIENTS_PER_BLOCK)]
        if not Client.objects.filter(code=codes[0]).exists():
            continue
        if Contract.objects.filter(client__code__in=codes, code__endswith=SUFFIX).exists():
            continue
        with transaction.atomic():
            made = _History(refs, block, seed, codes).build()
        log(f"History {FIRST_MONTH:%b %Y}–{_month(MONTHS - 1):%b %Y}, block {block + 1}/{scale}: "
            + ", ".join(f"{n:,} {k}" for k, n in made.items()))
        total.update(made)
    if total or _runs_unsummarised(refs):
        _summarise_runs(refs)
    if total or not RiskModel.objects.exists():
        made = _train_risk_model()
        log(f"Dispute-risk model: {made.note}")
        total["risk models"] += 1
    if total:
        _analyze()
    return total


def _runs_unsummarised(refs: Refs) -> bool:
    return any("invoices" not in (run.summary or {}) for run in refs.runs.values())


def _summarise_runs(refs: Refs) -> None:
    """Give each history run the counters a real run records (its summary), from the invoices it holds.

    A history run's invoices are written directly, not by the run: without this the runs page says
    "Done, 0 invoices, nothing was due" beside a list of sixty. The status is the one the run left
    each invoice in (blocked or awaiting approval), as the billing run's own summary records it.
    """
    from django.db.models import Count

    for run in refs.runs.values():
        invoices = list(Invoice.objects.filter(billing_run=run, kind=Invoice.Kind.INVOICE)
                        .select_related("entity").order_by("pk"))
        codes: dict[int, set[str]] = defaultdict(set)
        blocked = set()
        for invoice_id, code, severity in InvoiceException.objects.filter(invoice__in=invoices).values_list(
                "invoice_id", "code", "severity"):
            codes[invoice_id].add(code)
            if severity == InvoiceException.Severity.BLOCKING:
                blocked.add(invoice_id)
        by_status: Counter = Counter()
        totals: dict[str, Decimal] = defaultdict(Decimal)
        by_entity: Counter = Counter()
        by_code: Counter = Counter()
        for inv in invoices:
            by_status["exception" if inv.pk in blocked else "pending_approval"] += 1
            totals[inv.currency] += inv.total
            by_entity[f"{inv.entity.code} {inv.currency}"] += 1
            by_code.update(codes[inv.pk])
        milestones = Milestone.objects.filter(invoice_line__invoice__billing_run=run).aggregate(n=Count("pk"))["n"]
        contracts = len({inv.contract_id for inv in invoices})
        run.summary = {
            **(run.summary or {}),
            "invoices": len(invoices),
            "by_status": dict(sorted(by_status.items())),
            "totals_by_currency": {k: str(v) for k, v in sorted(totals.items())},
            "invoices_by_entity_currency": dict(sorted(by_entity.items())),
            "exceptions_by_code": dict(sorted(by_code.items())),
            "items_billed": {"time_entries": 0, "expenses": 0, "milestones": milestones},
            "skipped": [],
        }
        run.contracts_total = run.contracts_done = contracts
        BillingRun.objects.filter(pk=run.pk).update(summary=run.summary, contracts_total=contracts,
                                                    contracts_done=contracts)


def _train_risk_model() -> RiskModel:
    """Train the dispute-risk model on the history as of the demo's today, then score the open invoices.

    What the weekly task does (insights.tasks.retrain_risk_model); done here so a fresh demo shows
    risk scores at once instead of "never trained" until the first Sunday.
    """
    from insights.services.risk import train_risk_model
    from insights.services.scoring import rescore_open_invoices

    model = train_risk_model(today=TODAY)
    rescore_open_invoices()
    return model


def _analyze() -> None:
    """Refresh the planner's statistics after a bulk load, so the KPI queries get their index plans at once."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _month(k: int) -> date:
    d = FIRST_MONTH
    for _ in range(k):
        d = next_month(d)
    return d


def _rebuilt(obj: Any, **changes: Any) -> Any:
    """An unsaved copy of `obj` with `changes`: FSM-protected fields can only be set when an instance is made."""
    values = {f.name: getattr(obj, f.name) for f in obj._meta.concrete_fields if not f.primary_key}
    return type(obj)(**{**values, **changes})


def _preview_first_run(current: list[Contract]) -> dict[int, list]:
    """The drafts the demo's first billing run will make for the current contracts, priced but not written.

    The history's volumes follow them: a client's previous engagement ran at the scale its current
    contracts bill, so the anomaly score of the first run compares like with like.
    """
    from billing.services.billing_engine import price_contract
    from billing.services.pricing import FxResolver, RateResolver
    from billing.services.run_loading import load_contexts

    if not current:
        return {}
    start, end = PERIOD_END.replace(day=1), PERIOD_END
    contexts, _ = load_contexts([c.pk for c in current], start, end)
    rates = RateResolver(ctx.contract for ctx in contexts)
    fx = FxResolver({(e.currency, ctx.contract.currency) for ctx in contexts for e in ctx.expense_items}, up_to=end)
    taxes = TaxRuleResolver()
    preview = {}
    for ctx in contexts:
        drafts = price_contract(ctx, period_start=start, period_end=end, run_date=end + timedelta(days=4),
                                rates=rates, fx=fx, taxes=taxes)
        preview[ctx.contract.pk] = [d for d in drafts if d.subtotal > 0]
    return preview


def _refs() -> Refs:
    user_model = get_user_model()
    users = {u.username: u for u in user_model.objects.filter(username__in=["analyst", "controller", "collections",
                                                                            "admin"])}
    extra = []
    for username, first, last, group in EXTRA_FINANCE:
        user, created = user_model.objects.get_or_create(
            username=username, defaults=dict(first_name=first, last_name=last, is_staff=True,
                                             email=f"{username}@billable.example"))
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get_or_create(name=group)[0])
        extra.append(user)
    analysts = [u for u in (users.get("analyst"), extra[0]) if u]
    controllers = [u for u in (users.get("controller"), extra[1]) if u]
    policies = {}
    for policy in ApprovalPolicy.objects.filter(subject_type__in=["invoice", "credit_note"]).prefetch_related("steps"):
        policies[policy.name] = (policy, list(policy.steps.all()))
    runs = {}
    for k in range(MONTHS):
        start = _month(k)
        end = next_month(start) - timedelta(days=1)
        run_date = end + timedelta(days=RUN_DELAY[k])
        run = BillingRun.objects.filter(period_start=start, period_end=end, run_date=run_date,
                                        summary__demo_history=True).first()
        if run is None:
            run = BillingRun(period_start=start, period_end=end, run_date=run_date, status=BillingRun.Status.DONE,
                             started_at=_at(run_date, 2), finished_at=_at(run_date, 2.2),
                             summary={"demo_history": True, "note": "Monthly run of the previous year (history)."})
            run.save()
            BillingRun.objects.filter(pk=run.pk).update(created_at=_at(run_date, 2))
        runs[start] = run
    return Refs(analysts=analysts, controllers=controllers, collections=users.get("collections"),
                admin=users.get("admin"), policies=policies, roles={r.code: r for r in Role.objects.all()},
                invoice_ct=ContentType.objects.get_for_model(Invoice), taxes=TaxRuleResolver(), runs=runs)


class _History:
    def __init__(self, refs: Refs, block: int, seed: int, codes: list[str]) -> None:
        self.refs, self.block, self.codes = refs, block, codes
        self.rng = random.Random(f"{seed}:history:{block}")  # noqa: S311 - demo data, not secrets
        self.rng_key = f"{seed}:history:{block}"
        self.plan = Plan()
        self.counts: Counter = Counter()

    # --- structure -----------------------------------------------------------------------------

    def build(self) -> Counter:
        clients = {c.code: c for c in Client.objects.filter(code__in=self.codes)}
        self.tags = {self.codes[i]: set(filter(None, CLIENTS[i][5].split(","))) for i in range(CLIENTS_PER_BLOCK)}
        self.lateness = {code: self.rng.choices((-3, 1, 6, 15, 30, 50), (25, 30, 20, 13, 8, 4))[0]
                         for code in self.codes}
        # Some clients dispute readily, most rarely: their past dispute rate is what the risk model reads.
        self.disputing = {code: self.rng.choices((0.3, 1.0, 3.0), (40, 40, 20))[0] for code in self.codes}
        # Payment behaviour is persistent and goes with friction, as in real firms (ADR 0125): the clients that
        # dispute readily also pay later and more often in parts. The same delays as drawn above, handed out again
        # so that the more a client disputes, the later it tends to pay (with noise; a separate stream, so the rest
        # of the history draws what it drew before and the firm's delays keep their distribution).
        behaviour = random.Random(f"{self.rng_key}:behaviour")  # noqa: S311 - demo data, not secrets
        keyed = sorted(self.codes, key=lambda c: math.log(self.disputing[c]) + behaviour.gauss(0, 0.8))
        for code, late in zip(keyed, sorted(self.lateness.values()), strict=True):
            self.lateness[code] = late
        self.partial = {code: {0.3: 0.02, 1.0: 0.05, 3.0: 0.16}[self.disputing[code]] for code in self.codes}
        for code in self.codes:
            if "credit_hold" in self.tags[code]:
                self.lateness[code] = 55
        current = list(Contract.objects.filter(client__code__in=self.codes).select_related("client", "entity")
                       .prefetch_related("projects").order_by("code"))
        previous = []
        for c in current:
            cap = None
            if c.billing_model == Contract.BillingModel.FIXED_FEE:
                cap = c.cap
            previous.append(Contract(
                code=f"{c.code}{SUFFIX}"[:40], name=f"{c.name} (previous year)"[:200], client=c.client,
                entity=c.entity, billing_model=c.billing_model, currency=c.currency, rate_card=c.rate_card, cap=cap,
                expense_markup_pct=c.expense_markup_pct, discount_pct=c.discount_pct, po_number=c.po_number,
                payment_terms_days=c.payment_terms_days, billing_frequency=c.billing_frequency,
                invoice_per_project=False, retainer_amount=c.retainer_amount, included_hours=c.included_hours,
                status=Contract.Status.CLOSED,
            ))
        previous = self._create(Contract, previous)
        preview = _preview_first_run(current)
        projects = []
        for old, new in zip(current, previous, strict=True):
            for p in sorted(old.projects.all(), key=lambda p: p.code):
                projects.append(Project(contract=new, code=f"{p.code}{SUFFIX}"[:40], name=f"{p.name} (previous year)",
                                        business_unit=p.business_unit, project_manager=p.project_manager,
                                        status=Project.Status.CLOSED))
        projects = self._create(Project, projects)
        by_contract = defaultdict(list)
        for p in projects:
            by_contract[p.contract_id].append(p)
        to_history = {old_p.pk: new_p for old, new in zip(current, previous, strict=True)
                      for old_p, new_p in zip(sorted(old.projects.all(), key=lambda p: p.code),
                                              by_contract[new.pk], strict=False)}
        for old, contract in zip(current, previous, strict=True):
            contract.client = clients[contract.client.code]
            self._contract(contract, by_contract[contract.pk], preview.get(old.pk, []), to_history)
        self._leave_awaiting_controller()
        self._write()
        return +self.counts

    def _create(self, model, objs: list, *, history: bool = True) -> list:
        if not objs:
            return objs
        if history and hasattr(model, "history"):
            objs = bulk_create_with_history(objs, model, batch_size=1000, default_user=self.refs.admin,
                                            default_change_reason=REASON)
        else:
            objs = model.objects.bulk_create(objs, batch_size=1000)
        self.counts[str(model._meta.verbose_name_plural)] += len(objs)
        return objs

    # --- one contract's year -------------------------------------------------------------------

    def _contract(self, contract: Contract, projects: list[Project], drafts: list | None = None,
                  to_history: dict[int, Project] | None = None) -> None:
        if not projects:
            return
        if drafts:
            self._contract_like_current(contract, projects, drafts, to_history or {})
            return
        rng = self.rng
        model = contract.billing_model
        rates = BASE_RATES.get(contract.currency, BASE_RATES["EUR"])
        base_hours = rng.choice((60, 90, 120, 160, 220)) * max(1, min(len(projects), 2))
        cap_left = None
        if model == Contract.BillingModel.TIME_AND_MATERIALS and rng.random() < 0.15:
            cap_left = _q(base_hours * 12 * 0.6 * 200)  # a capped engagement that runs out before the year ends
        legacy = bool(contract.rate_card and contract.rate_card.code.startswith("LEGACY"))
        for k in range(MONTHS):
            start = _month(k)
            end = next_month(start) - timedelta(days=1)
            lines: list[dict] = []
            if model == Contract.BillingModel.FIXED_FEE:
                if k % 4 != 3 or not contract.cap:
                    continue
                lines.append(dict(kind="milestone", project=projects[0], quantity=Decimal("1.00"),
                                  amount=_q(contract.cap * Decimal("0.12")), description=f"Phase {k // 4 + 1} "
                                  "deliverables accepted (previous-year scope)", milestone=True))
            else:
                if model == Contract.BillingModel.RETAINER and contract.retainer_amount:
                    lines.append(dict(kind="retainer", project=None, quantity=Decimal("1.00"),
                                      amount=contract.retainer_amount, description=f"Retainer fee {start:%B %Y}"))
                    hours = Decimal(rng.choice((0, 0, 0, 8, 16, 24)))
                    if hours:
                        rate = Decimal(rates["SENIOR"])
                        lines.append(dict(kind="overage", project=projects[0], role="SENIOR", quantity=hours,
                                          unit_price=rate, amount=_q(hours * rate),
                                          description="Hours beyond the included hours"))
                else:
                    season = 0.75 if start.month in (8, 12) else 1.0
                    total_h = base_hours * season * rng.uniform(0.75, 1.25)
                    for role, share in ROLE_MIX:
                        if legacy and role == "ANALYST":
                            continue
                        hours = Decimal(round(total_h * share * rng.uniform(0.7, 1.3) * 4) / 4)
                        if hours <= 0:
                            continue
                        rate = Decimal(rates[role])
                        lines.append(dict(kind="time", project=rng.choice(projects), role=role, quantity=hours,
                                          unit_price=rate, amount=_q(hours * rate),
                                          description=f"{self._role_name(role)} time {start:%B %Y}"))
                if contract.discount_pct:
                    base = sum((ln["amount"] for ln in lines if ln["kind"] != "expense"), Decimal("0"))
                    lines.append(dict(kind="discount", project=None, quantity=Decimal("1.00"),
                                      amount=-_q(base * contract.discount_pct / 100),
                                      description=f"Contract discount {contract.discount_pct} %"))
            write_down = None
            if cap_left is not None:
                subtotal = sum((ln["amount"] for ln in lines), Decimal("0"))
                if cap_left <= 0:
                    break
                if subtotal > cap_left:
                    write_down = subtotal - cap_left
                    lines.append(dict(kind="write_down", project=None, quantity=Decimal("1.00"), amount=-write_down,
                                      description="Write-down to contract cap: client agreed cap, excess not billed"))
                cap_left -= subtotal - (write_down or 0)
            self._invoice(contract, projects, start, end, lines, write_down)

    def _contract_like_current(self, contract: Contract, projects: list[Project], drafts: list,
                               to_history: dict[int, Project]) -> None:
        """A year of invoices shaped like what the current contract's first run bills (see `_preview_first_run`).

        Same lines (kinds, projects, roles, prices), volumes varying month to month: the anomaly
        score compares the first run with this history, so it flags the odd invoice, not every one.
        Now and then a month really was out of line (twice the usual volume): the ANOMALY warning then.
        """
        rng = self.rng
        model = contract.billing_model
        monthly = sum((d.subtotal for d in drafts), Decimal("0"))
        role_codes = {r.pk: code for code, r in self.refs.roles.items()}
        cap_left = None
        if model == Contract.BillingModel.TIME_AND_MATERIALS and rng.random() < 0.15 and monthly > 0:
            cap_left = _q(monthly * 12 * Decimal("0.6"))  # a capped engagement that runs out before the year ends
        for k in range(MONTHS):
            start = _month(k)
            end = next_month(start) - timedelta(days=1)
            if model == Contract.BillingModel.FIXED_FEE and k % 4 != 3:
                continue
            season = 0.8 if start.month in (8, 12) else 1.0
            factor = season * rng.uniform(0.85, 1.15)
            anomaly = k >= 5 and rng.random() < 0.035
            if anomaly:
                factor *= rng.uniform(2.0, 2.8)
            for draft in drafts:
                lines: list[dict] = []
                for ln in draft.lines:
                    project = to_history.get(ln.project_id) if ln.project_id else None
                    role = role_codes.get(ln.role_id, "")
                    if ln.kind in ("time", "overage"):
                        hours = Decimal(round(float(ln.quantity) * factor * rng.uniform(0.92, 1.08) * 4) / 4)
                        if hours <= 0:
                            continue
                        rate = ln.unit_price
                        lines.append(dict(kind=ln.kind, project=project or projects[0], role=role, quantity=hours,
                                          unit_price=rate, amount=_q(hours * rate),
                                          description=f"{self._role_name(role)} time {start:%B %Y}"))
                    elif ln.kind == "expense":
                        if rng.random() < 0.1:
                            continue
                        amount = _q(float(ln.amount) * factor * rng.uniform(0.7, 1.3))
                        lines.append(dict(kind="expense", project=project or projects[0], quantity=Decimal("1.00"),
                                          amount=amount, description=f"Travel expenses {start:%B %Y}"))
                    elif ln.kind == "retainer":
                        lines.append(dict(kind="retainer", project=None, quantity=Decimal("1.00"), amount=ln.amount,
                                          description=f"Retainer fee {start:%B %Y}"))
                    elif ln.kind == "milestone":
                        amount = _q(float(ln.amount) * factor)
                        lines.append(dict(kind="milestone", project=project or projects[0],
                                          quantity=Decimal("1.00"), amount=amount, milestone=True,
                                          description=f"Phase {k // 4 + 1} deliverables accepted "
                                          "(previous-year scope)"))
                if contract.discount_pct and lines:
                    base = sum((ln["amount"] for ln in lines if ln["kind"] != "expense"), Decimal("0"))
                    lines.append(dict(kind="discount", project=None, quantity=Decimal("1.00"),
                                      amount=-_q(base * contract.discount_pct / 100),
                                      description=f"Contract discount {contract.discount_pct} %"))
                write_down = None
                if cap_left is not None:
                    subtotal = sum((ln["amount"] for ln in lines), Decimal("0"))
                    if cap_left <= 0:
                        return
                    if subtotal > cap_left:
                        write_down = subtotal - cap_left
                        lines.append(dict(kind="write_down", project=None, quantity=Decimal("1.00"),
                                          amount=-write_down, description="Write-down to contract cap: client "
                                          "agreed cap, excess not billed"))
                    cap_left -= subtotal - (write_down or 0)
                if lines:
                    self._invoice(contract, projects, start, end, lines, write_down, anomaly=anomaly)

    # --- one invoice's life --------------------------------------------------------------------

    def _invoice(self, contract: Contract, projects: list[Project], start: date, end: date, lines: list[dict],
                 write_down: Decimal | None, *, anomaly: bool | None = None) -> None:
        rng, refs, plan = self.rng, self.refs, self.plan
        client = contract.client
        tags = self.tags.get(client.code, set())
        run_date = refs.runs[start].run_date
        created = _at(run_date, 2 + rng.uniform(0, 0.3))
        terms = contract.payment_terms_days or client.payment_terms_days
        subtotal = sum((ln["amount"] for ln in lines), Decimal("0"))
        if subtotal <= 0:
            return
        rule = refs.taxes.find(entity_country=contract.entity.country, client=client)
        tax = _q(subtotal * rule.rate / 100) if rule else Decimal("0.00")
        total = subtotal + tax
        idx = len(plan.invoices)
        plan.invoices.append(None)  # this invoice's slot: its credit notes come after it

        # Exceptions raised by the run and how they were settled.
        blocking: list[tuple[str, str]] = []  # (code, how: resolved | overridden)
        warnings: list[str] = []
        if tags & {"invalid_vat", "no_address"}:
            blocking.append(("CLIENT_MASTER_DATA_INVALID", "overridden"))
        if "po" in tags and rng.random() < 0.12:
            blocking.append(("PO_REQUIRED_MISSING", "resolved"))
        if "pending_co" in tags and rng.random() < 0.3:
            blocking.append(("CHANGE_ORDER_PENDING", "resolved"))
        if rng.random() < 0.035:
            blocking.append(("MISSING_RATE", "resolved"))
        if rng.random() < 0.01:
            blocking.append(("MISSING_FX_RATE", "resolved"))
        if write_down:
            blocking.append(("CAP_EXCEEDED", "resolved"))
        if "credit_hold" in tags:
            warnings.append("CLIENT_ON_CREDIT_HOLD")
        if rng.random() < 0.09:
            warnings.append("LATE_TIME")
        if rng.random() < 0.07:
            warnings.append("UNAPPROVED_TIME_IN_PERIOD")
        if anomaly if anomaly is not None else rng.random() < 0.03:
            warnings.append("ANOMALY")

        t = created
        system = None
        analyst = rng.choice(refs.analysts)
        controller = rng.choice(refs.controllers)
        if blocking:
            self._log(idx, "flag_exception", "draft", "exception", t + timedelta(minutes=1), system,
                      "Blocked: " + ", ".join(c for c, _ in blocking))
            fixed = t + timedelta(hours=rng.lognormvariate(math.log(30), 0.8))
            overridden = any(how == "overridden" for _, how in blocking)
            for code, how in blocking:
                exc = InvoiceException(
                    code=code, severity="blocking", message=f"{code} raised by the monthly run (history).",
                    state="overridden" if how == "overridden" else "resolved",
                    resolved_by=controller if how == "overridden" else analyst, resolved_at=fixed,
                    resolution_reason=("Controller override: confirmed with the client" if how == "overridden"
                                       else "Fixed upstream and revalidated"),
                    amount=write_down if code == "CAP_EXCEEDED" else None, owner=analyst,
                )
                plan.exceptions.append((idx, exc, created))
            if overridden:
                self._log(idx, "override", "exception", "pending_approval", fixed, controller,
                          "Override: confirmed with the client")
            else:
                self._log(idx, "reopen_draft", "exception", "draft", fixed, analyst, "Revalidate")
                self._log(idx, "submit_for_approval", "draft", "pending_approval", fixed + timedelta(minutes=1),
                          analyst, "Revalidated: no blocking exception")
            t = fixed + timedelta(minutes=1)
        else:
            t = t + timedelta(minutes=1)
            self._log(idx, "submit_for_approval", "draft", "pending_approval", t, system, "No blocking exception")

        # Approval: a rejection now and then (fixed and resubmitted), then every step of the route.
        if rng.random() < 0.04:
            policy, steps = self._policy(total, warnings)
            opened = t
            decided = opened + timedelta(hours=rng.lognormvariate(math.log(8), 0.9))
            request = ApprovalRequest(
                content_type=refs.invoice_ct, subject_type="invoice", policy=policy, status="rejected",
                current_step=1, step_opened_at=opened, sla_due_at=opened + timedelta(hours=steps[0].sla_hours),
                contract=contract, amount=total, currency=contract.currency, entity_amount=total,
                warning_codes=warnings, decided_at=decided, outcome_reason="Hours do not match the status report",
            )
            decision = ApprovalDecision(step_order=1, approver=analyst, decision="reject", step_opened_at=opened,
                                        decided_at=decided, comment="Hours do not match the status report")
            plan.requests.append((idx, request, [decision]))
            self._log(idx, "reject", "pending_approval", "draft", decided, analyst,
                      "Hours do not match the status report")
            t = decided + timedelta(hours=rng.uniform(3, 30))
            self._log(idx, "submit_for_approval", "draft", "pending_approval", t, analyst, "Corrected and resubmitted")
        policy, steps = self._policy(total, warnings)
        opened = t
        decisions = []
        used = set()
        for step in steps:
            pool = refs.analysts if step.role == "finance_analyst" else refs.controllers
            choices = [u for u in pool if u.pk not in used] or pool
            approver = rng.choice(choices)
            used.add(approver.pk)
            median = 5 if step.role == "finance_analyst" else 12
            if approver.username.endswith("2"):
                median *= 1.8  # the second analyst and controller are slower: the by-approver chart shows it
            latency = min(rng.lognormvariate(math.log(median), 0.95), 24 * 9)
            decided = opened + timedelta(hours=latency)
            decisions.append(ApprovalDecision(step_order=step.order, approver=approver, decision="approve",
                                              step_opened_at=opened, decided_at=decided))
            opened = decided
        approved_at = opened
        request = ApprovalRequest(
            content_type=refs.invoice_ct, subject_type="invoice", policy=policy, status="approved",
            current_step=steps[-1].order, step_opened_at=decisions[-1].step_opened_at,
            sla_due_at=decisions[-1].step_opened_at + timedelta(hours=steps[-1].sla_hours), contract=contract,
            amount=total, currency=contract.currency, entity_amount=total, warning_codes=warnings,
            decided_at=approved_at,
        )
        plan.requests.append((idx, request, decisions))
        last = decisions[-1].approver
        for code in warnings:
            plan.exceptions.append((idx, InvoiceException(
                code=code, severity="warning", message=f"{code} shown to the approver (history).", state="resolved",
                resolved_by=last, resolved_at=approved_at, resolution_reason="Approved with the warning in view",
            ), created))
        self._log(idx, "approve", "pending_approval", "approved", approved_at, last, "Approved")
        self._log(idx, "mark_posted", "approved", "posted", approved_at, last, "No ERP configured: posted on approval")
        sent = approved_at + timedelta(minutes=rng.uniform(2, 90))
        self._log(idx, "mark_sent", "posted", "sent", sent, None, "E-mailed to the client's billing addresses")
        plan.deliveries.append((idx, DeliveryAttempt(to=client.billing_emails or "ap@client.example",
                                                     attempted_at=sent, result="sent",
                                                     message_id=f"<hist-{self.block}-{idx}@billable.example>",
                                                     attachments=["invoice.pdf"], reason="First delivery")))

        issue = run_date
        due = issue + timedelta(days=terms)
        status, paid, credited = "sent", Decimal("0"), Decimal("0")
        state = "sent"

        # A dispute now and then: its cause, outcome, and the credit note it may bring.
        # Disputes follow what the dispute-risk model should learn from the facts recorded on the invoice:
        # late or unapproved time, PO or change-order trouble, an overridden block, a volume out of line with
        # the client's history, a client on credit hold; a clean invoice of a calm client is rarely disputed.
        codes = {c for c, _ in blocking} | set(warnings)
        dispute_rate = 0.02 * self.disputing.get(client.code, 1.0) + (0.01 if tags & {"po", "pending_co"} else 0)
        dispute_rate += 0.40 if "ANOMALY" in codes else 0
        dispute_rate += 0.40 if "LATE_TIME" in codes else 0
        dispute_rate += 0.35 if "UNAPPROVED_TIME_IN_PERIOD" in codes else 0
        dispute_rate += 0.40 if codes & {"PO_REQUIRED_MISSING", "CHANGE_ORDER_PENDING"} else 0
        dispute_rate += 0.15 if any(how == "overridden" for _, how in blocking) else 0
        dispute_rate += 0.12 if "CLIENT_ON_CREDIT_HOLD" in codes else 0
        # Friction in the month's work (rework, requests outside the SOW, waiting on the client): the consultants'
        # notes say so, and such months are disputed more often. Its own stream per invoice (ADR 0125).
        friction_rng = random.Random(f"{self.rng_key}:friction:{idx}")  # noqa: S311 - demo data, not secrets
        friction = friction_rng.random() < FRICTION_SHARE
        if not friction:
            dispute_rate *= 0.8  # calm months are disputed less: the firm's overall dispute rate stays as it was
        if friction:
            dispute_rate += 0.3
            note = friction_rng.choice(FRICTION_NOTES)
            for ln in lines:
                if ln["kind"] in ("time", "overage"):
                    ln["description"] = f"{ln['description']}: {note}"
        elif friction_rng.random() < 0.25:
            note = friction_rng.choice(CALM_NOTES)
            for ln in lines:
                if ln["kind"] in ("time", "overage"):
                    ln["description"] = f"{ln['description']}: {note}"
        resolution_end = None
        full_credit = False
        if rng.random() < dispute_rate:
            opened_on = sent.date() + timedelta(days=rng.randint(3, 25))
            if opened_on < TODAY:
                cause = rng.choices([c for c, _ in DISPUTE_CAUSES], [w for _, w in DISPUTE_CAUSES])[0]
                if "po" in tags and rng.random() < 0.5:
                    cause = "missing_po"
                share = Decimal("1") if cause == "duplicate" else Decimal(str(rng.choice((0.1, 0.15, 0.2, 0.3, 0.4))))
                amount = _q(subtotal * share)
                days = int(rng.lognormvariate(math.log(18), 0.6))
                closes = opened_on + timedelta(days=max(days, 2))
                owner = refs.collections or analyst
                opened_at = _at(opened_on, 10)
                fields = dict(category=cause, disputed_amount=amount, currency=contract.currency, owner=owner,
                              opened_by=analyst, opened_at=opened_at, due_date=opened_on + timedelta(days=14),
                              description=_dispute_description(cause, f"{self.rng_key}:dispute:{idx}"), source="portal")
                self._log(idx, "dispute", state, "disputed", opened_at, analyst, f"Dispute opened: {cause}")
                state = "disputed"
                cn_idx = None
                if closes < TODAY:
                    outcome = rng.choices(["upheld", "credit", "credit_and_reissue", "withdrawn"], [40, 40, 8, 12])[0]
                    if cause == "duplicate":
                        outcome = "credit_and_reissue"
                    closed_at = _at(closes, 15)
                    fields.update(resolved_at=closed_at, resolved_by=owner)
                    if outcome == "withdrawn":
                        fields.update(status="withdrawn", resolution_note="Client withdrew the objection.")
                    else:
                        fields.update(status="resolved", outcome=outcome, resolution_note={
                            "upheld": "Invoice confirmed with the timesheets.", "credit": "Partial credit agreed.",
                            "credit_and_reissue": "Credited in full; corrected invoice follows."}[outcome])
                    if outcome in ("credit", "credit_and_reissue"):
                        net = subtotal if outcome == "credit_and_reissue" else amount
                        gross = total if outcome == "credit_and_reissue" else min(
                            net + (_q(net * rule.rate / 100) if rule else Decimal("0")), total)
                        cn_idx = self._credit_note(idx, contract, projects, net, gross, closed_at, rule)
                        credited = gross
                        full_credit = credited >= total
                    if full_credit:
                        self._log(idx, "mark_credited", "disputed", "credited", closed_at, owner, "Credited in full")
                        state = "credited"
                    else:
                        self._log(idx, "mark_sent", "disputed", "sent", closed_at, owner,
                                  f"Dispute {fields['status']}: back to sent")
                        state = "sent"
                    resolution_end = closes
                else:
                    fields["status"] = rng.choice(["open", "investigating"])
                d = Dispute(**fields)
                plan.disputes.append((idx, d, cn_idx))
        elif rng.random() < 0.012:
            # A billing error found by finance: a partial credit note without a dispute.
            found = sent + timedelta(days=rng.randint(5, 40))
            if found.date() < TODAY:
                net = _q(subtotal * Decimal("0.1"))
                gross = net + (_q(net * rule.rate / 100) if rule else Decimal("0"))
                self._credit_note(idx, contract, projects, net, gross, found, rule)
                credited = gross

        # Cash: the client's usual delay, later while a dispute runs; some pay in two parts.
        if state != "credited" and state != "disputed":
            late = self.lateness.get(client.code, 0)
            pay_on = due + timedelta(days=round(rng.gauss(late, 4)))
            pay_on = max(pay_on, sent.date() + timedelta(days=2))
            if resolution_end:
                pay_on = max(pay_on, resolution_end + timedelta(days=rng.randint(3, 15)))
            owed = total - credited
            parts = [(pay_on, owed)]
            if rng.random() < self.partial.get(client.code, 0.06) and owed > 100:
                first = _q(owed / 2)
                parts = [(pay_on - timedelta(days=12), first), (pay_on + timedelta(days=6), owed - first)]
            for k, (day, amount) in enumerate(parts):
                if day >= TODAY or amount <= 0:
                    continue
                paid += amount
                plan.payments.append((idx, Payment(
                    client=client, amount=amount, currency=contract.currency, date=day,
                    external_reference=f"HIST-{self.block:03d}-{idx:05d}-{k}", source="manual",
                    note="Bank statement (history)", recorded_by=refs.collections,
                )))
                full = paid >= owed
                self._log(idx, "record_full_payment" if full else "record_partial_payment", state,
                          "paid" if full else "partially_paid", _at(day, 11), refs.collections,
                          f"Payment of {amount} {contract.currency}")
                state = "paid" if full else "partially_paid"
        status = state

        invoice = Invoice(
            kind="invoice", entity=contract.entity, client=client, contract=contract, billing_run=refs.runs[start],
            period_start=start, period_end=end, issue_date=issue, due_date=due, currency=contract.currency,
            po_number=contract.po_number, subtotal=subtotal, tax_total=tax, total=total, status=status,
            approved_by=last, approved_at=approved_at, credited_amount=credited, paid_amount=paid,
            retainer_period=start if contract.billing_model == Contract.BillingModel.RETAINER else None,
            notes="", erp_id="",
        )
        plan.invoices[idx] = invoice
        plan.created[idx] = created
        plan.numbers[idx] = (approved_at, contract.entity_id, issue.year, "invoice")
        for pos, ln in enumerate(lines, start=1):
            role = refs.roles.get(ln.get("role", ""))
            line = InvoiceLine(position=pos, kind=ln["kind"], project=ln.get("project"), role=role,
                               description=ln["description"][:500], quantity=ln["quantity"],
                               unit_price=ln.get("unit_price", ln["amount"]), amount=ln["amount"],
                               rate_source="rate_card" if ln["kind"] in ("time", "overage") else "",
                               rate_source_label="Standard rates (previous year)"
                               if ln["kind"] in ("time", "overage") else "")
            plan.lines[idx].append(line)
            if ln.get("milestone"):
                plan.milestones.append((idx, pos, Milestone(
                    project=ln["project"], name=ln["description"][:200], amount=ln["amount"],
                    due_date=end, status="invoiced", completed_by=analyst, completed_at=_at(end - timedelta(days=6)),
                    approved_by=ln["project"].project_manager, approved_at=_at(end - timedelta(days=rng.randint(0, 5)),
                                                                             16),
                    evidence="Deliverable accepted by the client steering committee.",
                )))
        if rule:
            plan.taxes[idx].append(InvoiceTax(category=rule.category, rate=rule.rate, base=subtotal, amount=tax,
                                              legal_note=rule.legal_note))

    def _role_name(self, code: str) -> str:
        role = self.refs.roles.get(code)
        return role.name if role and role.name else code

    def _policy(self, total: Decimal, warnings: list[str]) -> tuple[ApprovalPolicy, list]:
        pol = self.refs.policies
        if "ANOMALY" in warnings and "Invoice flagged as an anomaly" in pol:
            return pol["Invoice flagged as an anomaly"]
        if "CLIENT_ON_CREDIT_HOLD" in warnings and total < 10000 and \
                "Invoice under 10,000 for a client on credit hold" in pol:
            return pol["Invoice under 10,000 for a client on credit hold"]
        name = ("Invoice under 10,000" if total < 10000 else "Invoice 10,000 to 100,000" if total < 100000
                else "Invoice 100,000 and above")
        return pol.get(name) or next(v for k, v in pol.items() if v[0].subject_type == "invoice")

    def _credit_note(self, of_idx: int, contract: Contract, projects: list[Project], net: Decimal, gross: Decimal,
                     when: datetime, rule: Any) -> int:
        rng, refs, plan = self.rng, self.refs, self.plan
        idx = len(plan.invoices)
        controller = rng.choice(refs.controllers)
        preparer = rng.choice(refs.analysts)
        decided = when + timedelta(hours=min(rng.lognormvariate(math.log(10), 0.8), 24 * 6))
        plan.logs.append((idx, "submit_for_approval", "draft", "pending_approval", when, preparer,
                          "Credit note for the dispute"))
        policy, steps = self.refs.policies.get("Credit note", self._policy(gross, []))
        plan.requests.append((idx, ApprovalRequest(
            content_type=refs.invoice_ct, subject_type="credit_note", policy=policy, status="approved",
            current_step=steps[0].order, step_opened_at=when, sla_due_at=when + timedelta(hours=steps[0].sla_hours),
            contract=contract, amount=gross, currency=contract.currency, entity_amount=gross, decided_at=decided,
            prepared_by=preparer,
        ), [ApprovalDecision(step_order=steps[0].order, approver=controller, decision="approve", step_opened_at=when,
                             decided_at=decided)]))
        for transition, source, target, at in (("approve", "pending_approval", "approved", decided),
                                               ("mark_posted", "approved", "posted", decided),
                                               ("mark_sent", "posted", "sent", decided + timedelta(minutes=20))):
            plan.logs.append((idx, transition, source, target, at, controller, "Credit note issued"))
        plan.invoices.append(Invoice(
            kind="credit_note", credit_of=None, entity=contract.entity, client=contract.client, contract=contract,
            issue_date=when.date(), due_date=when.date(), currency=contract.currency, po_number=contract.po_number,
            subtotal=net, tax_total=gross - net, total=gross, status="sent", prepared_by=preparer,
            approved_by=controller, approved_at=decided, notes=f"credit_of:{of_idx}",
        ))
        plan.created[idx] = when
        plan.numbers[idx] = (decided, contract.entity_id, when.date().year, "credit_note")
        plan.lines[idx].append(InvoiceLine(position=1, kind="credit", project=projects[0], quantity=Decimal("1.00"),
                                           unit_price=net, amount=net, description="Credit agreed in the dispute"))
        if rule:
            plan.taxes[idx].append(InvoiceTax(category=rule.category, rate=rule.rate, base=net, amount=gross - net,
                                              legal_note=rule.legal_note))
        return idx

    def _log(self, idx: int, transition: str, source: str, target: str, at: datetime, by: Any, text: str) -> None:
        self.plan.logs.append((idx, transition, source, target, at, by, text))

    def _leave_awaiting_controller(self) -> None:
        """Stop a few invoices of the last run half-way through their route: step 1 done, a controller's next.

        Prepared by `analyst2` and approved at step 1 by `analyst` (who did not prepare them), they
        wait for a controller, so the controllers' "My approvals" has work before anyone runs
        billing; one with a third step needs a second controller after the first. Chosen among the
        invoices nothing else happened to (no payment, dispute or credit note), after the random
        draws, so the rest of the history is unchanged; unnumbered, they leave the numbering gapless.
        """
        plan, refs = self.plan, self.refs
        if len(refs.analysts) < 2:
            return
        analyst, preparer = refs.analysts[0], refs.analysts[1]
        touched = ({i for i, _ in plan.payments} | {i for i, _, _ in plan.disputes}
                   | {int(inv.notes.split(":")[1]) for inv in plan.invoices if inv.notes.startswith("credit_of:")}
                   | {i for i, _, _ in plan.milestones})
        last_start = _month(MONTHS - 1)
        requests = {idx: (req, ds) for idx, req, ds in plan.requests if req.status == "approved"}
        position = {id(req): k for k, (_, req, _) in enumerate(plan.requests)}
        candidates = [idx for idx, inv in enumerate(plan.invoices)
                      if inv.kind == "invoice" and inv.period_start == last_start and inv.status == "sent"
                      and idx not in touched and idx in requests and len(requests[idx][1]) >= 2]
        # One with a third step (the second controller after the first), the others a controller finishes.
        longer = [idx for idx in candidates if len(requests[idx][1]) >= 3][:1]
        chosen = set(longer + [idx for idx in candidates if idx not in longer][:AWAITING_CONTROLLER - len(longer)])
        for idx in chosen:
            inv = plan.invoices[idx]
            request, decisions = requests[idx]
            first = decisions[0]
            first.approver = analyst
            del decisions[1:]
            step = next(s for s in self.refs.policies[request.policy.name][1] if s.order == 2)
            pending = _rebuilt(request, status="pending", current_step=2, decided_at=None,
                               step_opened_at=first.decided_at, prepared_by=preparer,
                               sla_due_at=first.decided_at + timedelta(hours=step.sla_hours))
            plan.requests[position[id(request)]] = (idx, pending, decisions)
            plan.invoices[idx] = _rebuilt(inv, status="pending_approval", approved_by=None, approved_at=None,
                                          prepared_by=preparer)
            plan.numbers.pop(idx)
        if not chosen:
            return
        plan.logs = [entry for entry in plan.logs
                     if entry[0] not in chosen or entry[1] not in ("approve", "mark_posted", "mark_sent")]
        plan.deliveries = [(idx, d) for idx, d in plan.deliveries if idx not in chosen]
        for idx, exc, _ in plan.exceptions:
            if idx in chosen and exc.severity == "warning":  # still before the approver
                exc.state, exc.resolved_by, exc.resolved_at, exc.resolution_reason = "open", None, None, ""

    # --- writing -------------------------------------------------------------------------------

    def _write(self) -> None:
        plan, refs = self.plan, self.refs
        invoices = plan.invoices
        # Credit notes point at their invoice: resolved after insert (the invoices come first in the list).
        credit_of = {i: int(inv.notes.split(":")[1]) for i, inv in enumerate(invoices) if inv.notes.startswith(
            "credit_of:")}
        plain = [inv for i, inv in enumerate(invoices) if i not in credit_of]
        self._create(Invoice, plain)
        for i, of in credit_of.items():
            invoices[i].credit_of = invoices[of]
            invoices[i].notes = ""
        self._create(Invoice, [invoices[i] for i in credit_of])
        lines, credit_lines = [], []
        for idx, ls in plan.lines.items():
            for line in ls:
                line.invoice = invoices[idx]
                (credit_lines if idx in credit_of else lines).append(line)
        self._create(InvoiceLine, lines)
        for idx in credit_of:
            for line in plan.lines[idx]:
                line.credited_line = plan.lines[credit_of[idx]][0]
        self._create(InvoiceLine, credit_lines)
        taxes = []
        for idx, ts in plan.taxes.items():
            for tax in ts:
                tax.invoice = invoices[idx]
                taxes.append(tax)
        self._create(InvoiceTax, taxes)
        milestones = []
        for idx, pos, ms in plan.milestones:
            ms.invoice_line = plan.lines[idx][pos - 1]
            milestones.append(ms)
        self._create(Milestone, milestones)

        # Numbers: gapless per (entity, year, series), in the order of approval, after what exists.
        order = sorted(plan.numbers.items(), key=lambda kv: (kv[1][1], kv[1][2], kv[1][3], kv[1][0], kv[0]))
        prefixes = {inv.entity_id: inv.entity.number_prefix for inv in invoices}
        counters: dict[tuple, int] = {}
        for idx, (_, entity_id, year, kind) in order:
            key = (entity_id, year, kind)
            if key not in counters:
                seq, _ = InvoiceNumberSequence.objects.select_for_update().get_or_create(
                    entity_id=entity_id, year=year, series=kind)
                counters[key] = seq.last_number
            counters[key] += 1
            series = "" if kind == "invoice" else "CN-"
            invoices[idx].number = f"{prefixes[entity_id]}-{series}{year}-{counters[key]:06d}"
        for (entity_id, year, kind), last in counters.items():
            InvoiceNumberSequence.objects.filter(entity_id=entity_id, year=year, series=kind).update(last_number=last)
        for inv in invoices:
            inv._history_user = inv.approved_by
        bulk_update_with_history(invoices, Invoice, ["number"], batch_size=500, default_user=refs.admin,
                                 default_change_reason=REASON)
        by_created: dict[datetime, list[int]] = defaultdict(list)
        for idx, when in plan.created.items():
            by_created[when.replace(minute=0, second=0, microsecond=0)].append(invoices[idx].pk)
        for when, pks in by_created.items():
            Invoice.objects.filter(pk__in=pks).update(created_at=when)

        exceptions = []
        for idx, exc, _ in plan.exceptions:
            exc.invoice = invoices[idx]
            exceptions.append(exc)
        exceptions = self._create(InvoiceException, exceptions)
        by_time: dict[datetime, list[int]] = defaultdict(list)
        for (_, _, when), exc in zip(plan.exceptions, exceptions, strict=True):
            by_time[when.replace(minute=0, second=0, microsecond=0)].append(exc.pk)
        for when, pks in by_time.items():
            InvoiceException.objects.filter(pk__in=pks).update(created_at=when)

        requests, decisions = [], []
        for idx, req, _ in plan.requests:
            req.object_id = invoices[idx].pk
            requests.append(req)
        requests = self._create(ApprovalRequest, requests)
        for req, (_, _, ds) in zip(requests, plan.requests, strict=True):
            for d in ds:
                d.request = req
                decisions.append(d)
        self._create(ApprovalDecision, decisions)
        by_opened: dict[datetime, list[int]] = defaultdict(list)
        for req in requests:
            by_opened[req.step_opened_at.replace(minute=0, second=0, microsecond=0)].append(req.pk)
        for when, pks in by_opened.items():
            ApprovalRequest.objects.filter(pk__in=pks).update(created_at=when)

        payments = []
        for idx, p in plan.payments:
            p.invoice = invoices[idx]
            p.invoice_reference = invoices[idx].number
            payments.append(p)
        self._create(Payment, payments)
        deliveries = []
        for idx, d in plan.deliveries:
            d.invoice = invoices[idx]
            deliveries.append(d)
        self._create(DeliveryAttempt, deliveries)

        disputes = []
        dispute_logs = []
        for idx, d, cn_idx in plan.disputes:
            d.invoice = invoices[idx]
            d.credit_note = invoices[cn_idx] if cn_idx is not None else None
            disputes.append(d)
        disputes = self._create(Dispute, disputes)
        dispute_ct = ContentType.objects.get_for_model(Dispute)
        for d in disputes:
            if d.status in ("resolved", "withdrawn"):
                dispute_logs.append(StateLog(
                    timestamp=d.resolved_at, by=d.resolved_by, source_state="investigating", state=d.status,
                    transition="resolve" if d.status == "resolved" else "withdraw", content_type=dispute_ct,
                    object_id=d.pk, description=d.resolution_note))
            if d.status != "open":
                dispute_logs.append(StateLog(
                    timestamp=d.opened_at + timedelta(days=1), by=d.owner, source_state="open",
                    state="investigating", transition="investigate", content_type=dispute_ct, object_id=d.pk,
                    description="Investigating"))

        logs = [
            StateLog(timestamp=at, by=by, source_state=source, state=target, transition=transition,
                     content_type=refs.invoice_ct, object_id=invoices[idx].pk, description=f"{text} ({REASON})")
            for idx, transition, source, target, at, by, text in plan.logs if idx >= 0
        ]
        StateLog.objects.bulk_create(logs + dispute_logs, batch_size=2000)
        self.counts["transition log entries"] += len(logs) + len(dispute_logs)
        self.counts["invoices"] = len(invoices) - len(credit_of)
        self.counts["credit notes"] = len(credit_of)

"""The consultant's timesheet and expenses, and the access checks of billing's work screens.

Thin views over `billing.services.work`; the read models are in `billing.selectors_work`.
Who may open what is checked here per object (403 on another person's work); the services check again.
"""

from __future__ import annotations

import datetime
import functools
import mimetypes
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals.views.common import READ_ALL_ROLES, forbidden, form_errors, render_screen, screen_roles
from billing.forms_work import ExpenseForm, parse_hours, parse_week
from billing.models import Expense, Person, Project, TimeEntry
from billing.models.work import MAX_HOURS_PER_DAY, WorkStatus, bookable_projects
from billing.selectors_work import ZERO, Cell, Row, Timesheet, build_timesheet, hours_text, managed_contracts
from billing.services.work import (
    expense_create,
    expense_update_draft,
    time_entry_create,
    time_entry_discard_draft,
    time_entry_update_draft,
    work_redraft,
    work_submit,
    work_submit_bulk,
)
from kernel.errors import ApplicationError
from kernel.http import HttpResponseSeeOther, safe_next
from kernel.listing import paginate
from kernel.roles import (
    PROJECT_MANAGER,
)


def consultant_view(view: Callable) -> Callable:
    """Login required and a consultant record (Person) linked to the login: `request.person`."""

    @functools.wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        person = Person.objects.filter(user=request.user).select_related("role").first()
        if person is None:
            return forbidden(
                request,
                "Your login is not linked to a consultant record, so you have no timesheet or expenses here. "
                "Ask a billing admin to link it.",
            )
        request.person = person
        return view(request, *args, **kwargs)

    return wrapped


def pm_view(view: Callable) -> Callable:
    """Login required; project managers (by role, or managing at least one project) only."""

    @functools.wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if PROJECT_MANAGER not in screen_roles(request) and not managed_contracts(request.user).exists():
            return forbidden(request, "These queues are for project managers: they show the work of their projects.")
        return view(request, *args, **kwargs)

    return wrapped


def _own_project(request: HttpRequest, code_or_pk: str | None) -> Project | HttpResponse | None:
    """The `project` filter: one of the PM's projects; another PM's project is a 403, an unknown one a 404."""
    if not code_or_pk:
        return None
    lookup = Q(code=code_or_pk) | (Q(pk=int(code_or_pk)) if code_or_pk.isdigit() else Q())
    project = Project.objects.filter(lookup).first()
    if project is None:
        raise Http404("No such project.")
    if project.project_manager_id != request.user.pk:
        return forbidden(request, f"Project {project.code} is managed by someone else; you act on your own projects.")
    return project


@require_http_methods(["GET", "POST"])
@consultant_view
def timesheet(request: HttpRequest) -> HttpResponse:
    person: Person = request.person
    source = request.POST if request.method == "POST" else request.GET
    monday = parse_week(source.get("week"))
    extra = [*source.getlist("row"), *source.getlist("add")]
    sheet = build_timesheet(person, monday, extra_project_ids=extra)
    if request.method == "POST":
        action = request.POST.get("action", "save")
        if action == "add" and not request.POST.get("add"):
            messages.info(request, "Choose a project to add a row for it.")
        errors, done = _save_timesheet(sheet, request.POST, request.user, submit=action == "submit")
        if errors:
            messages.error(request, "Nothing was saved: " + " ".join(errors))
            sheet = _as_posted(sheet, request.POST, extra)
            return render_screen(request, "approvals/timesheet.html", {"sheet": sheet, "person": person})
        _report_timesheet(request, sheet, done)
        query: dict[str, Any] = {"week": sheet.key}
        if action == "add" and request.POST.get("add"):
            # Rows without hours yet exist only in the URL: keep them, and the new one.
            empty_rows = [str(row.project.pk) for row in sheet.rows if not any(c.entries for c in row.cells)]
            query["add"] = [*empty_rows, request.POST["add"]]
        return HttpResponseSeeOther(f"{reverse('approvals:timesheet')}?{urlencode(query, doseq=True)}")
    return render_screen(request, "approvals/timesheet.html", {"sheet": sheet, "person": person})


def _as_posted(failed: Timesheet, post: Any, extra: list[str]) -> Timesheet:
    """The week as stored (the failed save was rolled back), showing what was typed and each cell's error."""
    errors = {c.name: c.error for row in failed.rows for c in row.cells if c.error}
    sheet = build_timesheet(failed.person, failed.monday, extra_project_ids=extra)
    for row in sheet.rows:
        note = post.get(f"note-{row.project.pk}")
        if note is not None:
            row.note = note.strip()[:500]
        for cell in row.cells:
            if cell.editable and cell.name in post:
                cell.value = post.get(cell.name, "").strip()
                cell.error = errors.get(cell.name, "")
    return sheet


@dataclass
class SheetChanges:
    created: int = 0
    changed: int = 0
    discarded: int = 0
    submitted: int = 0
    submitted_hours: Decimal = ZERO


def _save_timesheet(sheet: Timesheet, post: Any, user: Any, *, submit: bool) -> tuple[list[str], SheetChanges]:
    """Apply the grid to the person's draft entries; all or nothing. Returns (errors, what changed).

    Decreases go first, so moving hours between projects of one day never trips the 24 h limit halfway.
    Rejected entries are taken back to draft when changed, or when the week is submitted.
    """
    done = SheetChanges()
    errors: list[str] = []
    operations: list[tuple[int, Row, Cell, Decimal]] = []
    for row in sheet.rows:
        posted_note = post.get(f"note-{row.project.pk}")
        note_changed = posted_note is not None and posted_note.strip() != row.note
        if posted_note is not None:
            row.note = posted_note.strip()[:500]
        row.note_changed = note_changed
        for cell in row.cells:
            if not cell.editable or cell.name not in post:
                continue
            raw = post.get(cell.name, "")
            cell.value = raw.strip()
            value = parse_hours(raw)
            if value is None:
                cell.error = f"Enter hours from 0 to {MAX_HOURS_PER_DAY}, at most two decimals."
                errors.append(f"{row.project.code} {cell.day:%a %d %b}: {cell.error}")
                continue
            current = cell.hours
            operations.append((0 if value < current else 1, row, cell, value))
    if errors:
        return errors, done
    day_totals: dict[datetime.date, Decimal] = defaultdict(lambda: ZERO)
    for _, _row, cell, value in operations:
        day_totals[cell.day] += value - cell.hours
    for day, base in sheet.day_totals:
        if base + day_totals[day] > MAX_HOURS_PER_DAY:
            errors.append(f"{day:%a %d %b}: {base + day_totals[day]} h booked; at most {MAX_HOURS_PER_DAY} h a day.")
    if errors:
        return errors, done

    with transaction.atomic():
        for _, row, cell, value in sorted(operations, key=lambda op: op[0]):
            try:
                _apply_cell(sheet.person, row, cell, value, user, submit=submit, done=done)
            except ApplicationError as exc:
                cell.error = exc.message
                errors.append(f"{row.project.code} {cell.day:%a %d %b}: {exc.message}")
        if not errors and submit:
            drafts = list(
                TimeEntry.objects.filter(
                    person=sheet.person, date__gte=sheet.monday, date__lte=sheet.sunday, status=WorkStatus.DRAFT
                )
            )
            try:
                done.submitted = work_submit_bulk(items=drafts, user=user)
                done.submitted_hours = sum((e.hours for e in drafts), ZERO)
            except ApplicationError as exc:
                errors.append(exc.message)
        if errors:
            transaction.set_rollback(True)
    return errors, done


def _apply_cell(
    person: Person, row: Row, cell: Cell, value: Decimal, user: Any, *, submit: bool, done: SheetChanges
) -> None:
    entry = cell.entry
    description = row.note if row.note_changed else None
    if entry is None:
        if value > 0:
            time_entry_create(
                person=person,
                project=row.project,
                date=cell.day,
                hours=value,
                description=row.note,
                user=user,
            )
            done.created += 1
        return
    changed = value != entry.hours or description is not None
    if entry.status == WorkStatus.REJECTED:
        if not (changed or submit):
            return
        work_redraft(item=entry, user=user)
    if value == 0:
        time_entry_discard_draft(entry=entry, user=user)
        done.discarded += 1
    elif changed:
        time_entry_update_draft(entry=entry, hours=value, description=description, user=user)
        done.changed += 1


def _report_timesheet(request: HttpRequest, sheet: Timesheet, done: SheetChanges) -> None:
    week = f"Week {sheet.week_number} ({sheet.monday:%d %b}–{sheet.sunday:%d %b %Y})"
    parts = [
        f"{n} {label}"
        for n, label in ((done.created, "added"), (done.changed, "changed"), (done.discarded, "removed"))
        if n
    ]
    if done.submitted:
        extra = f" ({', '.join(parts)})" if parts else ""
        messages.success(
            request,
            f"{week} submitted: {done.submitted} entr{'y' if done.submitted == 1 else 'ies'}, "
            f"{hours_text(done.submitted_hours)} h, sent to your project managers for approval{extra}.",
        )
    elif parts:
        messages.success(request, f"{week} saved as draft: {', '.join(parts)}. Submit the week when it is complete.")
    elif request.POST.get("action") != "add":
        verb = "save or submit" if request.POST.get("action") == "submit" else "save"
        messages.info(request, f"{week}: nothing to {verb}.")


# --- consultant: expenses ----------------------------------------------------------------------------------


def _bookable_projects(extra: Project | None = None) -> QuerySet[Project]:
    active = bookable_projects()
    if extra is not None:
        active |= Q(pk=extra.pk)
    return Project.objects.filter(active).select_related("contract").order_by("code")


def _own_expense(request: HttpRequest, pk: int) -> Expense | HttpResponse:
    expense = Expense.objects.select_related("project", "project__contract", "person").filter(pk=pk).first()
    if expense is None:
        raise Http404("No such expense.")
    if expense.person_id != request.person.pk:
        return forbidden(request, "This expense is someone else's; you can only change your own.")
    return expense


@require_GET
@consultant_view
def expense_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    qs = Expense.objects.filter(person=request.person).select_related("project").order_by("-date", "-pk")
    if status in WorkStatus.values:
        qs = qs.filter(status=status)
    counts = dict(
        Expense.objects.filter(person=request.person)
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    tabs = [("", "All", sum(counts.values()))] + [(s.value, s.label, counts.get(s.value, 0)) for s in WorkStatus]
    return render_screen(
        request,
        "approvals/expense_list.html",
        {"page": paginate(qs, request.GET.get("page")), "status": status, "tabs": tabs},
    )


def _expense_form_response(request: HttpRequest, form: ExpenseForm, expense: Expense | None) -> HttpResponse:
    return render_screen(request, "approvals/expense_form.html", {"form": form, "expense": expense})


@require_http_methods(["GET", "POST"])
@consultant_view
def expense_new(request: HttpRequest) -> HttpResponse:
    projects = _bookable_projects()
    if request.method == "POST":
        form = ExpenseForm(request.POST, request.FILES, projects=projects)
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    expense = expense_create(
                        person=request.person,
                        project=data["project"],
                        date=data["date"],
                        amount=data["amount"],
                        currency=data["currency"],
                        category=data["category"],
                        description=data["description"],
                        billable=data["billable"],
                        receipt=data["receipt"],
                        user=request.user,
                    )
                    if request.POST.get("action") == "submit":
                        work_submit(item=expense, user=request.user)
            except ApplicationError as exc:
                form_errors(form, exc)
            else:
                _expense_saved(request, expense)
                return HttpResponseSeeOther(reverse("approvals:expense_list"))
    else:
        initial = {"date": timezone.localdate(), "currency": "EUR", "billable": True}
        project_id = request.GET.get("project", "")
        if project_id.isdigit():
            initial["project"] = project_id
        form = ExpenseForm(initial=initial, projects=projects)
    return _expense_form_response(request, form, None)


@require_http_methods(["GET", "POST"])
@consultant_view
def expense_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Correct a draft or rejected expense (a rejected one goes back to draft first), then save or submit."""
    expense = _own_expense(request, pk)
    if isinstance(expense, HttpResponse):
        return expense
    if expense.status not in (WorkStatus.DRAFT, WorkStatus.REJECTED):
        messages.warning(request, f"Expense {expense.pk} is {expense.get_status_display().lower()}; it can no longer "
                                  "be changed.")
        return HttpResponseSeeOther(reverse("approvals:expense_list"))
    projects = _bookable_projects(extra=expense.project)
    if request.method == "POST":
        form = ExpenseForm(request.POST, request.FILES, projects=projects)
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    if expense.status == WorkStatus.REJECTED:
                        work_redraft(item=expense, user=request.user)
                    if data["project"].pk != expense.project_id:
                        raise ApplicationError(
                            "An expense stays on its project; record a new one for another project.",
                            field_errors={"project": ["Cannot move an expense to another project."]},
                        )
                    expense_update_draft(
                        expense=expense,
                        user=request.user,
                        date=data["date"],
                        amount=data["amount"],
                        currency=data["currency"],
                        category=data["category"],
                        description=data["description"],
                        billable=data["billable"],
                        receipt=data["receipt"],
                    )
                    if request.POST.get("action") == "submit":
                        work_submit(item=expense, user=request.user)
            except ApplicationError as exc:
                expense.refresh_from_db()
                form_errors(form, exc)
            else:
                _expense_saved(request, expense)
                return HttpResponseSeeOther(reverse("approvals:expense_list"))
    else:
        form = ExpenseForm(
            initial={
                "project": expense.project_id,
                "date": expense.date,
                "category": expense.category,
                "amount": expense.amount,
                "currency": expense.currency,
                "description": expense.description,
                "billable": expense.billable,
            },
            projects=projects,
        )
    return _expense_form_response(request, form, expense)


def _expense_saved(request: HttpRequest, expense: Expense) -> None:
    what = f"Expense of {expense.amount:,} {expense.currency} on {expense.date:%d %b %Y} ({expense.project.code})"
    if expense.status == WorkStatus.SUBMITTED:
        messages.success(request, f"{what} submitted to the project's manager for approval.")
    else:
        messages.success(request, f"{what} saved as draft; submit it when it is complete.")


@require_POST
@consultant_view
def expense_submit(request: HttpRequest, pk: int) -> HttpResponse:
    expense = _own_expense(request, pk)
    if isinstance(expense, HttpResponse):
        return expense
    try:
        work_submit(item=expense, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        _expense_saved(request, expense)
    return HttpResponseSeeOther(safe_next(request, reverse("approvals:expense_list")))


@require_GET
@login_required
def expense_receipt(request: HttpRequest, pk: int) -> HttpResponse:
    """The receipt file, to its owner, the project's manager, finance, billing admins and auditors."""
    expense = Expense.objects.select_related("person", "project").filter(pk=pk).first()
    if expense is None or not expense.receipt:
        raise Http404("No receipt.")
    user = request.user
    allowed = (
        expense.person.user_id == user.pk
        or expense.project.project_manager_id == user.pk
        or bool(screen_roles(request) & READ_ALL_ROLES)
        or user.is_superuser
    )
    if not allowed:
        return forbidden(request, "Receipts are shown to the person, the project's manager and finance.")
    name = expense.receipt.name.rsplit("/", 1)[-1]
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(expense.receipt.open("rb"), content_type=content_type, filename=name)
    response["Content-Disposition"] = response["Content-Disposition"].replace("attachment", "inline")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    return response

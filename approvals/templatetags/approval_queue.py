"""The approvals queue's rows and a subject's summary, formatted in Python: `{% approval_queue_rows rows %}`.

A queue page is fifty rows of ten cells and two forms each; as a template loop (variables, filters,
`{% url %}`, `{% include %}` and `{% csrf_token %}` per row) it cost most of the page's time. Here each
row is one `kernel.rows.format_html` call (every value escaped), the URLs are reversed once, and
the CSRF token is read once. The markup is the template's, unchanged (ids, labels and htmx attributes that
tests and browsers look for).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.defaultfilters import date as date_filter
from django.template.defaultfilters import floatformat, truncatechars
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst
from django.utils.timezone import template_localtime

from approvals.registry import subject_type_choices
from kernel.money import money
from kernel.rows import format_html, url_pattern

register = template.Library()

_MUTED_DIV = '<div class="muted small">{}</div>'


def _note(text: str) -> SafeString | str:
    return format_html(_MUTED_DIV, truncatechars(text, 60)) if text else ""


def subject_summary(subject_type: str, subject: Any, type_label: str, object_id: int) -> SafeString:
    """What the subject is, in a line (and a note): hours and person, expense category, milestone, change order…"""
    s = subject
    if s is None:
        return format_html('<span class="muted">{} {} (gone)</span>', type_label, object_id)
    if subject_type == "time_entry":
        return format_html(
            "{} h · {} · {}{}{}",
            floatformat(s.hours, "-2"),
            s.person.name,
            date_filter(s.date, "D j M"),
            "" if s.billable else mark_safe(' <span class="badge badge-info">Non-billable</span>'),
            _note(s.description),
        )
    if subject_type == "expense":
        return format_html(
            "{} · {} · {}{}", s.person.name, s.get_category_display(), date_filter(s.date, "j M"), _note(s.description)
        )
    if subject_type == "milestone":
        return format_html("{}{}", s.name, _note(s.evidence))
    if subject_type == "change_order":
        return format_html("{}/{}{}", s.contract.code, s.code, _note(s.description))
    client = getattr(s, "client", None)
    return format_html(
        "{}{}",
        getattr(s, "display_number", "") or s,
        format_html(_MUTED_DIV, client.legal_name) if client else "",
    )


@register.simple_tag
def approval_subject(approval: Any, subject: Any) -> SafeString:
    """The subject's summary on the request page (the same as in the queue)."""
    return subject_summary(approval.subject_type, subject, approval.get_subject_type_display(), approval.object_id)


_ROW = (
    '<tr id="request-{pk}" class="{row_class}">'
    '<td class="col-select"><input type="checkbox" name="request" value="{pk}" form="bulk-decide" id="select-{pk}"'
    ' aria-label="Select {label}"></td>\n'
    '<th scope="row"><a href="{detail}">{title}</a><div class="small">{summary}</div></th>\n'
    "<td>{type_label}</td>\n"
    "<td>{project}{contract}</td>\n"
    '<td class="num">{amount}</td>\n'
    "<td>{prepared_by}</td>\n"
    '<td class="num">{age}</td>\n'
    "<td>{step}/{step_count} · {step_label}{escalated}</td>\n"
    '<td>{overdue} <span class="small">{sla}</span></td>\n'
    '<td class="col-actions">\n'
    '<div class="ap-actions">\n'
    '<form method="post" action="{decide}" hx-post="{decide}" hx-target="#my-approvals" hx-select="#my-approvals"'
    ' hx-swap="outerHTML" hx-disabled-elt="find button">\n'
    '{csrf}<input type="hidden" name="next" value="{here}"><input type="hidden" name="step" value="{step}">\n'
    '<button type="submit" name="decision" value="approve" class="btn btn-sm btn-primary"'
    ' aria-label="Approve {label}">Approve</button>\n'
    "</form>\n"
    '<details class="ap-inline">\n'
    '<summary class="btn btn-sm">Reject…</summary>\n'
    '<form method="post" action="{decide}" hx-post="{decide}" hx-target="#my-approvals" hx-select="#my-approvals"'
    ' hx-swap="outerHTML" hx-disabled-elt="find button">\n'
    '{csrf}<input type="hidden" name="next" value="{here}"><input type="hidden" name="step" value="{step}">'
    '<input type="hidden" name="decision" value="reject">\n'
    '<label for="rq-{pk}">Reason for rejecting {label}</label>\n'
    '<input type="text" id="rq-{pk}" name="comment" required maxlength="1000">\n'
    '<button type="submit" class="btn btn-sm">Reject</button>\n'
    "</form>\n"
    "</details>\n"
    "</div>\n"
    "</td>\n"
    "</tr>\n"
)
_MUTED_DASH = mark_safe('<span class="muted">—</span>')
_SYSTEM = mark_safe('<span class="muted">system</span>')
_CSRF_NOT_PROVIDED = "NOTPROVIDED"  # the csrf_token tag's marker of a context without a token


@register.simple_tag(takes_context=True)
def approval_queue_rows(context: Any, rows: list[Any]) -> SafeString:
    """The `<tr>`s of the approvals queue (`approvals.views.queue.QueueRow`s), every value escaped."""
    csrf_value = context.get("csrf_token")  # what `{% csrf_token %}` writes, read once for every form
    csrf = (
        format_html('<input type="hidden" name="csrfmiddlewaretoken" value="{}">', csrf_value)
        if csrf_value and csrf_value != _CSRF_NOT_PROVIDED
        else ""
    )
    here = format_html("{}", context.get("here", ""))  # escaped once, not per form
    detail = url_pattern("approvals:request_detail")
    decide = url_pattern("approvals:request_decide")
    type_labels = dict(subject_type_choices())
    rows_html = []
    for row in rows:
        e = row.entry
        type_label = type_labels.get(e.subject_type, e.subject_type)
        if e.amount is not None:
            amount = money(e.amount, e.currency)
        elif e.subject_type == "time_entry" and e.subject is not None:
            amount = format_html("{} h", floatformat(e.subject.hours, "-2"))
        else:
            amount = _MUTED_DASH
        rows_html.append(
            format_html(
                _ROW,
                pk=e.pk,
                row_class="is-overdue" if row.overdue else "",
                label=row.label,
                detail=detail.format(e.pk),
                title=capfirst(row.label),
                summary=subject_summary(e.subject_type, e.subject, type_label, e.object_id),
                type_label=type_label,
                project=(
                    format_html('<span class="ap-project-code">{}</span>', e.project_code)
                    if e.project_code is not None
                    else ""
                ),
                contract=format_html(_MUTED_DIV, e.contract_code) if e.contract_code is not None else "",
                amount=amount,
                prepared_by=e.prepared_by if e.prepared_by is not None else _SYSTEM,
                age=row.age,
                step=e.current_step,
                step_count=e.step_count,
                step_label=e.step_label or "—",
                escalated=(
                    format_html(' <span class="badge badge-warning" title="{}">Escalated</span>', e.escalation_reason)
                    if e.escalated
                    else ""
                ),
                overdue=mark_safe('<span class="badge badge-error">Overdue</span>') if row.overdue else "",
                sla=date_filter(template_localtime(e.sla_due_at), "j M H:i"),
                decide=decide.format(e.pk),
                csrf=csrf,
                here=here,
            )
        )
    return mark_safe("".join(rows_html))  # each row is format_html's output: every value in it is escaped

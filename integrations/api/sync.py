"""Inbound-sync API: upserts by `(source, external_id)`, bulk upserts and lists of the records CRM/PSA own.

Per resource (clients, people, contracts, projects, time-entries, expenses, milestones):

- `GET  /api/v1/<resource>/` — list (filters, cursor pagination, bounded queries);
- `POST /api/v1/<resource>/` — upsert one record (body: the record with its `external_id`); 201 created,
  200 updated or unchanged; a refused record is a 400/409 in the error shape; `Idempotency-Key`;
- `GET|PUT /api/v1/<resource>/<external_id>/` — read or upsert one record by its external id (PUT is
  idempotent by nature: no key needed);
- `POST /api/v1/<resource>/bulk/[?partial=true]` — up to 1,000 records, answered per record; all or
  nothing unless `partial=true`. A processed batch answers 200 even when records failed (then
  `status: failed` and nothing was saved): the per-record results are the answer, and the call is
  recorded as an import (`ImportBatch`, kind api_bulk) either way.

The source is the integration client's `source`; a client without one names it in the body
(`source`). Views only shape input and output: the rules are in `integrations.services.inbound`.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from billing.models import (
    ChangeOrder,
    Client,
    Contract,
    ContractRate,
    Expense,
    Milestone,
    Person,
    Project,
    PurchaseOrder,
    TimeEntry,
)
from billing.models.work import WorkStatus
from integrations.api import sync_serializers as s
from integrations.api.base import ApiListView, ApiView, client_of
from integrations.api.filters import CodeListFilter, UtcIsoDateTimeFilter
from integrations.middleware import current_correlation_id
from integrations.services.inbound import MAX_BULK_RECORDS, Result, upsert_record, upsert_records
from kernel.errors import ApplicationError, ConflictError, PermissionDeniedError

#: Refusals that mean "not in this state" (409) rather than "bad input" (400).
STATE_CODES = frozenset({"already_invoiced", "milestone_locked", "change_order_locked", "invalid_transition",
                         "project_not_active", "contract_not_active", "person_inactive", "project_closed",
                         "contract_closed", "contract_locked", "contract_terms_locked", "po_locked"})


def _source(client: Any, data: Any) -> str:
    """The client's own source; a client without one must name it (and may not write another's)."""
    asked = str(data.get("source") or "").strip() if isinstance(data, dict) else ""
    if client.source:
        if asked and asked != client.source:
            raise PermissionDeniedError(
                f"This client writes records of source {client.source!r} only.", code="source_not_allowed"
            )
        return client.source
    if not asked:
        raise ApplicationError("This client has no default source: send `source` (e.g. psa, crm).",
                               code="required", field_errors={"source": ["Required."]})
    return asked


def _refusal(result: Any) -> ApplicationError:
    cls = ConflictError if result.code in STATE_CODES else ApplicationError
    return cls(result.message, code=result.code, field_errors=result.field_errors)


class _Resource:
    """What the views of one resource need: its name in the service, model, serializers, scopes, queryset."""

    def __init__(self, *, name: str, path: str, model: type, out: type, inp: type, write: str, read: str,
                 queryset: Any, filterset: type, tag: str):
        self.name, self.path, self.model, self.out, self.inp = name, path, model, out, inp
        self.write, self.read, self.queryset, self.filterset, self.tag = write, read, queryset, filterset, tag


def _filterset(model: type, **extra: Any) -> type:
    attrs = {
        "external_id": CodeListFilter(field_name="external_id", help_text="External id(s), comma-separated."),
        "source": django_filters.CharFilter(field_name="source"),
        "updated_since": UtcIsoDateTimeFilter(field_name="updated_at", lookup_expr="gte",
                                              help_text="ISO 8601; changed at or after this time."),
        **extra,
    }
    meta = type("Meta", (), {"model": model, "fields": list(attrs)})
    return type(f"{model.__name__}SyncFilter", (django_filters.FilterSet,), {**attrs, "Meta": meta})


def _contracts() -> QuerySet[Contract]:
    return Contract.objects.select_related("client", "entity", "rate_card", "purchase_order").prefetch_related(
        Prefetch("rates", queryset=ContractRate.objects.select_related("role", "person", "change_order")),
        Prefetch("change_orders", queryset=ChangeOrder.objects.order_by("code")),
    )


_WORK_FILTERS = {
    "status": django_filters.MultipleChoiceFilter(choices=WorkStatus.choices),
    "project": CodeListFilter(field_name="project__code", help_text="Project code(s), comma-separated."),
    "date_from": django_filters.DateFilter(field_name="date", lookup_expr="gte"),
    "date_to": django_filters.DateFilter(field_name="date", lookup_expr="lte"),
}

RESOURCES: dict[str, _Resource] = {
    r.name: r
    for r in (
        _Resource(name="clients", path="clients", model=Client, out=s.ClientOut, inp=s.ClientIn,
                  write="write:masterdata", read="read:masterdata", queryset=lambda: Client.objects.all(),
                  filterset=_filterset(Client, code=CodeListFilter(field_name="code")), tag="sync: clients"),
        _Resource(name="people", path="people", model=Person, out=s.PersonOut, inp=s.PersonIn,
                  write="write:masterdata", read="read:masterdata",
                  queryset=lambda: Person.objects.select_related("role", "home_entity"),
                  filterset=_filterset(Person, code=CodeListFilter(field_name="code"),
                                       active=django_filters.BooleanFilter()), tag="sync: people"),
        _Resource(name="purchase_orders", path="purchase-orders", model=PurchaseOrder, out=s.PurchaseOrderOut,
                  inp=s.PurchaseOrderIn, write="write:masterdata", read="read:masterdata",
                  queryset=lambda: PurchaseOrder.objects.select_related("client"),
                  filterset=_filterset(PurchaseOrder, number=CodeListFilter(field_name="number"),
                                       client=CodeListFilter(field_name="client__code")),
                  tag="sync: purchase orders"),
        _Resource(name="contracts", path="contracts", model=Contract, out=s.ContractOut, inp=s.ContractIn,
                  write="write:masterdata", read="read:masterdata", queryset=_contracts,
                  filterset=_filterset(Contract, code=CodeListFilter(field_name="code"),
                                       client=CodeListFilter(field_name="client__code"),
                                       status=django_filters.MultipleChoiceFilter(choices=Contract.Status.choices)),
                  tag="sync: contracts"),
        _Resource(name="projects", path="projects", model=Project, out=s.ProjectOut, inp=s.ProjectIn,
                  write="write:masterdata", read="read:masterdata",
                  queryset=lambda: Project.objects.select_related("contract", "project_manager"),
                  filterset=_filterset(Project, code=CodeListFilter(field_name="code"),
                                       contract=CodeListFilter(field_name="contract__code"),
                                       status=django_filters.MultipleChoiceFilter(choices=Project.Status.choices)),
                  tag="sync: projects"),
        _Resource(name="time_entries", path="time-entries", model=TimeEntry, out=s.TimeEntryOut, inp=s.TimeEntryIn,
                  write="write:time", read="write:time",
                  queryset=lambda: TimeEntry.objects.select_related("person", "project"),
                  filterset=_filterset(TimeEntry, **_WORK_FILTERS), tag="sync: time entries"),
        _Resource(name="expenses", path="expenses", model=Expense, out=s.ExpenseOut, inp=s.ExpenseIn,
                  write="write:expenses", read="write:expenses",
                  queryset=lambda: Expense.objects.select_related("person", "project"),
                  filterset=_filterset(Expense, **_WORK_FILTERS), tag="sync: expenses"),
        _Resource(name="milestones", path="milestones", model=Milestone, out=s.MilestoneOut, inp=s.MilestoneIn,
                  write="write:masterdata", read="read:masterdata",
                  queryset=lambda: Milestone.objects.select_related("project"),
                  filterset=_filterset(Milestone, project=CodeListFilter(field_name="project__code"),
                                       status=django_filters.MultipleChoiceFilter(
                                           choices=Milestone.Status.choices)),
                  tag="sync: milestones"),
    )
}


def _upsert_response(resource: _Resource, request: Any, record: Any) -> Response:
    if not isinstance(record, dict):
        raise ApplicationError("Send one record as a JSON object.", code="invalid",
                               field_errors={"non_field_errors": ["Expected an object."]})
    client = client_of(request)
    source = _source(client, record)
    record = {k: v for k, v in record.items() if k != "source"}
    result = upsert_record(resource=resource.name, record=record, user=request.user, source=source,
                           integration_client=client, correlation_id=current_correlation_id(),
                           reason=f"API upsert by {client.name}")
    if result.result == Result.ERROR:
        raise _refusal(result)
    obj = resource.queryset().get(pk=result.id)
    return Response({"result": result.result, "record": resource.out(obj).data},
                    status=status.HTTP_201_CREATED if result.result == Result.CREATED else status.HTTP_200_OK)


def _upsert_out(resource: _Resource) -> Any:
    return inline_serializer(f"{resource.model.__name__}UpsertOut", fields={
        "result": serializers.CharField(help_text="created, updated or unchanged."),
        "record": resource.out(),
    })


def _bulk_in(resource: _Resource) -> Any:
    return inline_serializer(f"{resource.model.__name__}BulkIn", fields={
        "source": serializers.CharField(required=False, help_text="Only for a client without a default source."),
        "records": resource.inp(many=True, help_text=f"At most {MAX_BULK_RECORDS} records."),
    })


def _make_views(resource: _Resource) -> tuple[type, type, type]:
    tags = [resource.tag]
    label = resource.path.replace("-", " ")
    upsert_out = _upsert_out(resource)  # one component per resource, shared by POST and PUT

    class ListView(ApiListView):
        required_scopes = {"GET": [resource.read], "POST": [resource.write]}
        serializer_class = resource.out
        filterset_class = resource.filterset
        cursor_ordering = ("-id",)

        def get_queryset(self):
            return resource.queryset()

        @extend_schema(tags=tags, summary=f"List {label}")
        def get(self, request, *args, **kwargs):
            return super().get(request, *args, **kwargs)

        @extend_schema(tags=tags, summary=f"Upsert one of the {label} by (source, external_id)",
                       request=resource.inp, responses={200: upsert_out, 201: upsert_out})
        def post(self, request, *args, **kwargs):
            return _upsert_response(resource, request, request.data)

    class DetailView(ApiView):
        required_scopes = {"GET": [resource.read], "PUT": [resource.write]}
        serializer_class = resource.out

        @extend_schema(tags=tags, summary=f"One of the {label}, by external id (of the client's source)",
                       responses={200: resource.out})
        def get(self, request, external_id: str):
            source = client_of(request).source
            obj = resource.queryset().filter(source=source, external_id=external_id).first()
            if obj is None or not source:
                raise ApplicationError(f"No {label} with external id {external_id!r} from {source!r}.",
                                       code="not_found")
            return Response(resource.out(obj).data)

        @extend_schema(tags=tags, summary=f"Upsert one of the {label} at its external id",
                       request=resource.inp, responses={200: upsert_out, 201: upsert_out})
        def put(self, request, external_id: str):
            record = request.data if isinstance(request.data, dict) else None
            if record is not None:
                given = str(record.get("external_id") or external_id)
                if given != external_id:
                    raise ApplicationError("external_id in the body differs from the URL.", code="invalid",
                                           field_errors={"external_id": ["Must match the URL."]})
                record = {**record, "external_id": external_id}
            return _upsert_response(resource, request, record)

    class BulkView(ApiView):
        required_scopes = {"POST": [resource.write]}

        @extend_schema(
            tags=tags, summary=f"Upsert up to {MAX_BULK_RECORDS} {label}, answered per record",
            request=_bulk_in(resource), responses={200: s.BulkOut},
            parameters=[OpenApiParameter("partial", bool, description="Keep the good records (default: all or "
                                                                      "nothing).")],
        )
        def post(self, request):
            data = request.data
            records = data.get("records") if isinstance(data, dict) else None
            if not isinstance(records, list):
                raise ApplicationError("Send {\"records\": [...]}.", code="invalid",
                                       field_errors={"records": ["Expected a list of records."]})
            client = client_of(request)
            partial = str(request.query_params.get("partial", "")).lower() in ("1", "true", "yes")
            outcome = upsert_records(
                resource=resource.name, records=records, user=request.user, source=_source(client, data),
                partial=partial, integration_client=client, correlation_id=current_correlation_id(),
                reason=f"API bulk upsert by {client.name}",
            )
            return Response({
                "import_id": outcome.batch.pk,
                "status": outcome.status,
                "saved": outcome.saved,
                "partial": partial,
                "message": outcome.error,
                "summary": outcome.summary(),
                "results": [r.as_dict() for r in outcome.results],
            })

    name = resource.model.__name__
    ListView.__name__ = ListView.__qualname__ = f"{name}SyncListView"
    DetailView.__name__ = DetailView.__qualname__ = f"{name}SyncDetailView"
    BulkView.__name__ = BulkView.__qualname__ = f"{name}BulkView"
    return ListView, DetailView, BulkView


VIEWS: dict[str, tuple[type, type, type]] = {name: _make_views(resource) for name, resource in RESOURCES.items()}

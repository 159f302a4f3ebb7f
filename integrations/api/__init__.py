"""Billable REST API v1 (`/api/v1/`, namespace `api`). See docs/manual/api.md and ADR 0020.

How to add an endpoint
======================
1. Write the business rule as a service (`<app>/services/...`) or the read as a selector;
   the view only parses input, calls it with `user=request.user` (the client's service user,
   so history and transition logs name it) and serialises the result.
2. Subclass a base view from `integrations.api.base`:

       from integrations.api.base import ApiView, ApiListView, client_of

       class TimeEntryUpsert(ApiView):
           required_scopes = {"POST": ["write:time"]}   # or ["read:billing"] for every method
           @extend_schema(request=TimeEntryIn, responses={200: TimeEntryOut, 201: TimeEntryOut})
           def post(self, request):
               data = validate(TimeEntryIn, request.data)          # DRF ValidationError → 400 shape
               entry, created = time_entry_upsert(**data, source=client_of(request).source, user=request.user)
               return Response(TimeEntryOut(entry).data, status=201 if created else 200)

   Defaults (settings.REST_FRAMEWORK) give every DRF view: bearer-token auth
   (`IntegrationTokenAuthentication`), `HasScopes` (fails closed without `required_scopes`),
   per-client throttling, cursor pagination (`cursor_ordering` on the view), django-filter,
   JSON only, and the error shape `{"code", "message", "field_errors"}` for every error
   (raise `kernel.errors.ApplicationError` & co. — 400/403/404/409 — or DRF exceptions).
3. POST is idempotent automatically (`IdempotentPostMixin` in the base views): the client must
   send `Idempotency-Key`; the view body runs inside one transaction with the idempotency record,
   so do not commit or catch-and-swallow errors yourself. Views whose POST carries its own
   natural id (signed webhooks) set `idempotent = False` and their own auth/permission classes.
4. Add the route to your own url module (`core_urls.py`, `sync_urls.py`, `webhook_urls.py`,
   `insights/api_urls.py`), all in namespace `api`. The schema at /api/v1/schema/ picks it up;
   run tests/integrations/api/test_schemathesis.py to check it answers as it documents.
5. Scopes are listed (and documented) in `integrations.services.clients.SCOPES`; a write scope
   that needs a role for the services' checks maps to it in `SCOPE_ROLES`.
"""

"""/api/v1/: the versioned REST API (docs/rules/integrations.md). Breaking changes go to /api/v2/.

Each part keeps its routes in its own module, all in the `api` namespace: the core
(schema, docs, reads, billing runs, documents, disputes and payments actions), the
inbound sync (upserts, bulk, imports) and payment webhooks. The feature apps above
integrations (revenue, the KPIs of insights) add their routes to the same `api` namespace
in portal/urls.py, so integrations imports none of them.
"""

from integrations.api import core_urls, sync_urls, webhook_urls

app_name = "api"

urlpatterns = [
    *core_urls.urlpatterns,
    *sync_urls.urlpatterns,
    *webhook_urls.urlpatterns,
]

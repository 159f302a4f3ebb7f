"""/integrations/: the integration monitor and the CSV import page (the API lives under /api/v1/)."""

from integrations import urls_imports, urls_monitor

app_name = "integrations"

urlpatterns = [*urls_monitor.urlpatterns, *urls_imports.urlpatterns]

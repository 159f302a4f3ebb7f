"""/insights/: KPI dashboards and the workflow monitor; assistive tools (SOW suggestions, scores)."""

from insights import urls_assist, urls_dashboards

app_name = "insights"

urlpatterns = [*urls_dashboards.urlpatterns, *urls_assist.urlpatterns]

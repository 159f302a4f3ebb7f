"""Permissions matrix rows of the KPI dashboards: leadership, operations, workflow monitor, drill-down lists."""

TABLE = """
# Insights: KPI dashboards and the records behind them (finance and auditors read; nothing to change)
insights:dashboard                GET    -            login   deny    deny    allow   allow   deny    deny    allow
insights:dashboard                POST   -            method  method  method  method  method  method  method  method
insights:operations               GET    -            login   deny    deny    allow   allow   deny    deny    allow
insights:workflow_monitor         GET    -            login   deny    deny    allow   allow   deny    deny    allow
insights:drilldown                GET    -            login   deny    deny    allow   allow   deny    deny    allow
insights:rework_ranking           GET    -            login   deny    deny    allow   allow   deny    deny    allow
"""

NOTES = {
    "insights:dashboard": "Finance leadership KPIs (docs/rules/kpis.md); finance analysts, controllers and auditors. "
    "Read only: every view takes GET (POST answers 405 once logged in); `?export=` returns a table as CSV.",
    "insights:drilldown": "The records behind a dashboard number (`?metric=`); without a metric, the list of "
    "metrics. `?format=csv` exports them.",
    "insights:rework_ranking": "Finance rework by business unit, worst first (docs/decisions/0127); each count links "
    "to its invoices in the drill-down.",
}

"""The server worker's warm-up (portal/warmup.py): URL modules imported, templates compiled, the heap frozen."""

from __future__ import annotations

import gc

from django.template import engines
from django.template.loaders.cached import Loader as CachedLoader

from portal.warmup import warm_up


def _cached_names() -> set[str]:
    loader = next(
        loader for loader in engines["django"].engine.template_loaders if isinstance(loader, CachedLoader)
    )
    return {key.split("-", 1)[0] for key in loader.get_template_cache}


def test_the_warm_up_compiles_the_projects_templates_and_not_the_libraries():
    engines["django"].engine.template_loaders[0].reset()

    try:
        took = warm_up()
    finally:
        gc.unfreeze()  # the test process goes on collecting as before

    cached = _cached_names()
    assert took["templates"] >= 100 and took["frozen"] > 10_000
    assert {"billing/invoice_detail.html", "approvals/pm_time.html", "base.html"} <= cached
    # The libraries' own templates are left to their first use (the project's admin/base_site.html
    # overrides one and compiles its parent with it).
    assert not {"admin/change_list.html", "admin/login.html", "rest_framework/api.html"} & cached
    # The PDF's template belongs to the documents' own engine: skipped, not an error.
    assert "billing/documents/invoice.html" not in cached

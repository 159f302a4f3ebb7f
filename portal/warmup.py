"""What a server worker loads once, at its start, instead of during the first requests people make.

A fresh gunicorn worker imports the URL modules (with every view and service behind them) on its first
request and compiles each template on the first request that renders it. Measured under load, a
worker's first request took 1.0–1.3 s and its first request of a page two to five times that page's
usual time (ADR 0136). `warm_up` does that work before the worker takes a request.

Then it freezes what it loaded (`gc.freeze`): the modules, templates and caches live as long as the
worker, and a full garbage collection walked all of them, 90–220 ms (158 ms on average) inside
whichever request triggered it. Frozen, they are left out of every collection.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

from django.conf import settings
from django.template import TemplateSyntaxError, engines
from django.template.backends.django import DjangoTemplates
from django.urls import get_resolver

logger = logging.getLogger(__name__)


def _project_template_names(engine: DjangoTemplates) -> list[str]:
    """The templates of the project's own directories (its apps' and `templates/`), not the libraries'."""
    root = Path(settings.BASE_DIR).resolve()
    names = []
    for directory in engine.template_dirs:
        directory = Path(directory).resolve()
        if root not in directory.parents or ".venv" in directory.parts:
            continue
        names += [str(path.relative_to(directory)) for path in sorted(directory.rglob("*.html"))]
    return names


def warm_up() -> dict[str, float]:
    """Import every URL module, compile the project's templates and freeze the heap; returns what it did."""
    began = time.perf_counter()
    get_resolver().reverse_dict  # noqa: B018 - populating the resolver imports every URL module and view
    compiled = 0
    for engine in engines.all():
        if not isinstance(engine, DjangoTemplates):
            continue
        for name in _project_template_names(engine):
            try:
                engine.get_template(name)
            except TemplateSyntaxError:  # another engine's (billing/documents' PDF) or broken: loaded where used
                logger.debug("Template %s not compiled by the warm-up", name, exc_info=True)
                continue
            compiled += 1
    gc.collect()
    gc.freeze()  # what the worker keeps for its life: out of the collector's walks from now on
    took = {"templates": compiled, "frozen": gc.get_freeze_count(), "seconds": round(time.perf_counter() - began, 3)}
    logger.info("Worker warmed up: %s templates, %s objects frozen, in %s s", *took.values())
    return took

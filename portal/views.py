"""Views of the portal shell. Thin: the numbers come from `portal.selectors`."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal import selectors


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """"My work": what waits for this user, one section per role."""
    user = request.user
    sections = selectors.my_work(user)
    counts = selectors.work_counts(user)
    return render(
        request,
        "portal/home.html",
        {
            "sections": sections,
            "counts": counts,
            "has_roles": bool(counts.roles),
            "admin_url": selectors.admin_index_url(user),
        },
    )

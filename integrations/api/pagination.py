"""Cursor pagination: stable under inserts, no COUNT(*), opaque `next`/`previous` links."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class ApiCursorPagination(CursorPagination):
    """A view may set `cursor_ordering` (a unique, never-changing field last, e.g. `("-issue_date", "-id")`)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"

    def get_ordering(self, request, queryset, view):
        ordering = getattr(view, "cursor_ordering", None) or self.ordering
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)

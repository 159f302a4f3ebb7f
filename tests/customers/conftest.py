import pytest


@pytest.fixture(autouse=True)
def _axes_reset():
    """django-axes counts failures in the database (rolled back per test) and its cache: start clean."""
    from django.core.cache import cache

    cache.clear()

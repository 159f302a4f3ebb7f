"""Admin model names read as English (issue 13: "Invoice taxs", "Import batchs")."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.factories import UserFactory


def naive_plural_mistake(singular: str, plural: str) -> bool:
    """`tax` → `taxs`, `batch` → `batchs`, `policy` → `policys`: the "+s" Django adds when no plural is given."""
    return plural == f"{singular}s" and bool(re.search(r"(s|x|z|ch|sh|[^aeiou]y)$", singular))


def test_the_rule_catches_the_reported_labels():
    assert naive_plural_mistake("invoice tax", "invoice taxs")
    assert naive_plural_mistake("import batch", "import batchs")
    assert not naive_plural_mistake("invoice tax", "invoice taxes")
    assert not naive_plural_mistake("delegation", "delegations")


def test_no_admin_model_has_a_naive_plural():
    wrong = {
        model._meta.label: (str(model._meta.verbose_name), str(model._meta.verbose_name_plural))
        for model in admin.site._registry
        if naive_plural_mistake(str(model._meta.verbose_name), str(model._meta.verbose_name_plural))
    }
    assert wrong == {}


@pytest.mark.django_db
def test_the_admin_index_names_them_right(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:index")).content.decode()
    for label in ("Invoice taxes", "Import batches", "FX rates", "SOW suggestions"):
        assert f">{label}<" in page, label
    assert "taxs" not in page and "batchs" not in page

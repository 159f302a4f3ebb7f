"""run_scenario's contract: exit 1 with a diff, exit 2 naming the bad key, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command

from billing.models import LegalEntity

CASE = Path(__file__).parent / "billing" / "01-tm-domestic-de.json"


def _write(tmp_path, data) -> str:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def _run(path, *args) -> int:
    try:
        call_command("run_scenario", path, *args)
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.mark.django_db
def test_wrong_expectation_exits_1_with_a_readable_diff(tmp_path, capsys):
    data = json.loads(CASE.read_text())
    data["expected"]["invoices"][0]["total"] = "1.00"
    data["expected"]["invoices"][0]["lines"][0]["quantity"] = "99.00"
    assert _run(_write(tmp_path, data), "--check") == 1
    err = capsys.readouterr().err
    assert "total expected '1.00', got '5964.88'" in err
    assert "lines missing" in err and "99.00" in err


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d["contracts"][0].pop("currency"), "contracts[0].currency"),
        (lambda d: d["time_entries"][1].update(hours="seven"), "time_entries[1].hours"),
        (lambda d: d["time_entries"][0].update(date="2026-13-45"), "time_entries[0].date"),
        (lambda d: d["projects"][0].update(contract="NOPE"), "projects[0].contract"),
        (lambda d: d["contracts"][0].update(model="barter"), "contracts[0].model"),
        (lambda d: d.pop("run"), "run"),
        (lambda d: d["time_entries"][0].update(hours="30.00"), "time_entries[0]"),
        # Three-decimal currencies are refused at entry, never rounded (docs/rules/billing.md §12).
        (lambda d: d["contracts"][0].update(currency="KWD"), "contracts[0].currency"),
        (lambda d: d["clients"][0].update(currency="BHD"), "clients[0].currency"),
        (
            lambda d: d["fx_rates"].insert(0, {"from": "OMR", "to": "EUR", "date": "2026-10-01", "rate": "2.4"}),
            "fx_rates[0].from",
        ),
        # on_milestone is for fixed fee only (§13).
        (lambda d: d["contracts"][0].update(billing_frequency="on_milestone"), "contracts[0].billing_frequency"),
        (lambda d: d["contracts"][0].update(billing_frequency="weekly"), "contracts[0].billing_frequency"),
        (lambda d: d["run"].update(contracts=["NOPE"]), "run.contracts[0]"),
    ],
)
def test_malformed_scenario_exits_2_naming_the_key(tmp_path, capsys, mutate, key):
    data = json.loads(CASE.read_text())
    mutate(data)
    assert _run(_write(tmp_path, data)) == 2
    err = capsys.readouterr().err
    assert key in err
    assert "Traceback" not in err
    assert not LegalEntity.objects.exists()


@pytest.mark.django_db
def test_not_json_exits_2(tmp_path, capsys):
    assert _run(_write(tmp_path, "{not json")) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.django_db
def test_missing_file_exits_2(tmp_path, capsys):
    assert _run(str(tmp_path / "nope.json")) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.django_db
def test_scenario_codes_do_not_collide_with_existing_records(capsys):
    LegalEntity.objects.create(code="NWB", name="The firm's own NWB", country="DE", currency="EUR")
    assert json.loads(CASE.read_text())["entities"][0]["code"] == "NWB"
    assert _run(str(CASE), "--check") == 0
    assert LegalEntity.objects.count() == 1

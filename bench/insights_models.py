"""Dispute-risk features and cash-forecast backtest, measured on a seeded demo (issue #21, ADR 0125/0126).

    DATABASE_URL=postgresql://…/billable_bench_ai python -m bench.insights_models [--today 2026-11-27]

Reads a database already filled by `seed_demo` (nothing is written): run `manage.py migrate` and
`manage.py seed_demo --scale 1` on it first.

- bench/results/risk.json: the invoices labelled as of `--today`, split by issue date (oldest 75 %
  train, newest 25 % test) once; the current features and the extended ones (plus each added group
  on its own, to show where a gain comes from) fitted and measured on that same split (ROC AUC).
- bench/results/forecast.json: the backtest of `insights.services.forecast` over the history —
  weekly cut-offs, forecasts from what was known before each, WAPE per horizon (1, 4, 13 weeks)
  for the current forecast (open AR at due date + average delay) and the one with billing.
CPU seconds are reported (less disturbed by a shared machine than wall time).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/billable_bench_ai")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402

from insights.behaviour import BEHAVIOUR_FEATURE_KEYS  # noqa: E402
from insights.features import EXTENDED_RISK_FEATURE_KEYS, RISK_FEATURE_KEYS  # noqa: E402
from insights.selectors import fx_rates  # noqa: E402
from insights.services import forecast as fc  # noqa: E402
from insights.services.risk import compare_feature_sets, fit_risk_model, training_set  # noqa: E402

GROUPS = {
    "payment_behaviour": ("client_days_late", "client_partial_rate", "client_dunning_level"),
    "notes_text": ("notes_friction",),
    "change_order_churn": ("change_order_churn",),
}


def _bootstrap(x: np.ndarray, y: np.ndarray, rounds: int = 2000) -> dict:
    """Is the gain more than the luck of the test set? Resample the held-out invoices, same for both models."""
    from sklearn.metrics import roc_auc_score

    from insights.services.risk import HOLDOUT_SHARE, _fit, predict_logit

    cut = int(np.ceil(len(y) * (1 - HOLDOUT_SHARE)))
    base_cols = len(RISK_FEATURE_KEYS)
    base = predict_logit(_fit(x[:cut, :base_cols], y[:cut], RISK_FEATURE_KEYS), x[cut:, :base_cols])
    ext = predict_logit(_fit(x[:cut], y[:cut], EXTENDED_RISK_FEATURE_KEYS), x[cut:])
    y_test = y[cut:]
    rng = np.random.default_rng(21)
    diffs = []
    for _ in range(rounds):
        idx = rng.integers(0, len(y_test), len(y_test))
        if len(set(y_test[idx].tolist())) < 2:
            continue
        diffs.append(roc_auc_score(y_test[idx], ext[idx]) - roc_auc_score(y_test[idx], base[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {
        "rounds": len(diffs),
        "auc_gain_mean": round(float(np.mean(diffs)), 4),
        "auc_gain_95ci": [round(float(lo), 4), round(float(hi), 4)],
        "share_of_resamples_with_a_gain": round(float(np.mean(np.array(diffs) > 0)), 3),
    }


def _rolling(x: np.ndarray, y: np.ndarray) -> dict:
    """The same comparison at several time cut-offs (train on everything before, test on the next 12.5 %)."""
    from sklearn.metrics import roc_auc_score

    from insights.services.risk import _fit, predict_logit

    base_cols = len(RISK_FEATURE_KEYS)
    folds = []
    for share in (0.5, 0.625, 0.75, 0.875):
        cut, stop = int(len(y) * share), int(len(y) * (share + 0.125))
        y_test = y[cut:stop]
        if len(set(y[:cut].tolist())) < 2 or len(set(y_test.tolist())) < 2:
            continue
        base = predict_logit(_fit(x[:cut, :base_cols], y[:cut], RISK_FEATURE_KEYS), x[cut:stop, :base_cols])
        ext = predict_logit(_fit(x[:cut], y[:cut], EXTENDED_RISK_FEATURE_KEYS), x[cut:stop])
        folds.append(
            {
                "train": cut,
                "test": stop - cut,
                "test_positives": int(y_test.sum()),
                "base_auc": round(float(roc_auc_score(y_test, base)), 4),
                "extended_auc": round(float(roc_auc_score(y_test, ext)), 4),
            }
        )
    mean = {k: round(float(np.mean([f[k] for f in folds])), 4) for k in ("base_auc", "extended_auc")} if folds else {}
    return {"folds": folds, "mean": mean}


def risk(today: datetime.date) -> dict:
    cpu = time.process_time()
    ids, x, y = training_set(today=today)
    comparison = compare_feature_sets(x, y)
    out = {"today": today.isoformat(), "labelled": len(ids), "disputed": int(y.sum()), **comparison.as_dict()}
    index = {k: i for i, k in enumerate(EXTENDED_RISK_FEATURE_KEYS)}
    groups = {}
    for name, keys in GROUPS.items():
        features = RISK_FEATURE_KEYS + keys
        fit = fit_risk_model(x[:, [index[k] for k in features]], y, features=features)
        groups[name] = None if fit.roc_auc is None else round(fit.roc_auc, 4)
    out["base_plus_one_group_auc"] = groups
    out["paired_bootstrap"] = _bootstrap(x, y)
    out["rolling_origin"] = _rolling(x, y)
    out["added_feature_spread"] = {
        k: {"mean": round(float(np.mean(x[:, index[k]])), 3), "std": round(float(np.std(x[:, index[k]])), 3)}
        for k in BEHAVIOUR_FEATURE_KEYS
    }
    coef = dict(
        zip(
            comparison.extended.parameters.get("features", []),
            comparison.extended.parameters.get("coef", []),
            strict=False,
        )
    )
    out["extended_coefficients"] = {k: round(v, 3) for k, v in coef.items()}
    out["cpu_seconds"] = round(time.process_time() - cpu, 2)
    return out


def forecast(today: datetime.date) -> dict:
    cpu = time.process_time()
    ledger = fc.load_ledger()
    rates = fx_rates({i.currency for i in ledger.invoices}, today)
    result = fc.backtest(ledger, end=today, rates=rates)
    result["invoices"] = len(ledger.invoices)
    result["definition"] = (
        "WAPE = Σ|forecast − actual| ÷ Σ actual over weekly cut-offs; actual = payments on "
        "invoices dated in [cut-off, cut-off + h weeks); forecasts use only invoices, payments "
        "and credit notes dated before the cut-off. current = open AR at due date + the "
        "client's average days late; with_billing = open AR over the client's delays + "
        "invoices expected from each contract's cadence."
    )
    result["summary"] = {
        h: {"before_pct": v["wape_current_pct"], "after_pct": v["wape_with_billing_pct"], "cutoffs": v["cutoffs"]}
        for h, v in result["horizons"].items()
    }
    result["cpu_seconds"] = round(time.process_time() - cpu, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--today",
        type=datetime.date.fromisoformat,
        default=datetime.date(2026, 11, 27),
        help="The demo's today (insights.demo.TODAY).",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    r = risk(args.today)
    f = forecast(args.today)
    for data in (r, f):
        data["load_average_1m"] = round(load, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "risk.json").write_text(json.dumps(r, indent=2) + "\n")
    (args.out / "forecast.json").write_text(json.dumps(f, indent=2) + "\n")
    print(
        f"risk: {r['labelled']} labelled, {r['disputed']} disputed; same split {r['train']}/{r['test']}: "
        f"AUC current {r['base_auc']}, extended {r['extended_auc']}; per group {r['base_plus_one_group_auc']}"
    )
    for h, v in f["summary"].items():
        print(
            f"forecast WAPE {h:>2} weeks over {v['cutoffs']} cut-offs: before {v['before_pct']} %, "
            f"after {v['after_pct']} %"
        )


if __name__ == "__main__":
    main()

# Billable — the two commands: `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PostgreSQL for `make test`; the maintenance db `postgres` on the same server is probed first.
TEST_DATABASE_URL := $(or $(DATABASE_URL),postgresql://postgres@127.0.0.1:5432/billable)
DEMO_ADDR ?= 127.0.0.1:8000
# The demo's ERP: the simulator (integrations/simulator.py), documents kept in var/erp-simulator.json.
# Faults by hand, e.g. DEMO_ERP_ARGS='--latency-ms 50 --fail-rate 0.2' (docs/manual/erp-posting.md).
DEMO_ERP_PORT ?= 8765
DEMO_PEPPOL_PORT ?= 8766
DEMO_ERP_ARGS ?= --latency-ms 50
# ERP=tryton: the demo posts to a real Tryton 8.2 instead (docs/manual/erp-mapping.md).
ERP ?= simulator
PYTEST_ARGS ?=
# Browser tests drive Debian's Chromium. `make test` installs it (and WeasyPrint's pango) when
# missing, as root with apt-get; CHROMIUM_INSTALL=no never installs (the browser tests then skip
# with one notice). CHROMIUM_PATH: the executable the check and tests/browser.py look for.
CHROMIUM_PATH ?= /usr/bin/chromium
CHROMIUM_INSTALL ?= auto
# Tryton 8.2 for the ERP integration tests (tests/integrations/tryton): `make test` installs it into
# .tryton-venv and builds its template database once (ops/tryton/setup.sh; cached while the pins hold).
# TRYTON=no skips that (those tests then skip with a notice, or fail with CI=true).
TRYTON ?= auto

.PHONY: help venv demo test lint tryton

help:
	@echo "make demo   migrate + seed the SQLite demo, then serve http://$(DEMO_ADDR)/ with a django-q2 worker and the ERP simulator"
	@echo "            (ERP=tryton: against a real Tryton 8.2, installed and started by ops/tryton/setup.sh)"
	@echo "make test   run the test suite (PostgreSQL when reachable, else SQLite; installs Debian's chromium when missing, as root); PYTEST_ARGS='-k foo' to filter"
	@echo "make lint   ruff check . and lint-imports (the layer contracts)"
	@echo "make tryton install Tryton 8.2 into .tryton-venv and build its template database (ERP integration tests)"
	@echo "make loadtest  locust's user mix (16 then 64 users) against gunicorn + PostgreSQL + Redis django-q2 (bench/README.md)"
	@echo "make venv   create .venv and install the dependencies of pyproject.toml (incl. dev extras)"

venv: $(STAMP)

# pyproject.toml lists dependencies only (no package to build), so install exactly those:
# no wheel build, no *.egg-info in the work tree. Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@echo "Installing the dependencies of pyproject.toml into $(VENV) ..."
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > $(VENV)/requirements.txt
	# (this machine's pip configuration names local indexes that may not exist: drop that noise only)
	$(PY) -m pip install -q --disable-pip-version-check -r $(VENV)/requirements.txt 2>&1 \
	  | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $(STAMP)

demo: venv
	@export DEBUG=1
	unset DATABASE_URL Q_REDIS_URL
	export OUTBOX_BACKOFF_BASE_S="$${OUTBOX_BACKOFF_BASE_S:-5}" OUTBOX_BACKOFF_CAP_S="$${OUTBOX_BACKOFF_CAP_S:-120}"
	# Peppol delivery (the Belgian clients) through the access-point simulator, which signs its receipts.
	export PEPPOL_AP_BASE_URL="http://127.0.0.1:$(DEMO_PEPPOL_PORT)" PEPPOL_AP_WEBHOOK_SECRET="demo-peppol-secret"
	if [[ "$(ERP)" == tryton ]]; then
	  # ERP posting on, against a real Tryton 8.2 (ops/tryton/setup.sh: installed once, a fresh demo database
	  # cloned from its template, trytond on a free port); payments registered in Tryton come back every 15 min.
	  ops/tryton/setup.sh start >/dev/null
	  set -a; source var/tryton/env; set +a
	  export ERP_POSTING_ENABLED=1 ERP_ADAPTER=integrations.erp.tryton.TrytonErpAdapter ERP_BASE_URL="$$TRYTON_URL"
	  export ERP_PAYMENTS_READBACK=1 ERP_TIMEOUT_S="$${ERP_TIMEOUT_S:-60}"
	else
	  # ERP posting on, against the ERP simulator started below (retries after seconds, not minutes).
	  export ERP_POSTING_ENABLED=1 ERP_BASE_URL="http://127.0.0.1:$(DEMO_ERP_PORT)" ERP_AUTH=none
	fi
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --scale 1
	echo
	echo "Billable demo: http://$(DEMO_ADDR)/  (admin: http://$(DEMO_ADDR)/admin/)"
	set -m
	# Peppol access-point simulator: signs its delivery receipts to the portal's webhook.
	$(PY) manage.py peppol_simulator --port $(DEMO_PEPPOL_PORT) --webhook-secret demo-peppol-secret \
		--callback-url "http://$(DEMO_ADDR)/api/v1/webhooks/peppol/" & ap=$$!
	if [[ "$(ERP)" == tryton ]]; then
	  $(PY) manage.py erp_check --demo-mappings
	  echo "Tryton: $$TRYTON_URL database $$TRYTON_DATABASE (user $$TRYTON_USER, password $$TRYTON_PASSWORD); approved invoices post there."
	  echo "Web server, django-q2 worker, Tryton and the Peppol access-point simulator running; Ctrl-C stops them all."
	  erp=""
	else
	  echo "ERP simulator: http://127.0.0.1:$(DEMO_ERP_PORT)/__admin/documents (approved invoices post there)."
	  echo "Web server, django-q2 worker, ERP and Peppol access-point simulators running; Ctrl-C stops them all."
	  # All run in the background (own process groups); Ctrl-C, or any one ending, stops them all:
	  # SIGTERM lets the django-q2 sentinel stop its own worker processes gracefully.
	  $(PY) manage.py erp_simulator --port $(DEMO_ERP_PORT) --store var/erp-simulator.json $(DEMO_ERP_ARGS) & erp=$$!
	fi
	$(PY) manage.py runserver --noreload $(DEMO_ADDR) & web=$$!
	$(PY) manage.py qcluster & worker=$$!
	stop() {
	  trap - INT TERM EXIT; kill -TERM "$$web" "$$worker" "$$ap" $$erp 2>/dev/null || true; wait || true
	  if [[ "$(ERP)" == tryton ]]; then ops/tryton/setup.sh stop >/dev/null; fi
	  echo "Demo stopped."
	}
	trap stop INT TERM EXIT
	wait -n || true

test: venv
	@export SECRET_KEY="$${SECRET_KEY:-test-only-key-not-for-production}"
	url='$(TEST_DATABASE_URL)'
	if [[ "$$url" == postgres* ]]; then
	  if $(PY) -c 'import sys, psycopg; psycopg.connect(sys.argv[1], dbname="postgres", connect_timeout=3).close()' "$$url" 2>/dev/null; then
	    export DATABASE_URL="$$url"
	    echo "make test: PostgreSQL at $${url%%\?*}"
	  elif [[ "$${CI:-}" == "true" ]]; then
	    echo "make test: PostgreSQL is not reachable at $$url and CI=true: failing." >&2
	    exit 1
	  else
	    unset DATABASE_URL
	    echo "make test: NOTICE PostgreSQL is not reachable at $$url; running on SQLite (tests marked postgres are skipped)."
	  fi
	else
	  export DATABASE_URL="$$url"
	  echo "make test: $$url"
	fi
	# System packages the tests need: installed here when missing and possible, else a notice.
	can_install() { [[ "$(CHROMIUM_INSTALL)" != no && "$$(id -u)" == 0 ]] && command -v apt-get >/dev/null; }
	apt_install() {
	  echo "make test: installing Debian's $$* (apt-get update -qq && apt-get install -y -qq $$*)"
	  export DEBIAN_FRONTEND=noninteractive
	  { apt-get update -qq && apt-get install -y -qq "$$@" >/dev/null; } || echo "make test: NOTICE installing $$* failed" >&2
	}
	if ! $(PY) -c 'import weasyprint' 2>/dev/null; then
	  if can_install; then apt_install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0; fi
	fi
	export CHROMIUM_PATH='$(CHROMIUM_PATH)'
	if [[ ! -x "$$CHROMIUM_PATH" ]]; then
	  echo "make test: Chromium is not installed at $$CHROMIUM_PATH (the browser tests need it)."
	  if can_install; then apt_install chromium; fi
	fi
	if [[ ! -x "$$CHROMIUM_PATH" && "$${CI:-}" == "true" ]]; then
	  echo "make test: no Chromium at $$CHROMIUM_PATH and CI=true: failing (the browser tests must run in CI)." >&2
	  exit 1
	elif [[ ! -x "$$CHROMIUM_PATH" ]]; then
	  echo "make test: NOTICE no Chromium at $$CHROMIUM_PATH: every browser test is skipped (only root with apt-get installs it; not with CHROMIUM_INSTALL=no)."
	fi
	if [[ "$(TRYTON)" != no ]]; then
	  ops/tryton/setup.sh >/dev/null || echo "make test: NOTICE setting Tryton up failed: the Tryton tests skip (fail with CI=true)." >&2
	fi
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

tryton:
	ops/tryton/setup.sh

# Billing-run benchmark (bench/README.md): seeds scale data into its own PostgreSQL
# databases (billable_bench*, dropped and recreated), times the run against a plain-SQL
# floor and writes bench/results/billing.json. BENCH_ARGS='--only quarter' for a quick one.
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/billable_bench
BENCH_ARGS ?=
# Dashboard benchmark (bench/dashboards.py): every KPI dashboard over 12 months of scale-10 demo data
# in its own database; writes bench/results/dashboards.json. BENCH_DASH_ARGS='--scale 2 --repeat 1' for a quick one.
BENCH_DASH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/billable_bench_dash
BENCH_DASH_ARGS ?=
# ERP delivery benchmark (bench/erp_delivery.py): N invoices posted by a 2-worker django-q2 cluster to the
# ERP simulator over HTTP; writes bench/results/erp_delivery.json. BENCH_ERP_ARGS='--invoices 200' for a quick one.
BENCH_ERP_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/billable_bench_erp
BENCH_ERP_ARGS ?=

# Bulk-decision benchmark (bench/bulk.py): queries and time of approving 10/50/500 items in bulk and one by
# one, in its own database; writes bench/results/bulk.json.
BENCH_BULK_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/billable_bench_bulk
# Load test (bench/loadtest.py): locust's user mix against gunicorn + PostgreSQL + Redis-backed django-q2
# on seeded demo data; writes bench/results/load.json. LOADTEST_ARGS='--scale 2 --run-time 30' for a quick one.
LOADTEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/billable_bench_load
LOADTEST_ARGS ?=

.PHONY: bench loadtest
bench: venv
	@export SECRET_KEY="$${SECRET_KEY:-bench-only-key-not-for-production}"
	DATABASE_URL='$(BENCH_DATABASE_URL)' $(PY) -m bench.billing $(BENCH_ARGS)
	DATABASE_URL='$(BENCH_DASH_DATABASE_URL)' $(PY) -m bench.dashboards $(BENCH_DASH_ARGS)
	DATABASE_URL='$(BENCH_ERP_DATABASE_URL)' $(PY) -m bench.erp_delivery $(BENCH_ERP_ARGS)
	DATABASE_URL='$(BENCH_BULK_DATABASE_URL)' $(PY) -m bench.bulk

loadtest: venv
	@export SECRET_KEY="$${SECRET_KEY:-bench-only-key-not-for-production}"
	DATABASE_URL='$(LOADTEST_DATABASE_URL)' $(PY) -m bench.loadtest $(LOADTEST_ARGS)

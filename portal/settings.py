"""Billable settings: one module, driven by environment variables (12-factor).

Defaults run the demo on SQLite with django-q2's ORM broker; production sets
DATABASE_URL (PostgreSQL), Q_REDIS_URL, SECRET_KEY and DEBUG=false.
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
_INSECURE_DEV_KEY = "django-insecure-billable-demo-key-not-for-production"
SECRET_KEY = env("SECRET_KEY", default=_INSECURE_DEV_KEY if DEBUG else None)
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DJANGO_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
]
THIRD_PARTY_APPS = [
    "rules.apps.AutodiscoverRulesConfig",
    "simple_history",
    "django_fsm_log",
    "django_q",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    # Login security (docs/decisions/0034-login-security.md): lockout after failed logins, TOTP MFA.
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    # Content-Security-Policy header on every response (docs/decisions/0035-content-security-policy.md).
    "csp",
]
LOCAL_APPS = [
    "kernel",
    "portal",
    "billing",
    "approvals",
    "integrations",
    "disputes",
    "revenue",
    "insights",
    "customers",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS
# django-fsm-log's simple backend, whose rows a bulk decision inserts together (kernel/fsm_log.py).
DJANGO_FSM_LOG_STORAGE_METHOD = "kernel.fsm_log.BufferedStateLogBackend"

MIDDLEWARE = [
    # First: a correlation id on every request, response (redirects too) and log line (echoes X-Correlation-ID).
    "integrations.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Customer-portal sessions reach /customer/ only (403 elsewhere, admin included): customers/auth.py.
    "customers.auth.CustomerSessionMiddleware",
    # Oversized bodies answered 413 from Content-Length, before anything reads them (portal/uploads.py).
    "portal.uploads.RequestSizeLimitMiddleware",
    # Controllers, billing admins, superusers (and anyone enrolled) must pass MFA before any page.
    "kernel.security.MfaRequiredMiddleware",
    # 400 with the error shape for out-of-range integers / NUL bytes in the query string (never a 500).
    "kernel.params.QueryParameterGuardMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page (HTTP 429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'billable.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
else:
    # Persistent connections for gunicorn and django-q2 workers, checked before reuse.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First: refuses any password check (portal login, admin login) for a locked-out username + IP.
    "axes.backends.AxesStandaloneBackend",
    "rules.permissions.ObjectPermissionBackend",
    # Django's password check for staff, refusing client contacts; contacts log in through their own door.
    "customers.auth.StaffBackend",
    "customers.auth.CustomerBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
MEDIA_URL = "media/"
MEDIA_ROOT = env("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env(
            "STATICFILES_BACKEND",
            default="django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Domain of the Message-ID of invoice e-mails (logged per delivery attempt).
EMAIL_MESSAGE_ID_DOMAIN = env("EMAIL_MESSAGE_ID_DOMAIN", default="billable.local")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="billing@billable.example")

# Security: production sits behind a TLS-terminating proxy; every knob is configurable.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=True) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=10 * 60 * 60)  # a working day
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)

# django-q2: ORM broker by default (demo), Redis when Q_REDIS_URL is set.
# retry must exceed timeout so a task is never handed to two workers.
Q_CLUSTER = {
    # The queue's name in the broker: deployments (or a benchmark) sharing one Redis keep apart by name.
    "name": env("Q_CLUSTER_NAME", default="billable"),
    "workers": env.int("Q_WORKERS", default=2),
    # A task running longer than `timeout` is killed; a task not acknowledged after `retry` is handed
    # out again. retry > timeout, so a running task is never handed to a second worker (ADR 0022).
    "timeout": env.int("Q_TIMEOUT", default=1800),
    "retry": env.int("Q_RETRY", default=2100),
    "poll": env.float("Q_POLL", default=0.2),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    # Schedules are claimed under a row lock, so several clusters never fire one twice;
    # Q_SCHEDULER=false still lets a deployment keep scheduling to chosen machines.
    "scheduler": env.bool("Q_SCHEDULER", default=True),
}
_Q_REDIS_URL = env("Q_REDIS_URL", default="")
if _Q_REDIS_URL:
    Q_CLUSTER["redis"] = _Q_REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The REST API v1 (docs/decisions/0020-api-v1.md): integration-client tokens with scopes, per-client
# throttling, cursor pagination, one error shape; every POST needs an Idempotency-Key (integrations/api/).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "integrations.api.schema.ApiAutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["integrations.api.auth.IntegrationTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["integrations.api.permissions.HasScopes"],
    "DEFAULT_THROTTLE_CLASSES": ["integrations.api.throttling.IntegrationClientThrottle"],
    "DEFAULT_PAGINATION_CLASS": "integrations.api.pagination.ApiCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "integrations.api.errors.api_exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Billable API",
    "DESCRIPTION": (
        "Billable's REST API v1 for integration clients (CRM, PSA, ERP middleware, payment provider). "
        "Bearer token per client with scopes; `Idempotency-Key` on every POST; errors as "
        '`{"code", "message", "field_errors"}`; cursor pagination; `X-Correlation-ID` on every response. '
        "Breaking changes go to /api/v2/."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Stable names for the enums several resources share (else drf-spectacular invents hashed names).
    "ENUM_NAME_OVERRIDES": {
        "BillingFrequencyEnum": "billing.models.contracts.Contract.Frequency",
        "DisputeCategoryEnum": "disputes.models.Dispute.Category",
        "ExpenseCategoryEnum": "billing.models.work.Expense.Category",
        "WorkStatusEnum": "billing.models.work.WorkStatus",
        "InvoiceStatusEnum": "billing.models.invoices.Invoice.Status",
        "BillingRunStatusEnum": "billing.models.invoices.BillingRun.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation_id": {"()": "integrations.middleware.CorrelationIdFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["correlation_id"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Billing policy knobs.
BILLING_TIMESHEET_CUTOFF_DAYS = env.int("BILLING_TIMESHEET_CUTOFF_DAYS", default=2)
# A running billing run beats after each committed chunk (seconds apart at full scale); one silent for
# longer than this lost its worker and is shown `interrupted`, to be resumed (ADR 0037). Keep it well
# above the longest chunk (about 6 s at the benchmark's full scale) and below Q_RETRY.
BILLING_RUN_STALE_AFTER_SECONDS = env.int("BILLING_RUN_STALE_AFTER_SECONDS", default=300)
BILLING_RUN_PARALLEL_CHUNKS = env.int("BILLING_RUN_PARALLEL_CHUNKS", default=2)  # chunks billed side by side (ADR 0085)
# A run started from the page or the API hands its chunks to django-q2 workers (ADR 0115); off: one worker.
BILLING_RUN_FAN_OUT = env.bool("BILLING_RUN_FAN_OUT", default=True)
BILLING_RUN_CHUNK_SIZE = env.int("BILLING_RUN_CHUNK_SIZE", default=250)  # contracts per chunk (one transaction)
# Off: an approved invoice counts as posted at once (no ERP configured); on: the ERP adapter posts it.
ERP_POSTING_ENABLED = env.bool("ERP_POSTING_ENABLED", default=False)
# The ERP (or its middleware) endpoint of the outbox (ADR 0022, docs/manual/erp-posting.md).
ERP_ADAPTER = env("ERP_ADAPTER", default="integrations.erp.http.HttpErpAdapter")
ERP_BASE_URL = env("ERP_BASE_URL", default="http://127.0.0.1:8765")
ERP_AUTH = env("ERP_AUTH", default="none")  # none | bearer | oauth2
ERP_TOKEN = env("ERP_TOKEN", default="")  # the bearer token (ERP_AUTH=bearer)
ERP_OAUTH_TOKEN_URL = env("ERP_OAUTH_TOKEN_URL", default="")  # client credentials (ERP_AUTH=oauth2)
ERP_OAUTH_CLIENT_ID = env("ERP_OAUTH_CLIENT_ID", default="")
ERP_OAUTH_CLIENT_SECRET = env("ERP_OAUTH_CLIENT_SECRET", default="")
ERP_OAUTH_SCOPE = env("ERP_OAUTH_SCOPE", default="")
ERP_TIMEOUT_S = env.float("ERP_TIMEOUT_S", default=10.0)
# Tryton as the ERP (ERP_ADAPTER=integrations.erp.tryton.TrytonErpAdapter, docs/manual/erp-mapping.md):
# ERP_BASE_URL is trytond's URL, these name the database and the (dedicated) user it posts as.
TRYTON_DATABASE = env("TRYTON_DATABASE", default="")
TRYTON_USER = env("TRYTON_USER", default="admin")
TRYTON_PASSWORD = env("TRYTON_PASSWORD", default="")
# Payment read-back from the ERP (a django-q2 schedule): the integration client whose service user records them.
ERP_PAYMENTS_CLIENT = env("ERP_PAYMENTS_CLIENT", default="erp-payments")
ERP_PAYMENTS_READBACK = env.bool("ERP_PAYMENTS_READBACK", default=False)
# Delivery: attempts before the dead letter, full-jitter exponential backoff, the lease of a claim.
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=8)
OUTBOX_BACKOFF_BASE_S = env.float("OUTBOX_BACKOFF_BASE_S", default=30.0)
OUTBOX_BACKOFF_CAP_S = env.float("OUTBOX_BACKOFF_CAP_S", default=3600.0)
OUTBOX_LEASE_S = env.float("OUTBOX_LEASE_S", default=4 * ERP_TIMEOUT_S + 30)
# A message queued but not picked up (a lost enqueue, a long backlog) is queued again after this.
OUTBOX_SWEEP_GRACE_S = env.float("OUTBOX_SWEEP_GRACE_S", default=120.0)
# Circuit breaker per endpoint: opens after N consecutive failures, one probe after the cool-down.
ERP_CIRCUIT_FAILURES = env.int("ERP_CIRCUIT_FAILURES", default=5)
ERP_CIRCUIT_COOLDOWN_S = env.float("ERP_CIRCUIT_COOLDOWN_S", default=60.0)

# Peppol delivery through an access-point provider (ADR 0070, docs/manual/delivery.md). The simulator:
# `manage.py peppol_simulator --webhook-secret <PEPPOL_AP_WEBHOOK_SECRET>`.
PEPPOL_AP_ADAPTER = env("PEPPOL_AP_ADAPTER", default="billing.access_point.http.HttpAccessPointAdapter")
PEPPOL_AP_BASE_URL = env("PEPPOL_AP_BASE_URL", default="http://127.0.0.1:8766")
PEPPOL_AP_TOKEN = env("PEPPOL_AP_TOKEN", default="")
PEPPOL_AP_TIMEOUT_S = env.float("PEPPOL_AP_TIMEOUT_S", default=15.0)
# Signs the provider's delivery-receipt webhooks (HMAC-SHA256); empty: every receipt is refused.
PEPPOL_AP_WEBHOOK_SECRET = env("PEPPOL_AP_WEBHOOK_SECRET", default="")
# Tax determination (ADR 0076, docs/rules/tax-engine.md): the rule table by default; the HTTP adapter for an
# Avalara/Vertex-style service handles entities of BILLING_TAX_ENGINE_COUNTRIES.
# Simulator: `manage.py tax_engine_simulator`.
BILLING_TAX_ENGINE = env("BILLING_TAX_ENGINE", default="billing.tax_engine.rule_table.RuleTableEngine")
BILLING_TAX_ENGINE_URL = env("BILLING_TAX_ENGINE_URL", default="http://127.0.0.1:8767")
BILLING_TAX_ENGINE_TOKEN = env("BILLING_TAX_ENGINE_TOKEN", default="")
BILLING_TAX_ENGINE_TIMEOUT_S = env.float("BILLING_TAX_ENGINE_TIMEOUT_S", default=10.0)
BILLING_TAX_ENGINE_COUNTRIES = env.list("BILLING_TAX_ENGINE_COUNTRIES", default=["US"])
# EU VIES VAT-number validation (ADR 0077): REST adapter; a stored check older than VIES_MAX_AGE_DAYS is redone
# before invoicing. Empty VIES_ADAPTER: no VIES checks. Simulator: `manage.py vies_simulator`.
VIES_ADAPTER = env("VIES_ADAPTER", default="")  # e.g. billing.vies.rest.RestViesAdapter
VIES_BASE_URL = env("VIES_BASE_URL", default="https://ec.europa.eu/taxation_customs/vies/rest-api")
VIES_TIMEOUT_S = env.float("VIES_TIMEOUT_S", default=10.0)
VIES_MAX_AGE_DAYS = env.int("VIES_MAX_AGE_DAYS", default=30)
# The requester VAT id VIES needs to issue a consultation number; empty: the invoicing entity's VAT id.
VIES_REQUESTER_VAT_ID = env("VIES_REQUESTER_VAT_ID", default="")
# Collections: reminder levels at +N days after the due date (a client's collections profile may override),
# and whether each reminder carries the invoice PDF (docs/decisions/0025-collections.md).
DUNNING_DEFAULT_OFFSETS = [int(d) for d in env.list("DUNNING_DEFAULT_OFFSETS", default=["7", "21", "45"])]
DUNNING_ATTACH_PDF = env.bool("DUNNING_ATTACH_PDF", default=True)

# Cache: per-process memory by default; production sets CACHE_URL (e.g. redis://redis:6379/1) so that
# API throttling counts each integration client once across all web processes.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# Disputes: days to resolve a dispute (its due date by default).
DISPUTE_SLA_DAYS = env.int("DISPUTE_SLA_DAYS", default=14)
# Insights (docs/decisions/0026-kpis.md, 0027-assistive-intelligence.md): the currency KPIs are reported in,
# days after period end before approved work counts as leakage, and the anomaly score's knobs.
INSIGHTS_REPORTING_CURRENCY = env("INSIGHTS_REPORTING_CURRENCY", default="EUR")
INSIGHTS_LEAKAGE_DAYS = env.int("INSIGHTS_LEAKAGE_DAYS", default=15)
# KPI snapshots (docs/rules/kpis.md "Snapshots"): dashboards and /api/v1/kpis/ read figures at most this old;
# the django-q2 schedule recomputes the default ones every INSIGHTS_KPI_REFRESH_MINUTES.
INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S = env.int("INSIGHTS_KPI_SNAPSHOT_MAX_AGE_S", default=900)
INSIGHTS_KPI_REFRESH_MINUTES = env.int("INSIGHTS_KPI_REFRESH_MINUTES", default=10)
INSIGHTS_ANOMALY_THRESHOLD = env.float("INSIGHTS_ANOMALY_THRESHOLD", default=3.5)
INSIGHTS_ANOMALY_MIN_HISTORY = env.int("INSIGHTS_ANOMALY_MIN_HISTORY", default=4)
INSIGHTS_SOW_HOURS_PER_DAY = env.int("INSIGHTS_SOW_HOURS_PER_DAY", default=8)
# SOW PDFs are read by a worker in a child process (ADR 0033): at most this many pages, this many
# seconds of wall-clock time (the child also gets the CPU seconds and this much memory).
INSIGHTS_SOW_MAX_PAGES = env.int("INSIGHTS_SOW_MAX_PAGES", default=50)
INSIGHTS_SOW_READ_SECONDS = env.float("INSIGHTS_SOW_READ_SECONDS", default=20)
INSIGHTS_SOW_READ_MEMORY_BYTES = env.int("INSIGHTS_SOW_READ_MEMORY_BYTES", default=1024 * 1024 * 1024)

# Request size limits (portal/uploads.py answers 413 from Content-Length before a body is read).
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=10 * 1024 * 1024)  # one uploaded file
UPLOAD_FORM_OVERHEAD_BYTES = 256 * 1024  # the form's other fields and multipart boundaries
UPLOAD_MAX_BYTES_BY_PATH = {"/integrations/imports/": 5 * 1024 * 1024}  # the CSV time import
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)  # forms, JSON API (2.5 MB)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger uploaded files are streamed to a temporary file

# Login security (docs/decisions/0034-login-security.md). django-axes counts failed password logins per
# username + client IP; at AXES_FAILURE_LIMIT the pair is locked out for the cool-off (HTTP 429 and the
# lockout page), every further attempt while locked out restarts the cool-off, a successful login clears it.
# Clear a lockout in the admin (Axes → Access attempts) or with `manage.py axes_reset_username <name>`.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15.0) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "kernel.security.client_ip"
AXES_SENSITIVE_PARAMETERS = ["password", "token"]
# Behind N reverse proxies that each append to X-Forwarded-For, the client is the Nth address from the
# right; 0 (default) uses the socket's address (REMOTE_ADDR).
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
# TOTP (django-otp): required for finance controllers, billing admins and superusers, and for anyone who
# enrolled. Not configurable: only DEBUG (the local demo) skips the requirement, and the pages say so.
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="Billable")

# Payment webhooks: deliveries without a valid signature allowed per client address and minute (then 429).
WEBHOOK_AUTH_FAILURES_PER_MINUTE = env.int("WEBHOOK_AUTH_FAILURES_PER_MINUTE", default=20)

# Content-Security-Policy (django-csp 4, docs/decisions/0035-content-security-policy.md): only this
# origin's scripts, styles, fonts and images; no inline script, no inline style, no framing, no plugins.
from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# SQLite (demo only) cannot create NULLS NOT DISTINCT unique constraints; PostgreSQL does.
SILENCED_SYSTEM_CHECKS = ["models.W047"]

# The customer portal and e-signature (docs/rules/customers.md, ADR 0095–0097).
# Links in invitation / reset e-mails start with this address; invitation and reset links expire.
CUSTOMER_PORTAL_BASE_URL = env("CUSTOMER_PORTAL_BASE_URL", default="http://localhost:8000")
CUSTOMER_INVITATION_MAX_AGE_HOURS = env.int("CUSTOMER_INVITATION_MAX_AGE_HOURS", default=168)
CUSTOMER_RESET_MAX_AGE_HOURS = env.int("CUSTOMER_RESET_MAX_AGE_HOURS", default=2)
# The e-signature provider (`manage.py esign_simulator` locally): its API, bearer key and webhook secret.
ESIGN_BASE_URL = env("ESIGN_BASE_URL", default="http://127.0.0.1:8770")
ESIGN_API_KEY = env("ESIGN_API_KEY", default="")
ESIGN_WEBHOOK_SECRET = env("ESIGN_WEBHOOK_SECRET", default="")
ESIGN_WEBHOOK_TOLERANCE = env.int("ESIGN_WEBHOOK_TOLERANCE", default=300)  # seconds
ESIGN_EXPIRES_IN_DAYS = env.int("ESIGN_EXPIRES_IN_DAYS", default=14)

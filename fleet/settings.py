"""Fleet settings. Every knob comes from the environment; README.md documents each variable.

Without any environment the project runs on an embedded default (SQLite under var/, an embedded
Celery broker on the filesystem, local-memory cache, local files) so `make run` needs no server.
"""

import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def env(name, default=None):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name, default=""):
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)
TESTING = "pytest" in sys.modules


def _secret_key():
    key = env("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG=0.")
    # Development only: generate once and keep it under var/ so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # Our apps come first so their management commands (migrate) take precedence.
    "fleet.tenancy",
    "fleet.activity",
    "fleet.api",
    "apps_catalog",
    "devices",
    "deployments",
    "provisioning",
    "telemetry",
    "exports",
    "fleet.api.admin_config.FleetAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "fleet.api.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fleet.urls"
WSGI_APPLICATION = "fleet.wsgi.application"
APPEND_SLASH = False

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

# --- Database -------------------------------------------------------------------------------------
# DATABASE_URL is the runtime role (no superuser, no BYPASSRLS, owns nothing).
# MIGRATION_DATABASE_URL is the owner role used by `manage.py migrate` (see fleet/tenancy/rls.py).
DATABASE_URL = env("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'fleet.sqlite3'}"
MIGRATION_DATABASE_URL = env("MIGRATION_DATABASE_URL", "")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Server-side binding lets psycopg prepare statements a connection repeats (hot paths then skip
    # planning, which costs more than executing an indexed lookup under row-level security).
    if env_bool("DB_PREPARED_STATEMENTS", True):
        DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
    if env_bool("DB_POOL", not TESTING):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 2),
            "max_size": env_int("DB_POOL_MAX", 20),
            "timeout": 10,
        }
else:
    # SQLite: wait for the writer lock instead of failing when web, worker and beat overlap.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Celery --------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Embedded broker: a folder that web, worker and beat share; no server process needed.
    CELERY_BROKER_URL = "filesystem://"
    _broker_dir = VAR_DIR / "celery" / "queue"
    _broker_dir.mkdir(parents=True, exist_ok=True)
    _control_dir = VAR_DIR / "celery" / "control"
    _control_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_control_dir),  # kombu's default is ./control in the working directory
    }
# Steady device polls answered from Redis, flushed to PostgreSQL every PRESENCE_FLUSH_S seconds
# (devices/presence.py). Needs Redis and PostgreSQL; PRESENCE=0 keeps every poll on PostgreSQL.
PRESENCE = bool(REDIS_URL) and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "PRESENCE", True)
PRESENCE_FLUSH_S = env_int("PRESENCE_FLUSH_S", 2)
PRESENCE_LEASE_S = env_int("PRESENCE_LEASE_S", 600)  # a backstop: changes drop leases at the next flush
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "devices-connectivity-sweep": {
        "task": "devices.tasks.connectivity_sweep",
        "schedule": float(env_int("DEVICE_SWEEP_INTERVAL_S", 30)),
    },
    "deployments-evaluate": {
        "task": "deployments.tasks.deployments_evaluate",
        "schedule": float(env_int("DEPLOYMENT_EVALUATE_INTERVAL_S", 30)),
    },
    "deployments-commands-expire": {"task": "deployments.tasks.commands_expire", "schedule": 300.0},
    "deployments-training-rounds-close-expired": {
        "task": "deployments.tasks.training_rounds_close_expired",
        "schedule": float(env_int("TRAINING_ROUND_SWEEP_INTERVAL_S", 60)),
    },
    "exports-sweep": {"task": "exports.tasks.export_sweep", "schedule": 60.0},
    "exports-expire": {"task": "exports.tasks.export_expire", "schedule": 600.0},
}
if PRESENCE:
    CELERY_BEAT_SCHEDULE["devices-presence-flush"] = {
        "task": "devices.tasks.presence_flush",
        "schedule": float(PRESENCE_FLUSH_S),
        "options": {"expires": 3 * PRESENCE_FLUSH_S},  # a late flush is superseded by the next one
    }

# --- Storage --------------------------------------------------------------------------------------
MEDIA_ROOT = Path(env("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env("AWS_S3_REGION_NAME") or None,
            "default_acl": None,
            "file_overwrite": True,
            "querystring_auth": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Auth, i18n -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Request limits and security headers ----------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 8 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE
# Camera frames (POST /devices/{device}/frames): largest accepted JPEG, in bytes.
FRAME_MAX_BYTES = env_int("FRAME_MAX_BYTES", 5 * 1024 * 1024)
# Largest accepted frame in pixels (width x height), checked before decoding: 4096² decodes to at most
# 64 MiB (docs/security.md §5; applied by devices.services.frame_verify).
FRAME_MAX_PIXELS = env_int("FRAME_MAX_PIXELS", 4096 * 4096)
# Readings ingest (POST /readings/batch): most items per request (more: 413).
READINGS_BATCH_MAX = env_int("READINGS_BATCH_MAX", 10_000)
# JSON bodies (docs/security.md): default cap per endpoint (413 above; endpoints may set their own), the
# readings batch cap, nesting depth and string length (400 above).
JSON_MAX_BYTES = env_int("JSON_MAX_BYTES", 1024 * 1024)
READINGS_BATCH_MAX_BYTES = env_int("READINGS_BATCH_MAX_BYTES", 4 * 1024 * 1024)
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 32)
JSON_MAX_STRING_LENGTH = env_int("JSON_MAX_STRING_LENGTH", 64 * 1024)
# Failed admin logins allowed per username and client address per window (fleet/tenancy/admin_site.py).
ADMIN_LOGIN_MAX_FAILURES = env_int("ADMIN_LOGIN_MAX_FAILURES", 5)
ADMIN_LOGIN_WINDOW_S = env_int("ADMIN_LOGIN_WINDOW_S", 15 * 60)
# Exports (docs/exports.md): longest range, concurrent jobs per organization, download URL and file lifetimes,
# and how long a RUNNING job may go without a heartbeat before the sweeper re-queues it.
EXPORT_MAX_RANGE_DAYS = env_int("EXPORT_MAX_RANGE_DAYS", 400)
EXPORT_MAX_RUNNING_PER_ORG = env_int("EXPORT_MAX_RUNNING_PER_ORG", 3)
EXPORT_URL_TTL_S = env_int("EXPORT_URL_TTL_S", 900)
EXPORT_FILE_TTL_S = env_int("EXPORT_FILE_TTL_S", 24 * 3600)
EXPORT_HEARTBEAT_STALE_S = env_int("EXPORT_HEARTBEAT_STALE_S", 120)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API -------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "fleet.api.authentication.ApiKeyAuthentication",
        "devices.authentication.DeviceTokenAuthentication",
        "apps_catalog.authentication.PublishableKeyAuthentication",
        "apps_catalog.authentication.AppKeyAuthentication",
        "fleet.api.authentication.JWTAuthentication",
        "fleet.api.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["fleet.api.permissions.HasOrganizationRole"],
    "DEFAULT_THROTTLE_CLASSES": ["fleet.api.throttling.CredentialRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["fleet.api.parsers.BoundedJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "fleet.api.pagination.LimitOffsetPagination",
    "DEFAULT_SCHEMA_CLASS": "fleet.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "fleet.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": False,
    # `?format=` is a filter name here (model formats), not a renderer override.
    "URL_FORMAT_OVERRIDE": None,
}
# Requests per window for each credential kind ("<count>/<seconds>"); shared through Redis when set.
RATE_LIMITS = {
    "api_key": env("RATE_LIMIT_API_KEY", "1200/60"),
    "user": env("RATE_LIMIT_USER", "1200/60"),
    "device": env("RATE_LIMIT_DEVICE", "120/60"),
    "app_key": env("RATE_LIMIT_APP_KEY", "1200/60"),
    "publishable_key": env("RATE_LIMIT_PUBLISHABLE_KEY", "600/60"),
    "anonymous": env("RATE_LIMIT_ANONYMOUS", "120/60"),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 1)),
    "SIGNING_KEY": SECRET_KEY,
    "ALGORITHM": "HS256",
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Fleet API",
    "DESCRIPTION": "Multi-tenant control plane for fleets of devices running on-device AI models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "DISABLE_ERRORS_AND_WARNINGS": False,
    "ENUM_NAME_OVERRIDES": {},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "fleet.api.schema.postprocess_query_parameters",
    ],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI and ReDoc assets are served from the sidecar package: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Reference views for the benchmarks (bench/views.py), mounted under /bench/ only when set.
BENCH_VIEWS = env_bool("BENCH_VIEWS", False)

# API keys: "last_used_at" is written at most this often, to keep reads cheap.
CREDENTIAL_LAST_USED_RESOLUTION_S = 60

# --- Provisioning (device PKI, see docs/provisioning.md) ------------------------------------------
# Platform root CA: configured files in production; generated into VAR_DIR/pki on first use in development.
PKI_ROOT_CERT_FILE = Path(env("PKI_ROOT_CERT_FILE", VAR_DIR / "pki" / "root-ca.pem"))
PKI_ROOT_KEY_FILE = Path(env("PKI_ROOT_KEY_FILE", VAR_DIR / "pki" / "root-ca.key.pem"))
# Encrypts the root key file and every organization CA key at rest. Unset: derived from SECRET_KEY
# (development); changing either then makes the stored keys unreadable.
PKI_KEY_PASSPHRASE = env("PKI_KEY_PASSPHRASE") or f"fleet-pki:{SECRET_KEY}"
CERTIFICATE_VALIDITY_DAYS = env_int("CERTIFICATE_VALIDITY_DAYS", 365)
MQTT_HOST = env("MQTT_HOST", "localhost")
MQTT_PORT = env_int("MQTT_PORT", 8883)
MQTT_TOPIC_PREFIX = env("MQTT_TOPIC_PREFIX", "fleet")

# --- Capability orchestration (device classifier score weights, see docs/orchestration.md) ---------
# score = quality·q + latency·ref/(ref + predicted_ms) + size·1/(1 + size_mb/size_ref_mb)
CLASSIFIER_WEIGHTS = {
    "quality": 0.5,
    "latency": 0.35,
    "size": 0.15,
    "latency_ref_ms": 100.0,
    "size_ref_mb": 500.0,
    "min_improvement": 0.01,  # check-optimization: fleet-score gain needed to call a variant better
}
# Choice sets named once for the schema (field names such as "status" are shared across apps).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update({
    "PlatformEnum": "apps_catalog.models.Platform",
    "DeviceStatusEnum": "devices.models.DeviceStatus",
    "ConnectivityStatusEnum": "devices.models.Connectivity",
    "DeviceGroupKindEnum": "devices.models.GroupKind",
    "AppKeyKindEnum": "apps_catalog.models.AppKeyKind",
    "DeviceStatusUpdateEnum": [("active", "active"), ("inactive", "inactive"), ("archived", "archived")],
    "HeartbeatStatusEnum": [("active", "active"), ("inactive", "inactive")],
    "RegistrationTokenStatusEnum": "provisioning.models.TokenStatus",
    "EnrollmentStatusEnum": "provisioning.models.EnrollmentStatus",
    "ExportScopeTypeEnum": "exports.models.ScopeType",
    "ExportIncludeEnum": "exports.models.Include",
    "ExportFormatEnum": "exports.models.Format",
    "ExportStatusEnum": "exports.models.Status",
    "FormatEnum": "apps_catalog.models.ModelFormat",
    "DeploymentStatusEnum": "deployments.models.DeploymentStatus",
    "AssignmentStatusEnum": "deployments.models.AssignmentStatus",
    "CommandStatusEnum": "deployments.models.CommandStatus",
    "CommandTypeEnum": "deployments.models.CommandType",
    "StrategyTypeEnum": "deployments.models.StrategyType",
    "SlotCoverageStatusEnum": ["healthy", "degraded", "unconfigured", "no_targets"],
    "TrainingRoundStatusEnum": "deployments.models.TrainingRoundStatus",
    "RouteEnum": "deployments.models.Route",
})

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "fleet.audit": {"level": "INFO"},
    },
}

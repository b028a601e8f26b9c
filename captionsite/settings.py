"""Settings for Captionsite, read from environment variables.

Every variable has an embedded default that runs the whole service on one machine:
a SQLite file and uploads under `var/`, and Redis on localhost. Production sets
DATABASE_URL, REDIS_URL, SECRET_KEY and DEBUG=0 (see docker-compose.yml).
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1 or 0.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """Read a header name such as X-Forwarded-Proto into Django's (META key, "https") pair."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not all(char.isalnum() or char == "-" for char in value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a header name; use, for example, X-Forwarded-Proto.")
    return ("HTTP_" + value.upper().replace("-", "_"), "https")


def local_secret_key() -> str:
    """Return a key kept in var/secret_key, creating it on first use.

    Only used when SECRET_KEY is unset, so a local run keeps its sessions across
    restarts without anyone having to invent a key.
    """
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


# Core

DEBUG = env_bool("DEBUG", False)
# Whether SECRET_KEY came from the environment. `check --deploy` warns when it did not
# (system check captioning.W003), because the generated key lives in var/ beside the
# code.
SECRET_KEY_FROM_ENVIRONMENT = bool(os.environ.get("SECRET_KEY"))
SECRET_KEY = os.environ.get("SECRET_KEY") or local_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])


# Security. `make run` serves plain http://127.0.0.1:8000, so every option that needs
# HTTPS is off unless its variable turns it on. docker-compose.yml turns them on for
# production behind a proxy that terminates TLS, and `manage.py check --deploy`
# lists what is still off.

# Send the session and CSRF cookies over HTTPS only. Browsers drop such cookies on
# plain http, so signing in then fails.
SECURE_COOKIES = env_bool("SECURE_COOKIES", False)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
# A form whose CSRF check fails gets the site's page, not Django's plain one.
CSRF_FAILURE_VIEW = "captioning.views.csrf_failure"
# Seconds browsers remember to use only HTTPS for this host (Strict-Transport-Security);
# 0 sends no header. Start low, because browsers keep the rule even when HTTPS breaks.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Redirect every plain http request to https.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# The health endpoint stays reachable over plain http, for container health checks.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$"]
# The header by which the TLS-terminating proxy marks a request that reached it over
# https, such as X-Forwarded-Proto. Set it only when the proxy always sets or strips
# that header, because a client could send it otherwise.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
# Django's defaults, stated here because the image views rely on them: browsers must
# not guess content types, and no other site may frame these pages.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "captioning",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "captionsite.urls"
WSGI_APPLICATION = "captionsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL, or a SQLite file under var/.

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # The web server and the worker write to the same file. WAL lets readers go on
        # while one writes, and IMMEDIATE transactions wait for the write lock up to
        # `timeout` seconds instead of failing with "database is locked" midway.
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The test database is a file, not Django's in-memory default, because the Celery
    # worker that tests start in a subprocess has to open the same database. The
    # process id keeps two test runs in one checkout apart.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Languages

LANGUAGE_CODE = "en"
LANGUAGES = [
    ("en", "English"),
    ("zh-hans", "简体中文"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The language switcher's choice lasts a year, not only until the browser closes.
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SECURE = SECURE_COOKIES
USE_I18N = True
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_TZ = True

# Static files are served by whitenoise. Without collectstatic it finds them in the
# app and project folders; the Docker image runs collectstatic and sets
# STATIC_MANIFEST=1 for hashed, compressed, long-cached files.

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", False)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
# Only collectstatic writes here. Without the manifest it stays unset, because
# whitenoise warns on every start about a STATIC_ROOT folder that does not exist.
STATIC_ROOT = BASE_DIR / "staticfiles" if STATIC_MANIFEST else None

# Uploaded images. Web and workers must share MEDIA_ROOT, or STORAGES["default"] must
# point at a storage that both reach.

MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "media")
# Lets Django itself serve MEDIA_URL. Turn it off when a proxy or object store does.
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Upload limits, read by captioning.imaging on every check.

MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000)
MIN_IMAGE_SIDE = env_int("MIN_IMAGE_SIDE", 32)
# Django keeps request bodies below this in memory and spools larger ones to disk.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Captioning

# "cuda", "cuda:1", "cpu", or empty for CUDA when available and the CPU otherwise.
CAPTION_DEVICE = os.environ.get("CAPTION_DEVICE", "")
# Relative checkpoint paths in ModelVersion rows are resolved against this folder.
CHECKPOINT_ROOT = Path(os.environ.get("CHECKPOINT_ROOT") or BASE_DIR)
# Checkpoints registered with register_model or the admin are copied here. Web and
# workers must share it, like MEDIA_ROOT.
MODEL_STORE_ROOT = Path(os.environ.get("MODEL_STORE_ROOT") or VAR_DIR / "models")
# The largest checkpoint the admin's upload form accepts.
MAX_CHECKPOINT_BYTES = env_int("MAX_CHECKPOINT_BYTES", 2 * 1024**3)
# Model versions each worker process keeps loaded; the least recently used goes first.
LOADED_MODEL_VERSIONS = env_int("LOADED_MODEL_VERSIONS", 2)
# The photo every new version must caption before it is accepted; empty for
# scikit-image's public-domain astronaut portrait.
MODEL_SMOKE_IMAGE = os.environ.get("MODEL_SMOKE_IMAGE", "")
# Evaluations read datasets only from inside this folder.
DATASET_ROOT = Path(os.environ.get("DATASET_ROOT") or BASE_DIR / "datasets")
# How many captions a job stores: the best one and the runners-up as alternatives.
CAPTION_ALTERNATIVES = env_int("CAPTION_ALTERNATIVES", 3)

# Celery and Redis

def local_redis_url() -> str:
    """Return the URL of the private Redis that `make run` started, or "" when none runs.

    `make run` writes it to var/redis-url while it runs, so that manage.py commands
    started from another shell (evaluate_model --queue, register through the admin)
    send their tasks to the same Redis as the worker.
    """
    path = VAR_DIR / "redis-url"
    return path.read_text().strip() if path.exists() else ""


REDIS_URL = os.environ.get("REDIS_URL") or local_redis_url() or "redis://127.0.0.1:6379/0"
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The job row is the result; nothing reads Celery's result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# Acknowledge after the task ran, so a job whose worker dies is delivered again, and
# fetch one message at a time, because one caption keeps a worker busy for a while.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# Reliability. The database is the record of every job. These limits bound how long a
# job may run and how often it is tried. The sweep (captioning.tasks.jobs_sweep, run
# by Celery beat) finishes or re-sends every job that a lost worker or message left.

# Seconds one caption task may run: the soft limit fails the job with a message, the
# hard limit kills the pool process.
CAPTION_SOFT_TIME_LIMIT = env_int("CAPTION_SOFT_TIME_LIMIT", 240)
CAPTION_TIME_LIMIT = env_int("CAPTION_TIME_LIMIT", 300)
# Seconds one evaluation or validation task may run.
EVALUATION_TIME_LIMIT = env_int("EVALUATION_TIME_LIMIT", 2 * 3600)
# Times a job is started before it is failed: a worker that dies in the middle of a job,
# or a transient database or storage error, costs one attempt.
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
# First wait before retrying after a transient error; it doubles on each retry.
JOB_RETRY_BACKOFF_SECONDS = env_int("JOB_RETRY_BACKOFF_SECONDS", 2)
# A job queued this long without a worker starting it is sent to the broker again, in
# case its message was lost (a Redis restart without persistence, a failed publish).
JOB_RESEND_AFTER_SECONDS = env_int("JOB_RESEND_AFTER_SECONDS", 600)
# Seconds between two sweeps.
JOB_SWEEP_INTERVAL_SECONDS = env_int("JOB_SWEEP_INTERVAL_SECONDS", 60)
# Redis delivers an unacknowledged message again after this many seconds. It has to
# exceed every task's time limit, or a task that is still running is delivered twice;
# the job's guarded start then ignores the second copy (system check W001 warns).
BROKER_VISIBILITY_TIMEOUT = env_int("BROKER_VISIBILITY_TIMEOUT", 3 * 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
# A pool process is replaced after this many tasks (0: never), which caps slow leaks in
# native libraries. The model is loaded again in the new process.
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("WORKER_MAX_TASKS_PER_CHILD", 0) or None
CELERY_BEAT_SCHEDULE = {
    "sweep-caption-jobs": {
        "task": "captioning.tasks.jobs_sweep",
        "schedule": JOB_SWEEP_INTERVAL_SECONDS,
    },
}
# Publishing retries three times with 1.5 s of waits in all, so a request does not hang
# for long on a broker that is down. The job then stays queued and the error is logged.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# REST API

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.JSONParser",
    ],
    "EXCEPTION_HANDLER": "captioning.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Clients send "Authorization: Token KEY". Session authentication serves the
    # browser, and DRF enforces CSRF on its unsafe requests.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "captioning.api.throttling.AnonymousClientThrottle",
        "captioning.api.throttling.UserThrottle",
    ],
}
# Django's default cache lives in each process. CACHE_URL (a Redis URL) makes every
# web process share one cache, and so one count per throttled client.
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
        }
    }

# Requests per client: "anon" per client address, "user" per user. Over the rate the
# API returns 429 with Retry-After. Permission checks run first, so requests rejected
# with 401 are not counted. The counts live in Django's default cache.
# NOTE: without CACHE_URL that cache is per process, so each web process counts on
# its own.
API_THROTTLE_RATES = {
    "anon": os.environ.get("API_THROTTLE_ANON", "60/min"),
    "user": os.environ.get("API_THROTTLE_USER", "600/min"),
}
# How many reverse proxies in front of the site append to X-Forwarded-For. With 0 the
# client address is REMOTE_ADDR, and the header is ignored so no client can forge it.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# The largest API request body. Larger ones get 413 before anything is parsed.
API_MAX_REQUEST_BYTES = env_int("API_MAX_REQUEST_BYTES", 100 * 1024 * 1024)
# OpenAPI schema at /api/schema/ and Swagger UI at /api/docs/, with the UI's files
# from the drf-spectacular-sidecar package, so the docs work without a CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "Captionsite API",
    "DESCRIPTION": (
        "Caption photos with a self-hosted model. Send the API key as "
        "`Authorization: Token KEY`; `manage.py create_api_key USER` prints one. "
        "Every error is `{\"error\": {\"code\", \"message\", \"details\"}}`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# Whether the upload page accepts visitors who are not signed in. When off, they are
# sent to the sign-in page first.
WEB_ALLOW_ANONYMOUS = env_bool("WEB_ALLOW_ANONYMOUS", True)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "web:upload"

# Whether the API accepts requests without credentials. Anonymous jobs belong to no
# user, so they can be read by id only while this is on. WEB_ALLOW_ANONYMOUS
# decides the same for the upload page.
API_ALLOW_ANONYMOUS = env_bool("API_ALLOW_ANONYMOUS", False)

# Logging: one line per record on standard error. Loggers log ids, never image bytes.

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

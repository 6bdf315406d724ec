"""Settings from the environment with embedded defaults (SQLite, eager Celery, local media).

Environment: DATABASE_URL, CELERY_BROKER_URL, CELERY_RESULT_BACKEND, MEDIA_ROOT,
EMBEDDING_CACHE_DIR, SAM_CHECKPOINT, SAM_MODEL_TYPE, DJANGO_SECRET_KEY, DJANGO_DEBUG,
DJANGO_ALLOWED_HOSTS, DJANGO_ENV (= production turns on the secure settings).
"""

import os
from pathlib import Path

import dj_database_url

from config.static_headers import add_headers as add_static_headers

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ.get("DJANGO_ENV", "development")
PRODUCTION = ENV == "production"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


if PRODUCTION:
    # secrets only from the environment
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
    if len(SECRET_KEY) < 50:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "DJANGO_ENV=production needs DJANGO_SECRET_KEY (at least 50 random characters) in the environment"
        )
    for _required in ("DATABASE_URL", "CELERY_BROKER_URL"):  # no silent SQLite / eager fallback
        if not os.environ.get(_required):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"DJANGO_ENV=production needs {_required} in the environment"
            )
else:
    SECRET_KEY = os.environ.get(
        "DJANGO_SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production"
    )
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = [
    h
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
    if h
]
CSRF_TRUSTED_ORIGINS = [
    o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o
]

INSTALLED_APPS = [
    # static files through whitenoise under runserver too, with its headers (static_headers.py)
    "whitenoise.runserver_nostatic",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "csp",
    "axes",
    "studies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # last, as django-axes asks: it turns a locked-out login into its lockout answer
    "axes.middleware.AxesMiddleware",
]

# Researcher logins (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username
# from one address, that pair is locked out for AXES_COOLOFF_TIME hours; a success resets it.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.25"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The address axes counts is the client's behind the trusted proxies (config/client_ip.py), the
# same rule as the enrolment throttle: never a header a client can set by itself.
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"

# Reverse proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated;
# e.g. "127.0.0.1" for nginx on this host, "172.16.0.0/12" for a proxy container). Empty: the
# header is ignored and REMOTE_ADDR is the client.
TRUSTED_PROXIES = [p.strip() for p in os.environ.get("TRUSTED_PROXIES", "").split(",") if p.strip()]
try:
    from config.client_ip import parse_networks

    parse_networks(TRUSTED_PROXIES)
except ValueError as exc:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(str(exc)) from None

# `/healthz` shows its details (vendor, transport, error texts) to staff and to requests that
# send this token in the X-Healthz-Token header (a monitoring probe); never by address.
HEALTHZ_TOKEN = os.environ.get("HEALTHZ_TOKEN", "")

# Django's cache holds counters every web process must share (the enrolment throttle): set
# CACHE_URL to a Redis URL in any deployment with more than one web process (compose does).
# Unset: a per-process memory cache, right for the single-process demo and the tests.
CACHE_URL = os.environ.get("CACHE_URL", "")
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://")):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"CACHE_URL must be a redis:// or rediss:// URL, got {CACHE_URL!r}"
        )
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "intervene",
        }
    }

# Content-Security-Policy (django-csp): scripts only from this site (the pages load ES modules,
# there is no inline script); WebAssembly for the in-browser SAM decoder; style attributes are
# allowed (progress bars), inline <style> and <script> are not needed anywhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", "'wasm-unsafe-eval'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "config.urls"
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
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60" if PRODUCTION else "0")),
        # persistent connections (DB_CONN_MAX_AGE > 0) are checked before each request reuses one,
        # so a connection PostgreSQL dropped is replaced instead of failing the request
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    # Writers take the lock when their transaction begins and wait for it (up to the timeout):
    # with the deferred default, two concurrent requests that both read and then write fail at
    # once with "database is locked" (the embedded demo serves several people at once).
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # Write-ahead log: pages read while a writer commits (the background job's progress
    # writes, studies/core/background.py) instead of waiting for it; writers still take turns.
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL;")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic's target; in development static files come from the finders (no folder needed).
STATIC_ROOT = (
    Path(os.environ["STATIC_ROOT"])
    if os.environ.get("STATIC_ROOT")
    else (BASE_DIR / "staticfiles" if PRODUCTION else None)
)
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_ADD_HEADERS_FUNCTION = add_static_headers
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
EMBEDDING_CACHE_DIR = Path(os.environ.get("EMBEDDING_CACHE_DIR", MEDIA_ROOT / "embeddings"))
# Object storage (docs/deploy.md "Object storage"): with STORAGE_URL (or AWS_STORAGE_BUCKET_NAME)
# data sets, masks, exports, plots (`default`) and the embedding cache and browser decoder files
# (`embeddings`) live in an S3-compatible bucket; MEDIA_ROOT and EMBEDDING_CACHE_DIR are then
# this machine's bounded read-through copies of it (LOCAL_CACHE_MAX_GB each, least recently
# used first out). Unset: the local file system, as in `make demo`.
try:
    from config.storage_url import parse_storage, s3_storages

    OBJECT_STORAGE = parse_storage(os.environ)
except ValueError as exc:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(str(exc)) from None
if OBJECT_STORAGE:
    STORAGES.update(s3_storages(OBJECT_STORAGE))
LOCAL_CACHE_MAX_BYTES = int(float(os.environ.get("LOCAL_CACHE_MAX_GB", "20")) * 1024**3)
SAM_CHECKPOINT = os.environ.get("SAM_CHECKPOINT", "")
SAM_MODEL_TYPE = os.environ.get("SAM_MODEL_TYPE", "vit_h")
# Largest accepted upload for imports through the web (bytes).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", 20 * 1024 * 1024))
# A data set archive uploaded through the researcher pages streams to a temporary file (never
# memory) and may be at most this large (bytes).
DATASET_UPLOAD_MAX_BYTES = int(os.environ.get("DATASET_UPLOAD_MAX_BYTES", 2 * 1024**3))

# Largest image an import accepts (pixels); bigger ones are refused before they are decoded.
IMPORT_MAX_PIXELS = int(os.environ.get("IMPORT_MAX_PIXELS", str(4096 * 4096)))
# Longest side (pixels) of the working copy an import stores for display and computation;
# larger images are scaled down to it (the original file and the scale are kept on the row).
IMPORT_MAX_SIDE = int(os.environ.get("IMPORT_MAX_SIDE", "1024"))

# Public enrolments (a consent on a public or crowd link) per client address and hour.
ENROLMENT_RATE_PER_HOUR = int(os.environ.get("ENROLMENT_RATE_PER_HOUR", "30"))

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/studies/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON bodies are checked for depth, non-finite and huge numbers, NUL and lone surrogates
    # (studies/core/api_input.py) so no body ends in a 500.
    "DEFAULT_PARSER_CLASSES": [
        "studies.core.api_input.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "EXCEPTION_HANDLER": "studies.core.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Intervene API",
    "DESCRIPTION": "Participants' events and trials, researchers' exports.",
    "VERSION": "1",
}

# Celery: eager (in-process) unless a broker is configured.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Eager only: a web server process runs batch jobs (exports, baselines, precomputes, trust
# evaluations, imports) on a background thread of its own, so the request that starts one
# returns at once (studies/core/background.py). 0: in the request, as Celery's eager mode does.
BACKGROUND_JOBS = env_bool("INTERVENE_BACKGROUND_JOBS", True)
if CELERY_TASK_ALWAYS_EAGER:
    # with a host named, kombu does not warn "No hostname was supplied" on the first send
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_RESULT_BACKEND = "cache+memory://"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600")),
}
CELERY_TASK_DEFAULT_QUEUE = "batch"
# Latency-critical tasks (named predict_*) go to `interactive`, everything else to `batch`.
CELERY_TASK_ROUTES = {
    "*.predict_*": {"queue": "interactive"},
    "*": {"queue": "batch"},
}
# Every module that defines tasks (a worker imports them all at start).
CELERY_IMPORTS = [
    "workers.tasks",
    "workers.export_tasks",
    "workers.intervention_tasks",
    "workers.trust_tasks",
    "workers.import_tasks",
    "workers.regression_tasks",
    "workers.analysis_tasks",
]
# How long the web waits for an interactive result before answering 503 (the client retries).
INTERACTIVE_TIMEOUT_S = float(os.environ.get("INTERACTIVE_TIMEOUT_S", "20"))

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # container / load-balancer probes speak plain HTTP
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}

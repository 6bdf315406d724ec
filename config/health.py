"""`/healthz`: is the web process up, can it reach the database and the Celery broker?

Answers 200 `{"status": "ok", "checks": {...}}` when every check passes, else 503 with the
failing check's error, so a load balancer or `docker compose` health check can act on it.
Each check is bounded by a short timeout; nothing is written anywhere. The details (vendor,
transport, timings, error text, which can name hosts and ports) go only to staff and to
requests carrying the configured `HEALTHZ_TOKEN` (header `X-Healthz-Token`); anyone else sees
ok / not ok. Never by address: behind a proxy on the same host every request is "local".
"""

from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

BROKER_TIMEOUT_S = 2.0


def check_database() -> dict:
    """`SELECT 1` on the default database."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {
        "ok": True,
        "vendor": connection.vendor,
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }


def check_broker() -> dict:
    """Open (and close) a connection to the Celery broker; eager mode has no broker to reach."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "eager"}
    from config.celery_app import app

    started = time.perf_counter()
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
        transport = conn.transport_cls
    return {
        "ok": True,
        "transport": str(transport),
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }


def _may_see_details(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    token = settings.HEALTHZ_TOKEN
    sent = request.headers.get("X-Healthz-Token", "")
    return bool(token) and hmac.compare_digest(sent.encode(), token.encode())


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Web, database and broker status; 200 when all pass, else 503."""
    checks: dict[str, dict] = {"web": {"ok": True}}
    for name, check in (("database", check_database), ("broker", check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # report any failure of the dependency, never crash the probe
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    healthy = all(c["ok"] for c in checks.values())
    if not _may_see_details(request):
        checks = {name: {"ok": c["ok"]} for name, c in checks.items()}
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )

"""Liveness and readiness for orchestrators: ``GET /healthz`` and ``GET /readyz``.

Readiness writes one short-lived key (``{ns}:ready``) on a client of its own with a short
timeout, so a probe answers within about a second even when Redis hangs. A write, not a PING: a
Redis at ``maxmemory`` still answers PING but refuses every webhook, and must not look ready.
The answer also reports what is configured (never a key itself) and Redis memory against
``maxmemory``, with a ``memory_high`` warning past ``INBOX_MEMORY_WARN_PERCENT`` (the instance
stays ready until Redis actually refuses writes: restarting it frees nothing).
"""

from flask import Blueprint

from inbox.connection import connect
from inbox.errors import StoreFull
from inbox.errors import StoreUnavailable
from inbox.figures import read_memory
from inbox.store import Store
from receiver import requestlog
from receiver.resources import resources

#: read timeout of the readiness probe; with the client's retries the probe stays near 1 s
PING_TIMEOUT = 0.25
#: lifetime of the probe key (ms): it never accumulates, whatever the probe rate
PROBE_TTL_MS = 10_000

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up and serving; touches nothing else."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """200 when Redis answers and a webhook key is configured, else 503 with the failing check."""
    shared = resources()
    settings = shared.settings
    checks = {
        "redis": _probe(shared.readiness_store),
        "webhook_keys": len(settings.webhook_keys),
        "api_keys": len(settings.inbox_api_keys),
        "encryption": "on" if settings.encryption_on else "off",
        "namespace": settings.namespace,
    }
    if checks["redis"] == "full":
        return _not_ready("Redis is full (maxmemory reached) and refuses writes.", checks)
    if checks["redis"] != "ok":
        return _not_ready("Redis does not answer.", checks)
    if not checks["webhook_keys"]:
        return _not_ready("No webhook key is configured.", checks)
    body = {"status": "ready", "checks": checks}
    memory = _memory(shared.readiness_client, settings)
    if memory is not None:
        checks["memory"] = memory.as_dict()
        if memory.warning:  # still ready: a restart frees nothing, but operators must act
            body["warnings"] = [{
                "code": "memory_high",
                "detail": f"Redis uses {memory.percent}% of maxmemory; writes fail when it is full.",
            }]
    return body


def _not_ready(detail, checks):
    requestlog.set_reason("not_ready")
    return {"error": "not_ready", "detail": detail, "checks": checks}, 503


def _probe(store):
    """``ok``, ``full`` (writes refused at maxmemory) or ``unavailable``."""
    try:
        store.probe_write(PROBE_TTL_MS)
    except StoreFull:
        return "full"
    except StoreUnavailable:
        return "unavailable"
    return "ok"


def _memory(client, settings):
    """Memory figures, or None when Redis stopped answering since the ping."""
    try:
        return read_memory(client, settings)
    except StoreUnavailable:
        return None


def init_app(app):
    shared = resources(app)
    shared.readiness_client = connect(shared.settings.redis_url, socket_timeout=PING_TIMEOUT)
    shared.readiness_store = Store(shared.settings, client=shared.readiness_client)
    app.register_blueprint(bp)

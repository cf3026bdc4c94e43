"""One structured JSON log line per request, and the request id every log line carries.

The request id is the caller's ``X-Request-ID`` when it looks like an id (a proxy or load balancer
sets one), else a new one; it is echoed in the response's ``X-Request-ID`` and stamped on every
log line written while the request is served (``inbox.logs``). Fields of the request line:
``route``, ``method``, ``status``, ``reason`` (machine code of an error), ``event`` (webhook
type), ``delivery`` (Metriport's ``meta.messageId``), ``messages`` (message ids), ``bytes`` (body
size) and ``ms`` (duration). Views add fields with ``note(...)``; nothing else of the request is
read, so no body, subject, name or signature can reach a log line. ``POST /webhook``, served below
Flask (``receiver.webhook``), writes the same line with ``write``.
"""

import logging
import time

from flask import g
from flask import request

from inbox import logs

LOGGER = logging.getLogger("metriport_inbox.requests")
HEADER = "X-Request-ID"


def note(**fields):
    """Add ``fields`` (ids, sizes, codes only) to this request's log line."""
    g.setdefault("log_fields", {}).update(fields)


def set_reason(code):
    """Record the machine reason of an error answer (``receiver.errors`` calls this)."""
    g.reason = code


def started():
    """When this request began (``time.perf_counter()``), or None outside one."""
    return g.get("started")


def _start():
    g.started = time.perf_counter()
    g.request_id = logs.request_id(request.headers.get(HEADER))
    g.request_id_token = logs.REQUEST_ID.set(g.request_id)


def write(route, method, status, reason, size, fields, started):
    """Write one request's log line (Flask's routes through ``_write``, the webhook directly)."""
    LOGGER.info("request", extra={
        "route": route,
        "method": method,
        "status": status,
        "reason": reason,
        "bytes": size,
        **fields,
        "ms": round((time.perf_counter() - started) * 1000, 2),
    })


def _write(response):
    write(request.url_rule.rule if request.url_rule else None, request.method, response.status_code,
          g.get("reason"), request.content_length, g.get("log_fields", {}),
          g.get("started", time.perf_counter()))
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
    return response


def _end(exc):
    token = g.pop("request_id_token", None)
    if token is not None:
        logs.REQUEST_ID.reset(token)


def init_app(app):
    logs.configure()
    app.before_request(_start)
    app.after_request(_write)
    app.teardown_request(_end)

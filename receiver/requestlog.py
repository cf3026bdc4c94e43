"""One structured JSON log line per request: what happened, never what was said.

Fields: ``route``, ``method``, ``status``, ``reason`` (machine code of an error), ``event``
(webhook type), ``delivery`` (Metriport's ``meta.messageId``), ``messages`` (message ids),
``bytes`` (body size) and ``ms`` (duration). Views add fields with ``note(...)``; nothing else of
the request is read, so no body, subject, name or signature can reach a log line.
"""

import json
import logging
import sys
import time

from flask import g
from flask import request

LOGGER = logging.getLogger("metriport_inbox.requests")


def note(**fields):
    """Add ``fields`` (ids, sizes, codes only) to this request's log line."""
    g.setdefault("log_fields", {}).update(fields)


def set_reason(code):
    """Record the machine reason of an error answer (``receiver.errors`` calls this)."""
    g.reason = code


def reason():
    """The reason code recorded for this request, or None."""
    return g.get("reason")


def _start():
    g.started = time.perf_counter()


def _write(response):
    started = g.get("started", time.perf_counter())
    fields = {
        "route": request.url_rule.rule if request.url_rule else None,
        "method": request.method,
        "status": response.status_code,
        "reason": g.get("reason"),
        "bytes": request.content_length,
        **g.get("log_fields", {}),
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }
    LOGGER.info(json.dumps(fields, separators=(",", ":")))
    return response


def _configure():
    """Write bare JSON lines to stderr, once per process, beside gunicorn's own log."""
    if LOGGER.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def init_app(app):
    _configure()
    app.before_request(_start)
    app.after_request(_write)

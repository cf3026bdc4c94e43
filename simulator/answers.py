"""Metriport's answer shapes, byte for byte: compact JSON bodies and its error forms.

Errors use Metriport's JSON shape ``{status, name, title, detail}`` (its
``default-error-handler.ts``); a rate limit is express-rate-limit's plain-text 429 with draft-6
``RateLimit-*`` headers; gateway failures are ``{"message"}`` bodies.
"""

import json

from flask import Response
from flask import current_app

from simulator import faults as fault_kinds

#: the ``app.extensions`` key of the ``simulator.server.Simulator`` an app serves
EXTENSION = "simulator"
_JSON = "application/json; charset=utf-8"
_STATUS_NAMES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    500: "INTERNAL_SERVER_ERROR",
}


def current():
    """The ``Simulator`` behind the app handling the current request."""
    return current_app.extensions[EXTENSION]


def dumps(value):
    """Compact JSON with non-ASCII kept as is, in insertion order, like Express's ``res.json``."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_answer(value, status):
    return Response(dumps(value), status=status, content_type=_JSON)


def raw_json_answer(body, status=200):
    """An answer whose JSON body is already encoded."""
    return Response(body, status=status, content_type=_JSON)


def error(status, title, detail):
    """Metriport's error body (``default-error-handler.ts``)."""
    return json_answer({"status": status, "name": _STATUS_NAMES[status], "title": title, "detail": detail}, status)


def rate_limited(retry_after):
    """express-rate-limit's 429: plain text with draft-6 ``RateLimit-*`` headers and Retry-After."""
    response = Response(fault_kinds.RATE_LIMIT_TEXT, status=429, content_type="text/plain; charset=utf-8")
    response.headers["Retry-After"] = str(retry_after)
    response.headers["RateLimit-Policy"] = "60;w=60"
    response.headers["RateLimit-Limit"] = "60"
    response.headers["RateLimit-Remaining"] = "0"
    response.headers["RateLimit-Reset"] = str(retry_after)
    return response


def server_error(status):
    """A transient failure: Metriport's 500 shape, or the gateway's ``{"message"}`` for 502-504."""
    if status == 500:
        return error(500, "InternalServerError", "Internal server error")
    return json_answer({"message": "Internal server error" if status != 504 else "Endpoint request timed out"}, status)

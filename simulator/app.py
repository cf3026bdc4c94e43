"""The simulator's HTTP API: Metriport's list/get message endpoints and webhook settings.

Faithful to ``shared/reference/metriport-api.md``: ``x-api-key`` checked first (the API
Gateway's 403 ``{"message": "Forbidden"}``), then the run's fault plan (429 with ``Retry-After``
and ``RateLimit-*`` headers and a plain-text body, transient 5xx, slow answers), then the route.
Errors use Metriport's JSON shape ``{status, name, title, detail}``. Every request is counted
by route and status, so a test can assert how many requests a client made.
"""

import json
import time
import urllib.parse

from flask import Flask
from flask import Response
from flask import request

from simulator import control
from simulator import faults as fault_kinds

LIST_PATH = "/medical/v1/message"
COUNT_DEFAULT = 50
COUNT_MAX = 500
_JSON = "application/json; charset=utf-8"
BOTH_CURSORS = "Either fromItem or toItem can be provided, but not both"
_STATUS_NAMES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    500: "INTERNAL_SERVER_ERROR",
}


def create_app(simulator):
    """The Flask app serving ``simulator`` (a ``simulator.server.Simulator``)."""
    app = Flask(__name__)
    app.extensions["simulator"] = simulator

    @app.before_request
    def _gate():
        route = _route_name()
        simulator.count(route)
        if route == "control":
            return None
        if request.headers.get("x-api-key") != simulator.api_key:
            return _json({"message": "Forbidden"}, 403)
        if route in ("list", "get"):
            fault = simulator.faults.draw()
            if fault.delay:
                time.sleep(fault.delay)
            if fault.kind == fault_kinds.RATE_LIMITED:
                return _rate_limited(simulator.faults.retry_after)
            if fault.kind == fault_kinds.SERVER_ERROR:
                return _server_error(fault.status)
        return None

    @app.after_request
    def _count_status(response):
        simulator.count(f"{_route_name()} {response.status_code}")
        return response

    @app.get(LIST_PATH)
    def list_messages():
        query = request.args
        count, problem = _count(query.get("count"))
        from_item = query.get("fromItem") or None
        to_item = query.get("toItem") or None
        direction = query.get("direction") or None
        patient = query.get("patientId") or None
        if problem:
            return problem
        if from_item and to_item:
            return _error(400, "Missing or invalid parameters", BOTH_CURSORS)
        if direction not in (None, "inbound", "outbound"):
            return _error(
                400,
                "Missing or invalid parameters",
                "Invalid enum value. Expected 'outbound' | 'inbound', on direction",
            )
        mailbox = simulator.mailbox
        ids, next_id, prev_id, total = mailbox.page(direction, patient, count, from_item, to_item)
        filters = [("count", count), ("direction", direction), ("patientId", patient)]
        meta = {}
        if next_id is not None:
            meta["nextPage"] = _page_url([("fromItem", next_id), *filters])
        if prev_id is not None:
            meta["prevPage"] = _page_url([("toItem", prev_id), *filters])
        meta["itemsOnPage"] = len(ids)
        if from_item is None and to_item is None:
            meta["itemsInTotal"] = total
        messages = b",".join(mailbox.encoded(message_id) for message_id in ids)
        body = b'{"meta":' + _dumps(meta) + b',"messages":[' + messages + b"]}"
        return Response(body, status=200, content_type=_JSON)

    @app.get(f"{LIST_PATH}/<message_id>")
    def get_message(message_id):
        resource = simulator.mailbox.get(message_id)
        if resource is None:
            return _error(404, "NotFoundError", "Could not find message")
        return _json({"communication": resource}, 200)

    @app.get("/settings/webhook")
    def webhook_status():
        return _json(simulator.sender.status(), 200)

    @app.post("/settings/webhook/retry")
    def webhook_retry():
        simulator.sender.retry_failed_async()
        return Response(status=200)

    @app.errorhandler(404)
    def _not_found(exc):
        return _error(404, "NotFoundError", "Route not found")

    @app.errorhandler(405)
    def _method_not_allowed(exc):
        return _error(404, "NotFoundError", "Route not found")

    control.init_app(app)
    return app


def _route_name():
    path = request.path
    if path == LIST_PATH:
        return "list"
    if path.startswith(LIST_PATH + "/"):
        return "get"
    if path.startswith("/settings"):
        return "settings"
    if path.startswith("/_simulator"):
        return "control"
    return "other"


def _count(raw):
    """``count`` as Metriport validates it: absent or 0 -> 50, 1..500, else a 400 response."""
    if raw is None or raw == "":
        return COUNT_DEFAULT, None
    try:
        value = int(raw)
    except ValueError:
        return None, _error(400, "Missing or invalid parameters", "Expected number, received nan, on count")
    if value < 0:
        return None, _error(
            400, "Missing or invalid parameters", "Number must be greater than or equal to 0, on count"
        )
    if value > COUNT_MAX:
        return None, _error(
            400,
            "Missing or invalid parameters",
            f"Number must be less than or equal to {COUNT_MAX}, on count",
        )
    return value or COUNT_DEFAULT, None


def _page_url(params):
    """An absolute page URL on the origin the client called, carrying the filters."""
    query = urllib.parse.urlencode([(name, value) for name, value in params if value is not None])
    return f"{request.host_url.rstrip('/')}{LIST_PATH}?{query}"


def _dumps(value):
    """Compact JSON with non-ASCII kept as is, in insertion order, like Express's ``res.json``."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json(value, status):
    return Response(_dumps(value), status=status, content_type=_JSON)


def _error(status, title, detail):
    """Metriport's error body (``default-error-handler.ts``)."""
    return _json({"status": status, "name": _STATUS_NAMES[status], "title": title, "detail": detail}, status)


def _rate_limited(retry_after):
    """express-rate-limit's 429: plain text with draft-6 ``RateLimit-*`` headers and Retry-After."""
    response = Response(fault_kinds.RATE_LIMIT_TEXT, status=429, content_type="text/plain; charset=utf-8")
    response.headers["Retry-After"] = str(retry_after)
    response.headers["RateLimit-Policy"] = "60;w=60"
    response.headers["RateLimit-Limit"] = "60"
    response.headers["RateLimit-Remaining"] = "0"
    response.headers["RateLimit-Reset"] = str(retry_after)
    return response


def _server_error(status):
    """A transient failure: Metriport's 500 shape, or the gateway's ``{"message"}`` for 502-504."""
    if status == 500:
        return _error(500, "InternalServerError", "Internal server error")
    return _json({"message": "Internal server error" if status != 504 else "Endpoint request timed out"}, status)

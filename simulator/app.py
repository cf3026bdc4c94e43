"""The simulator's HTTP API: the gate every request passes, and the blueprints behind it.

Faithful to Metriport's API (docs/simulator.md): ``x-api-key`` checked first (the API
Gateway's 403 ``{"message": "Forbidden"}``), then the run's fault plan (429 with ``Retry-After``
and ``RateLimit-*`` headers and a plain-text body, transient 5xx, slow answers), then the route:
``simulator.messages`` (list and get), ``simulator.webhook_settings`` and the simulator's own
``simulator.control``. Every request is counted by route and status, so a test can assert how
many requests a client made.
"""

import time

from flask import Flask
from flask import request

from simulator import control
from simulator import faults as fault_kinds
from simulator import messages
from simulator import webhook_settings
from simulator.answers import EXTENSION
from simulator.answers import current
from simulator.answers import error
from simulator.answers import json_answer
from simulator.answers import rate_limited
from simulator.answers import server_error
from simulator.messages import LIST_PATH


def create_app(simulator):
    """The Flask app serving ``simulator`` (a ``simulator.server.Simulator``)."""
    app = Flask(__name__)
    app.extensions[EXTENSION] = simulator
    app.before_request(_gate)
    app.after_request(_count_status)
    app.register_error_handler(404, _not_found)
    app.register_error_handler(405, _not_found)
    app.register_blueprint(messages.bp)
    app.register_blueprint(webhook_settings.bp)
    control.init_app(app)
    return app


def _gate():
    """Count the request; then the API key (the gateway's 403), then the run's fault plan."""
    simulator = current()
    route = _route_name()
    simulator.count(route)
    if route == "control":
        return None
    if request.headers.get("x-api-key") != simulator.api_key:
        return json_answer({"message": "Forbidden"}, 403)
    if route in ("list", "get"):
        fault = simulator.faults.draw()
        if fault.delay:
            time.sleep(fault.delay)
        if fault.kind == fault_kinds.RATE_LIMITED:
            return rate_limited(simulator.faults.retry_after)
        if fault.kind == fault_kinds.SERVER_ERROR:
            return server_error(fault.status)
    return None


def _count_status(response):
    current().count(f"{_route_name()} {response.status_code}")
    return response


def _not_found(exc):
    """Unknown routes and methods: Metriport's 404 shape (a 405 looks the same from outside)."""
    return error(404, "NotFoundError", "Route not found")


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

"""The simulator's own control API under ``/_simulator``: what Metriport would not have, but a
demo or a test driving ``metriport-inbox simulate`` as a subprocess needs.

Seed more messages, settle outbound statuses, deliver webhooks with chaos, retry failures, change
the fault plan, and read back what the simulator holds. Guarded by the same ``x-api-key``; never
faulted; bound to 127.0.0.1 like the rest.
"""

from flask import Blueprint
from flask import jsonify
from flask import request

from simulator.answers import current
from simulator.faults import Faults
from simulator.sender import SHAPES

bp = Blueprint("simulator_control", __name__, url_prefix="/_simulator")
_CHAOS = {"drop": float, "duplicate": float, "shuffle": bool, "delay": float, "concurrency": int}
_FAULTS = {
    "rate_limit": float,
    "server_error": float,
    "slow": float,
    "delay_max": float,
    "retry_after": int,
    "seed": int,
    "max_consecutive": int,
}


class _BadRequest(Exception):
    """Raised when a control request carries an unusable field."""


def init_app(app):
    app.register_blueprint(bp)


@bp.before_request
def _authorize():
    if request.headers.get("x-api-key") != current().api_key:
        return jsonify(error="forbidden", detail="The x-api-key header is missing or wrong."), 403
    return None


@bp.errorhandler(_BadRequest)
def _bad_request(exc):
    return jsonify(error="bad_request", detail=str(exc)), 400


def _body():
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _BadRequest("The body must be a JSON object.")
    return body


def _options(body, schema):
    options = {}
    for name, kind in schema.items():
        if name in body:
            value = body[name]
            if kind is bool and not isinstance(value, bool):
                raise _BadRequest(f"{name} must be true or false.")
            if kind is not bool and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _BadRequest(f"{name} must be a number.")
            options[name] = kind(value)
    return options


@bp.get("/state")
def state():
    """Counts of what the simulator holds, requests received and webhook outcomes."""
    sim = current()
    mailbox = sim.mailbox
    return jsonify(
        messages=len(mailbox),
        inbound=len(mailbox.ids("inbound")),
        outbound=len(mailbox.ids("outbound")),
        pending=len(mailbox.pending()),
        requests=dict(sim.requests),
        webhook=sim.sender.status(),
        faultsInjected=sim.faults.injected,
    )


@bp.get("/ids")
def ids():
    """Every message id (optionally one direction), newest first."""
    direction = request.args.get("direction") or None
    return jsonify(ids=sorted(current().mailbox.ids(direction), reverse=True))


@bp.post("/messages")
def add_messages():
    """Generate ``count`` new messages (optionally one ``direction``; ``pending`` true: outbound
    ones still in progress); their ids."""
    body = _body()
    count = body.get("count", 1)
    direction = body.get("direction")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 100000:
        raise _BadRequest("count must be a whole number from 0 to 100000.")
    pending = body.get("pending")
    if direction not in (None, "inbound", "outbound"):
        raise _BadRequest("direction must be inbound or outbound.")
    if pending not in (None, True, False):
        raise _BadRequest("pending must be true or false.")
    return jsonify(ids=current().mailbox.add(count, direction, pending))


@bp.post("/updates")
def settle_statuses():
    """Move ``count`` in-progress outbound messages (oldest first) to completed or failed."""
    count = _body().get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise _BadRequest("count must be a whole number (omit it for all pending messages).")
    return jsonify(ids=current().mailbox.update(count))


@bp.post("/webhooks")
def deliver():
    """Send the webhooks of ``ids`` (default: all messages) to ``url`` with chaos options."""
    body = _body()
    sim = current()
    if "url" in body:
        sim.sender.url = body["url"]
    if "key" in body:
        sim.sender.key = body["key"]
    shape = body.get("shape", "communication")
    if shape not in SHAPES:
        raise _BadRequest(f"shape must be one of {', '.join(SHAPES)}.")
    message_ids = body.get("ids")
    if message_ids is not None and not (
        isinstance(message_ids, list) and all(isinstance(i, str) for i in message_ids)
    ):
        raise _BadRequest("ids must be a list of message ids.")
    report = sim.deliver_webhooks(
        message_ids, shape=shape, ping=bool(body.get("ping")), **_options(body, _CHAOS)
    )
    return jsonify(vars(report))


@bp.post("/webhooks/retry")
def retry():
    """Re-send every failed delivery now (synchronously, unlike Metriport's endpoint)."""
    sim = current()
    return jsonify(succeeded=sim.sender.retry_failed(), webhook=sim.sender.status())


@bp.get("/deliveries")
def deliveries():
    """The delivery ledger: one row per webhook request, without bodies."""
    rows = [
        {
            "seq": d.seq,
            "messageId": d.message_id,
            "type": d.type,
            "id": d.subject_id,
            "outcome": d.outcome,
            "statusCode": d.status_code,
            "attempts": d.attempts,
            "dropped": d.dropped,
        }
        for d in current().sender.deliveries
    ]
    return jsonify(deliveries=rows)


@bp.put("/faults")
def set_faults():
    """Replace the fault plan (rates as fractions; omitted ones are 0; ``script`` forces
    statuses on given request numbers, counted from this call)."""
    body = _body()
    options = _options(body, _FAULTS)
    script = body.get("script", {})
    try:
        options["script"] = {int(number): int(status) for number, status in script.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise _BadRequest('script must map request numbers to statuses, e.g. {"3": 503}.') from exc
    try:
        current().faults = Faults(**options)
    except ValueError as exc:
        raise _BadRequest(str(exc)) from exc
    return jsonify(ok=True)

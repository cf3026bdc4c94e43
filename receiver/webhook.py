"""POST /webhook: verify, answer Metriport in time, store, and never leak a message.

One straight-line view, after pypi/warehouse's secrets webhook: size, signature over the raw
bytes, parse, then one branch per event type. Every exit has its own status and reason code
(rejections are counted as ``rejected:<code>``; every answer per hour in ``inbox.traffic``). The
hot path of ``message.received`` is one HMAC, one JSON parse and one Redis round trip (the
records and the delivery ledger go to the store in the same atomic call); the hourly counter
is written after the answer is sent.
"""

import functools

from flask import Blueprint
from flask import request
from rq import Queue
from werkzeug.exceptions import LengthRequired
from werkzeug.exceptions import RequestEntityTooLarge

from inbox.connection import translate_errors
from inbox.errors import ConfigError
from inbox.errors import InvalidMessage
from inbox.errors import StoreUnavailable
from inbox.figures import safe_code
from inbox.signing import HEADER
from inbox.signing import verify
from inbox.store import Result
from inbox.store import Via
from inbox.traffic import Traffic
from receiver import events
from receiver import requestlog
from receiver.resources import resources

#: the worker's job that reads one message from Metriport's API and stores it
FETCH_JOB = "worker.jobs.fetch_message"
#: the worker's reconcile job, queued at once for a signed body whose message cannot be read
RECONCILE_JOB = "worker.jobs.reconcile"
#: why a signed ``message.received`` body could not be read: kept, counted, answered 202, and an
#: incremental reconciliation queued, instead of refused (Metriport publishes no schema for it)
UNREADABLE = frozenset({"no_message", "not_an_object", "missing_id", "invalid_id"})
#: how long an unreadable body is kept for an operator (``metriport-inbox unreadable-webhooks``)
UNREADABLE_TTL_SECONDS = 7 * 24 * 3600

bp = Blueprint("webhook", __name__)


@bp.post("/webhook")
def receive():
    """Take one Metriport delivery; 2xx only once it is stored (or its fetch is queued)."""
    shared = resources()
    settings = shared.settings
    body = _read_body(settings.webhook_max_bytes)
    verify(settings.webhook_keys, body, request.headers.get(HEADER))
    event = events.parse(body)
    kind = events.event_type(event)
    delivery_id = events.delivery_id(event)
    requestlog.note(event=events.type_label(kind), delivery=delivery_id)
    if kind == "ping":
        return {"pong": event.get("ping")}
    if kind == "message.received":
        return _received(shared, event, body, delivery_id)
    if kind == "message.status":
        return _status(shared, event)
    # medical.*, patient.* ... share the account's single URL: acknowledge, count, nothing else.
    label = events.type_label(kind)
    shared.store.count_event(f"event:{label}")
    return {"ignored": label}


def _read_body(limit):
    """The raw body, read once; 411 without a length, 413 past ``limit`` (chunked too).

    Werkzeug stops a chunked body silently at the limit, so such a body is read with a limit
    one byte higher: a body that reaches it is too large.
    """
    if request.content_length is None:
        if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
            raise LengthRequired("A webhook needs a Content-Length or chunked encoding.")
        request.max_content_length = limit + 1
    try:
        body = request.get_data()
    except RequestEntityTooLarge:
        body = None
    if body is None or len(body) > limit:
        raise RequestEntityTooLarge(f"The body is larger than {limit} bytes.")
    requestlog.note(bytes=len(body))
    return body


def _received(shared, event, body, delivery_id):
    try:
        records, fetch_ids = events.received_messages(event)
    except InvalidMessage as exc:
        if exc.code not in UNREADABLE:
            raise
        return _unreadable(shared, body, delivery_id, exc.code)
    requestlog.note(messages=[record.id for record in records] + fetch_ids)
    store = shared.store
    delivery = store.delivery(delivery_id, body) if delivery_id else None
    if fetch_ids and delivery and store.replayed(delivery):
        # A replay does no work: its fetches were queued when the delivery was first taken.
        store.count_event("replay")
        return {**Result().counts(), "fetching": 0, "replay": True}, 200
    # Queue fetches before the ledger records the delivery: a lost enqueue is then retried
    # with the delivery instead of being hidden as a replay.
    _enqueue_fetches(shared, fetch_ids)
    result = Result()
    if records or delivery:
        result = shared.store.upsert(records, Via.WEBHOOK, delivery=delivery)
    summary = {**result.counts(), "fetching": len(fetch_ids), "replay": result.replay}
    return summary, 202 if fetch_ids and not records else 200


def _unreadable(shared, body, delivery_id, reason):
    """A signed ``message.received`` whose message this service cannot find (a shape Metriport
    never documented): keep the body sealed for an operator, count it, and queue one immediate
    incremental run that stores the message from the list endpoint (debounced: while one is
    queued, a burst queues no other). 202, so Metriport does not mark the delivery failed."""
    store, settings = shared.store, shared.settings
    requestlog.set_reason(reason)
    quarantine_id = delivery_id or store.body_hash(body)
    store.quarantine(quarantine_id, body, reason, UNREADABLE_TTL_SECONDS)
    # the flag lives as long as the queued job may wait, so a lost job frees it by itself
    queued = store.claim_soon_run(settings.reconcile_interval * 1000)
    if queued:
        try:
            with translate_errors("queue an immediate reconcile run"):
                shared.fetch_queue.enqueue(
                    RECONCILE_JOB, kwargs={"mode": "incremental", "handoff": True},
                    job_timeout=max(30, int(settings.reconcile_interval * 0.9)),
                    ttl=settings.reconcile_interval, result_ttl=3600, failure_ttl=7 * 24 * 3600)
        except StoreUnavailable:
            store.clear_soon_run()
            raise
    return {"unreadable": reason, "kept": quarantine_id, "reconcile": "queued" if queued else "pending"}, 202


def _status(shared, event):
    message_id, status, as_of = events.status_update(event)
    requestlog.note(messages=[message_id])
    outcome = shared.store.apply_status(message_id, status, as_of, via=Via.WEBHOOK)
    if outcome is None:
        _enqueue_fetches(shared, [message_id])
        return {**Result().counts(), "fetching": 1, "replay": False}, 202
    return {**Result(outcomes=(outcome,)).counts(), "fetching": 0, "replay": False}


def _enqueue_fetches(shared, message_ids):
    """Queue the worker's fetch job for each id (ids only, never content), in one pipeline."""
    if not message_ids:
        return
    queue = shared.fetch_queue
    jobs = [Queue.prepare_data(FETCH_JOB, (message_id,)) for message_id in message_ids]
    with translate_errors("queue a message fetch"):
        queue.enqueue_many(jobs)


@bp.after_request
def _count_answer(response):
    """Count the answer for the hourly charts, and a refusal by reason in the totals too.

    An accepted or failed answer is counted once it has been sent (``call_on_close``), so the
    count adds nothing to the time Metriport waits, and a Redis that hangs cannot hold up an
    answer (a ping) that needed no Redis. Best effort: a lost count never becomes an error.
    """
    reason = requestlog.reason()
    status = response.status_code
    if reason == "store_unavailable":
        return response
    if status < 400:
        field, total = "accepted", None
    elif status < 500:
        field = f"rejected:{safe_code(reason or 'other')}"
        total = field if reason else None
    else:
        field, total = f"failed:{safe_code(reason or 'error')}", None
    traffic = resources().traffic
    if 400 <= status < 500:
        # a refusal is counted before it is answered, as it always was (one round trip)
        _count(traffic, field, total, wait=True)
    else:
        # after the answer, without waiting for the reply when a batch is under way
        response.call_on_close(functools.partial(_count, traffic, field, total, wait=False))
    return response


def _count(traffic, field, total, wait):
    try:
        traffic.count(field, total, wait=wait)
    except StoreUnavailable:
        pass


def init_app(app):
    """Mount POST /webhook; refuse to build an app that could verify nothing."""
    shared = resources(app)
    if not shared.settings.webhook_keys:
        raise ConfigError(
            "METRIPORT_WEBHOOK_KEY is not set: the webhook cannot verify Metriport's signature "
            "(copy the key from the Metriport dashboard, Developers page)."
        )
    shared.traffic = Traffic(shared.settings, shared.connections.store, batch=shared.store.batch)
    shared.fetch_queue = Queue(shared.settings.queue_name, connection=shared.connections.queue)
    app.register_blueprint(bp)

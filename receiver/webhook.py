"""POST /webhook: verify, answer Metriport in time, store, and never leak a message.

One straight-line handler, after pypi/warehouse's secrets webhook: size, signature over the raw
bytes, parse, then one branch per event type. Every exit has its own status and reason code
(rejections are counted as ``rejected:<code>``; every answer per hour in ``inbox.traffic``). The
hot path of ``message.received`` is one HMAC, one JSON parse and one Redis round trip (the
records and the delivery ledger go to the store in the same atomic call); the hourly counter
is written after the answer is sent.

The webhook is served below Flask: ``Webhook`` wraps the Flask app's ``wsgi_app`` (the
middleware pattern of werkzeug's ``ProxyFix``), answers every request for ``/webhook`` itself
and hands every other path to Flask. Flask's request context, routing, hooks and response
objects cost a webhook more CPU than verifying, parsing and storing it (bench/RESULTS.md);
the answer carries what Flask's routes carry all the same: the JSON error shape and its
status (``receiver.errors.describe``), the request log line and request id
(``receiver.requestlog``), the metrics (``receiver.metrics``) and the hourly counters.
"""

import functools
import time
from http import HTTPStatus

from rq import Queue
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import LengthRequired
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import ClosingIterator

from inbox import compactjson
from inbox import logs
from inbox.connection import translate_errors
from inbox.errors import ConfigError
from inbox.errors import InvalidMessage
from inbox.errors import StoreUnavailable
from inbox.figures import safe_code
from inbox.signing import verify
from inbox.store import Result
from inbox.store import Via
from inbox.traffic import Traffic
from receiver import errors
from receiver import events
from receiver import metrics
from receiver import requestlog
from receiver.resources import resources

#: the one path this module serves
PATH = "/webhook"
#: the worker's job that reads one message from Metriport's API and stores it
FETCH_JOB = "worker.jobs.fetch_message"
#: the worker's reconcile job, queued at once for a signed body whose message cannot be read
RECONCILE_JOB = "worker.jobs.reconcile"
#: why a signed ``message.received`` body could not be read: kept, counted, answered 202, and an
#: incremental reconciliation queued, instead of refused (Metriport publishes no schema for it)
UNREADABLE = frozenset({"no_message", "not_an_object", "missing_id", "invalid_id"})
#: how long an unreadable body is kept for an operator (``metriport-inbox unreadable-webhooks``)
UNREADABLE_TTL_SECONDS = 7 * 24 * 3600
#: the signature header as WSGI names it (``inbox.signing.HEADER``)
_SIGNATURE = "HTTP_X_METRIPORT_SIGNATURE"
_REQUEST_ID = "HTTP_" + requestlog.HEADER.upper().replace("-", "_")
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class Webhook:
    """The WSGI app of ``/webhook``, in front of the (Flask) app that serves every other path."""

    def __init__(self, app, shared):
        self.app = app
        self.shared = shared

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        started = time.perf_counter()
        request_id = logs.request_id(environ.get(_REQUEST_ID))
        token = logs.REQUEST_ID.set(request_id)
        try:
            status, headers, body, after = self._serve(environ, started)
        finally:
            logs.REQUEST_ID.reset(token)
        headers.append((requestlog.HEADER, request_id))
        start_response(_STATUS_LINES.get(status, f"{status} Error"), headers)
        # WSGI servers call close() once the answer is sent: the hourly count runs then
        return ClosingIterator([body], after)

    def _serve(self, environ, started):
        """``(status, headers, body, what to run once sent)``; the request's log line and
        metrics are written here, whatever the outcome."""
        method = environ.get("REQUEST_METHOD", "")
        length = environ.get("CONTENT_LENGTH")
        #: the log line's fields (ids, sizes, codes only); "reason" is an error's code
        note = {"bytes": int(length) if length and length.isdigit() else None}
        headers = []
        try:
            if method != "POST":
                raise MethodNotAllowed(valid_methods=["POST"])
            answer, status = self._receive(environ, note)
        except Exception as exc:  # every exit answers JSON; describe() logs a bug's whereabouts
            status, code, detail, headers = errors.describe(exc)
            note["reason"] = code
            answer = {"error": code, "detail": detail}
        body = compactjson.dumps(answer)
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        reason = note.pop("reason", None)
        requestlog.write(PATH, method, status, reason, note.pop("bytes"), note, started)
        metrics.observe(PATH, method, status, started)
        return status, headers, body, self._count_answer(status, reason)

    def _receive(self, environ, note):
        """Take one Metriport delivery: ``(answer, status)``, 2xx only once it is stored (or its
        fetch is queued)."""
        shared = self.shared
        settings = shared.settings
        body = _read_body(environ, settings.webhook_max_bytes)
        note["bytes"] = len(body)
        verify(settings.webhook_keys, body, environ.get(_SIGNATURE))
        event = events.parse(body)
        kind = events.event_type(event)
        delivery_id = events.delivery_id(event)
        note.update(event=events.type_label(kind), delivery=delivery_id)
        if kind == "ping":
            return {"pong": event.get("ping")}, 200
        if kind == "message.received":
            return _received(shared, event, body, delivery_id, note)
        if kind == "message.status":
            return _status(shared, event, note)
        # medical.*, patient.* ... share the account's single URL: acknowledge, count, nothing else.
        label = events.type_label(kind)
        shared.store.count_event(f"event:{label}")
        return {"ignored": label}, 200

    def _count_answer(self, status, reason):
        """Count the answer for the hourly charts, and a refusal by reason in the totals too;
        what to run once the answer has been sent (None if nothing).

        A refusal is counted before it is answered (one round trip). An accepted or failed
        answer is counted once it has been sent, so the count adds nothing to the time Metriport
        waits, and a Redis that hangs cannot hold up an answer (a ping) that needed no Redis.
        Best effort: a lost count never becomes an error.
        """
        if reason == "store_unavailable":
            return None
        if status < 400:
            field, total = "accepted", None
        elif status < 500:
            field = f"rejected:{safe_code(reason or 'other')}"
            total = field if reason else None
        else:
            field, total = f"failed:{safe_code(reason or 'error')}", None
        traffic = self.shared.traffic
        if 400 <= status < 500:
            _count(traffic, field, total, wait=True)
            return None
        # after the answer, without waiting for the reply when a batch is under way
        return functools.partial(_count, traffic, field, total, wait=False)


def _read_body(environ, limit):
    """The raw body, read once; 411 without a length, 413 past ``limit`` (chunked too).

    gunicorn decodes a chunked body: it is read up to one byte past the limit, so a body that
    reaches that byte is too large.
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        length = int(length)  # gunicorn refuses a Content-Length that is not a number
        if length > limit:
            raise RequestEntityTooLarge(f"The body is larger than {limit} bytes.")
        body = stream.read(length)
        if len(body) < length:
            raise BadRequest("The body ended before its Content-Length.")
        return body
    if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        raise LengthRequired("A webhook needs a Content-Length or chunked encoding.")
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge(f"The body is larger than {limit} bytes.")
    return body


def _received(shared, event, body, delivery_id, note):
    try:
        records, fetch_ids = events.received_messages(event)
    except InvalidMessage as exc:
        if exc.code not in UNREADABLE:
            raise
        return _unreadable(shared, body, delivery_id, exc.code, note)
    note["messages"] = [record.id for record in records] + fetch_ids
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


def _unreadable(shared, body, delivery_id, reason, note):
    """A signed ``message.received`` whose message this service cannot find (a shape Metriport
    never documented): keep the body sealed for an operator, count it, and queue one immediate
    incremental run that stores the message from the list endpoint (debounced: while one is
    queued, a burst queues no other). 202, so Metriport does not mark the delivery failed."""
    store, settings = shared.store, shared.settings
    note["reason"] = reason
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


def _status(shared, event, note):
    message_id, status, as_of = events.status_update(event)
    note["messages"] = [message_id]
    outcome = shared.store.apply_status(message_id, status, as_of, via=Via.WEBHOOK)
    if outcome is None:
        _enqueue_fetches(shared, [message_id])
        return {**Result().counts(), "fetching": 1, "replay": False}, 202
    return {**Result(outcomes=(outcome,)).counts(), "fetching": 0, "replay": False}, 200


def _enqueue_fetches(shared, message_ids):
    """Queue the worker's fetch job for each id (ids only, never content), in one pipeline."""
    if not message_ids:
        return
    queue = shared.fetch_queue
    jobs = [Queue.prepare_data(FETCH_JOB, (message_id,)) for message_id in message_ids]
    with translate_errors("queue a message fetch"):
        queue.enqueue_many(jobs)


def _count(traffic, field, total, wait):
    try:
        traffic.count(field, total, wait=wait)
    except StoreUnavailable:
        pass


def init_app(app):
    """Serve /webhook in front of ``app``; refuse to build an app that could verify nothing."""
    shared = resources(app)
    if not shared.settings.webhook_keys:
        raise ConfigError(
            "METRIPORT_WEBHOOK_KEY is not set: the webhook cannot verify Metriport's signature "
            "(copy the key from the Metriport dashboard, Developers page)."
        )
    shared.traffic = Traffic(shared.settings, shared.connections.store, batch=shared.store.batch)
    shared.fetch_queue = Queue(shared.settings.queue_name, connection=shared.connections.queue)
    app.wsgi_app = Webhook(app.wsgi_app, shared)

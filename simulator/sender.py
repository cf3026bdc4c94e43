"""Metriport's webhook sender, with chaos: signed deliveries that can be dropped, duplicated,
shuffled or delayed, a ledger of every outcome, and the manual "retry failed" of Metriport.

Bodies are built as Metriport builds them (``{meta, ...payload}``: ``meta`` first, except ``ping``
where ``ping`` comes first; compact JSON; non-ASCII as is) and signed over those exact bytes with
``inbox.signing.sign``, at send time, with the sender's current key, so a retry after a key
rotation is signed with the new key like Metriport does. A dropped delivery is not sent and is
recorded as failed, which is what a receiver outage looks like from Metriport's side.
"""

import concurrent.futures
import dataclasses
import datetime
import json
import random
import string
import threading
import time
import uuid

import requests

from inbox import signing
from simulator.data import as_dto

USER_AGENT = "Metriport API"
#: Metriport's timeouts: data webhooks 5 s, ping 2 s
TIMEOUT = 5.0
PING_TIMEOUT = 2.0
#: the pause after each successful re-send of ``retry_failed`` (Metriport: random 0-200 ms)
RETRY_PAUSE_MAX = 0.2
SHAPES = ("communication", "dto", "mixed")
_NANOID = string.ascii_letters + string.digits + "_-"

PROCESSING = "processing"
SUCCESS = "success"
FAILURE = "failure"


@dataclasses.dataclass
class Delivery:
    """One webhook request as Metriport records it: created once, sent once or more."""

    seq: int
    message_id: str
    type: str
    body: bytes
    subject_id: str | None
    ping: str | None = None
    outcome: str = PROCESSING
    status_code: int | None = None
    detail: str | None = None
    attempts: int = 0
    dropped: bool = False


@dataclasses.dataclass
class Report:
    """What one ``deliver`` call did, in the counts the demo prints."""

    events: int = 0
    posts: int = 0
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0
    duplicated: int = 0


def compact(value):
    """JavaScript's ``JSON.stringify``: no whitespace, non-ASCII characters kept, key order kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _now_iso():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class WebhookSender:
    """Sends webhooks to ``url`` signed with ``key``; both may change between sends."""

    def __init__(self, url=None, key=None, seed=0, timeout=TIMEOUT, ping_timeout=PING_TIMEOUT):
        self.url = url
        self.key = key
        self.timeout = timeout
        self.ping_timeout = ping_timeout
        self.deliveries = []
        self.enabled = True
        self.status_detail = "OK"
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._retry_thread = None

    # -- building events -------------------------------------------------------------------

    def _create(self, kind, fields, subject_id=None, ping=None):
        """Record a new delivery whose body is ``meta`` then ``fields`` (ping: ``ping`` first)."""
        with self._lock:
            meta = {
                "messageId": str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                "when": _now_iso(),
                "type": kind,
            }
            body = {"ping": ping, "meta": meta} if kind == "ping" else {"meta": meta, **fields}
            delivery = Delivery(
                seq=len(self.deliveries),
                message_id=meta["messageId"],
                type=kind,
                body=compact(body),
                subject_id=subject_id,
                ping=ping,
            )
            self.deliveries.append(delivery)
            return delivery

    def message_received(self, resource, direction="inbound", shape="communication"):
        """A ``message.received`` delivery: ``payload.communication`` or the DTO as ``payload``."""
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}.")
        if shape == "mixed":
            with self._lock:
                shape = "dto" if self._rng.random() < 0.5 else "communication"
        payload = as_dto(resource, direction) if shape == "dto" else {"communication": resource}
        return self._create("message.received", {"payload": payload}, subject_id=resource["id"])

    def message_status(self, resource):
        """A ``message.status`` delivery for an outbound message in a terminal state."""
        payload = {"id": resource["id"]}
        reference = (resource.get("subject") or {}).get("reference", "")
        if reference.startswith("Patient/"):
            payload["patientId"] = reference[len("Patient/"):]
        payload["status"] = resource["status"]
        payload["sentAt"] = resource["sent"]
        payload["completedAt"] = resource["meta"]["lastUpdated"]
        if "statusReason" in resource:
            payload["reason"] = resource["statusReason"]["text"]
        return self._create("message.status", {"payload": payload}, subject_id=resource["id"])

    def ping(self):
        """A ``ping`` delivery with a fresh 21-character nanoid."""
        with self._lock:
            value = "".join(self._rng.choice(_NANOID) for _ in range(21))
        return self._create("ping", {}, ping=value)

    # -- sending -----------------------------------------------------------------------------

    def deliver(self, deliveries, drop=0.0, duplicate=0.0, shuffle=False, delay=0.0, concurrency=1):
        """Send ``deliveries`` with chaos; a ``Report``.

        ``drop``: fraction not sent (recorded as failed); ``duplicate``: fraction sent twice;
        ``shuffle``: send in random order; ``delay``: up to that many seconds before each send;
        ``concurrency``: parallel senders (more than 1 also reorders).
        """
        report = Report(events=len(deliveries))
        plan = []
        with self._lock:
            for delivery in deliveries:
                if self._rng.random() < drop:
                    delivery.dropped = True
                    self._finish(delivery, None, "Dropped by the simulator's chaos")
                    report.dropped += 1
                    continue
                plan.append(delivery)
                if self._rng.random() < duplicate:
                    plan.append(delivery)
                    report.duplicated += 1
            if shuffle:
                self._rng.shuffle(plan)
            pauses = [delay * self._rng.random() if delay else 0.0 for _ in plan]

        def run(step):
            delivery, pause = step
            if pause:
                time.sleep(pause)
            return self.send(delivery)

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency))
        try:
            results = list(pool.map(run, zip(plan, pauses)))
        finally:  # interrupted (the demo stopped by a signal): drop what has not started yet
            pool.shutdown(wait=True, cancel_futures=True)
        report.posts = len(results)
        report.succeeded = sum(results)
        report.failed = report.posts - report.succeeded
        return report

    def send(self, delivery):
        """POST one delivery now, signed with the current key; True on success (2xx, and the
        right ``pong`` for a ping). A failure never raises: it is recorded on the delivery."""
        with self._lock:
            url, key = self.url, self.key
            delivery.attempts += 1
        if not url or not key:
            self._finish(delivery, None, "Missing webhook URL or key")
            return False
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            signing.HEADER: signing.sign(key, delivery.body),
        }
        timeout = self.ping_timeout if delivery.type == "ping" else self.timeout
        try:
            response = self._session().post(
                url, data=delivery.body, headers=headers, timeout=timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            self._finish(delivery, None, type(exc).__name__)
            return False
        ok = 200 <= response.status_code < 300
        if ok and delivery.type == "ping":
            ok = _pong(response) == delivery.ping
            if not ok:
                self._finish(delivery, response.status_code, "Bad response from webhook call")
                return False
        self._finish(delivery, response.status_code, "OK" if ok else f"HTTP {response.status_code}")
        return ok

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _finish(self, delivery, status_code, detail):
        with self._lock:
            success = detail == "OK"
            delivery.outcome = SUCCESS if success else FAILURE
            delivery.status_code = status_code
            delivery.detail = detail
            self.enabled = success
            self.status_detail = detail

    # -- Metriport's settings endpoints ------------------------------------------------------

    def failed(self):
        """Deliveries whose last attempt failed, oldest first."""
        with self._lock:
            return [d for d in self.deliveries if d.outcome == FAILURE]

    def retry_failed(self):
        """Re-send every failed delivery once, oldest first, pausing 0-200 ms after each success
        (Metriport's ``POST /settings/webhook/retry``); the number that succeeded."""
        with self._lock:
            batch = self.failed()
            for delivery in batch:
                delivery.outcome = PROCESSING
        succeeded = 0
        for delivery in batch:
            if self.send(delivery):
                succeeded += 1
                with self._lock:
                    pause = RETRY_PAUSE_MAX * self._rng.random()
                time.sleep(pause)
        return succeeded

    def retry_failed_async(self):
        """Start ``retry_failed`` in the background (the endpoint answers 200 at once)."""
        with self._lock:
            if self._retry_thread is not None and self._retry_thread.is_alive():
                return
            self._retry_thread = threading.Thread(
                target=self.retry_failed, name="webhook-retry", daemon=True
            )
            self._retry_thread.start()

    def wait(self, timeout=30.0):
        """Wait for a background retry to finish (tests and the demo)."""
        thread = self._retry_thread
        if thread is not None:
            thread.join(timeout)

    def status(self):
        """The body of ``GET /settings/webhook``."""
        with self._lock:
            return {
                "webhookEnabled": self.enabled,
                "webhookStatusDetail": self.status_detail,
                "webhookRequestsProcessing": sum(d.outcome == PROCESSING for d in self.deliveries),
                "webhookRequestsFailed": sum(d.outcome == FAILURE for d in self.deliveries),
            }


def _pong(response):
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("pong") if isinstance(body, dict) else None

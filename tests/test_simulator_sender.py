"""The webhook sender against a real HTTP receiver on 127.0.0.1: signing, format, chaos, retry."""

import json
import threading

import pytest
import requests
from flask import Flask
from flask import request
from werkzeug.serving import make_server

from conftest import TEST_WEBHOOK_KEY
from conftest import fixture_bytes
from inbox import signing
from inbox.normalize import normalize
from simulator import Simulator
from simulator.sender import WebhookSender
from simulator.sender import compact


class Receiver:
    """A tiny webhook endpoint that records every request and answers ``status`` (pongs pings)."""

    def __init__(self):
        self.calls = []
        self.status = 200
        self.pong = None
        self.lock = threading.Lock()
        app = Flask(__name__)

        @app.post("/webhook")
        def webhook():
            body = request.get_data()
            with self.lock:
                self.calls.append((body, dict(request.headers)))
            parsed = json.loads(body)
            if "ping" in parsed:
                return {"pong": self.pong or parsed["ping"]}, self.status
            return "", self.status

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}/webhook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def bodies(self):
        return [json.loads(body) for body, _ in self.calls]


@pytest.fixture
def receiver():
    """A running recording receiver, stopped after the test."""
    running = Receiver()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


@pytest.fixture
def sim(receiver):
    """A simulator of 60 messages whose webhooks go to ``receiver`` signed with the test key."""
    with Simulator(seed=4, messages=60, webhook_url=receiver.url, webhook_key=TEST_WEBHOOK_KEY) as running:
        yield running


def test_deliveries_are_signed_over_the_exact_bytes(sim, receiver):
    """Every body carries a signature inbox.signing.verify accepts, and Metriport's headers."""
    report = sim.deliver_webhooks(shape="mixed", ping=True)
    assert report.succeeded == report.posts == len(receiver.calls) > 60 * 0.6
    for body, headers in receiver.calls:
        signing.verify([TEST_WEBHOOK_KEY], body, headers["X-Metriport-Signature"])
        assert headers["User-Agent"] == "Metriport API"
        assert headers["Content-Type"] == "application/json"


def test_bodies_match_the_fixture_format(sim, receiver):
    """Compact JSON, meta first (ping first for a ping), meta keys in Metriport's order, UTF-8 as is."""
    sim.deliver_webhooks(shape="mixed", ping=True)
    ping, *rest = receiver.calls
    assert list(json.loads(ping[0])) == ["ping", "meta"]
    assert list(json.loads(fixture_bytes("webhook-ping.json"))) == ["ping", "meta"]
    for body, _ in receiver.calls:
        parsed = json.loads(body)
        assert body == compact(parsed)
        assert list(parsed["meta"]) == ["messageId", "when", "type"]
    types = {json.loads(body)["meta"]["type"] for body, _ in rest}
    assert types == {"message.received", "message.status"}
    for body, _ in rest:
        parsed = json.loads(body)
        assert list(parsed) == ["meta", "payload"]
        payload = parsed["payload"]
        record = normalize(payload, "inbound" if parsed["meta"]["type"] == "message.received" else None)
        assert sim.mailbox.get(record.id) is not None


def test_compact_matches_the_signed_fixtures():
    """Re-serializing a fixture with ``compact`` gives its exact wire bytes, hence its signature."""
    signatures = json.loads(fixture_bytes("webhook-signatures.json"))["x-metriport-signature"]
    for name, signature in signatures.items():
        wire = fixture_bytes(name)
        assert compact(json.loads(wire)) == wire
        assert signing.sign(TEST_WEBHOOK_KEY, compact(json.loads(wire))) == signature


def test_dto_and_communication_shapes(sim, receiver):
    """shape=dto sends the SDK Message as payload; shape=communication wraps the resource."""
    inbound = sim.mailbox.ids("inbound")[:2]
    sim.deliver_webhooks(inbound[:1], shape="dto")
    sim.deliver_webhooks(inbound[1:], shape="communication")
    dto, wrapped = receiver.bodies()
    assert dto["payload"]["id"] == inbound[0] and dto["payload"]["direction"] == "inbound"
    assert dto["payload"]["subject"] == sim.mailbox.get(inbound[0])["topic"]["text"]
    assert wrapped["payload"] == {"communication": sim.mailbox.get(inbound[1])}


def test_drop_duplicate_and_shuffle(sim, receiver):
    """Dropped deliveries are not sent but recorded failed; duplicates arrive twice; order shuffles."""
    report = sim.deliver_webhooks(drop=0.2, duplicate=0.2, shuffle=True)
    sent_ids = [body["meta"]["messageId"] for body in receiver.bodies()]
    dropped = [d for d in sim.sender.deliveries if d.dropped]
    assert report.dropped == len(dropped) > 0 and report.duplicated > 0
    assert len(sent_ids) == report.events - report.dropped + report.duplicated
    assert len(sent_ids) - len(set(sent_ids)) == report.duplicated
    assert not {d.message_id for d in dropped} & set(sent_ids)
    assert all(d.outcome == "failure" for d in dropped)
    created_order = [d.message_id for d in sim.sender.deliveries if not d.dropped]
    assert list(dict.fromkeys(sent_ids)) != created_order
    assert sim.sender.status()["webhookRequestsFailed"] == report.dropped


def test_receiver_errors_are_failures_and_retry_resends_oldest_first_with_current_key(sim, receiver):
    """A 503 marks deliveries failed; retry re-sends them oldest first, same bytes, new key."""
    receiver.status = 503
    ids = sim.mailbox.ids("inbound")[:4]
    report = sim.deliver_webhooks(ids, shuffle=True)
    assert report.failed == 4 and sim.sender.status()["webhookEnabled"] is False
    first_bodies = {json.loads(body)["meta"]["messageId"]: body for body, _ in receiver.calls}
    receiver.status = 200
    receiver.calls.clear()
    sim.sender.key = "rotated-key-0123456789"
    assert sim.sender.retry_failed() == 4
    retried = [json.loads(body)["meta"]["messageId"] for body, _ in receiver.calls]
    assert retried == [d.message_id for d in sim.sender.deliveries]
    for body, headers in receiver.calls:
        assert body == first_bodies[json.loads(body)["meta"]["messageId"]]
        signing.verify(["rotated-key-0123456789"], body, headers["X-Metriport-Signature"])
    assert sim.sender.status() == {
        "webhookEnabled": True,
        "webhookStatusDetail": "OK",
        "webhookRequestsProcessing": 0,
        "webhookRequestsFailed": 0,
    }


def test_settings_webhook_endpoints(sim, receiver):
    """GET /settings/webhook reports failures; POST /settings/webhook/retry re-sends them."""
    sim.deliver_webhooks(sim.mailbox.ids("inbound")[:5], drop=1.0)
    headers = {"x-api-key": sim.api_key}
    status = requests.get(sim.url + "/settings/webhook", headers=headers, timeout=5).json()
    assert status["webhookRequestsFailed"] == 5 and status["webhookEnabled"] is False
    assert requests.post(sim.url + "/settings/webhook/retry", headers=headers, timeout=5).status_code == 200
    sim.sender.wait()
    assert len(receiver.calls) == 5
    status = requests.get(sim.url + "/settings/webhook", headers=headers, timeout=5).json()
    assert status["webhookRequestsFailed"] == 0 and status["webhookEnabled"] is True
    assert requests.get(sim.url + "/settings/webhook", timeout=5).status_code == 403


def test_unreachable_url_is_a_recorded_failure():
    """A connection error is recorded as a failure, never raised."""
    sender = WebhookSender(url="http://127.0.0.1:9/webhook", key=TEST_WEBHOOK_KEY, timeout=1)
    report = sender.deliver([sender.ping()])
    assert report.failed == 1 and sender.deliveries[0].outcome == "failure"
    assert sender.deliveries[0].detail == "ConnectionError"


def test_wrong_pong_fails_the_ping(receiver):
    """A 200 to a ping without the same pong value is a failed ping, as Metriport judges it."""
    receiver.pong = "not-the-value"
    sender = WebhookSender(url=receiver.url, key=TEST_WEBHOOK_KEY)
    assert sender.deliver([sender.ping()]).failed == 1
    assert sender.status()["webhookStatusDetail"] == "Bad response from webhook call"


def test_message_status_payload_matches_the_sdk_schema(sim, receiver):
    """message.status carries id, patientId, a terminal status, sentAt, completedAt (and reason)."""
    outbound = [i for i in sim.mailbox.ids("outbound") if sim.mailbox.get(i)["status"] == "failed"]
    sim.deliver_webhooks(outbound[:1])
    (body,) = receiver.bodies()
    assert body["meta"]["type"] == "message.status"
    assert list(body["payload"]) == ["id", "patientId", "status", "sentAt", "completedAt", "reason"]
    assert body["payload"]["status"] == "failed"

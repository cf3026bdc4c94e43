"""POST /webhook through the Flask test client against a real Redis."""

import json
import logging
import uuid

import hypothesis
import hypothesis.strategies
import pytest
from rq import Queue

from cli.dev.embedded import free_port
from conftest import SIGNATURES
from conftest import TEST_WEBHOOK_KEY
from conftest import fixture_bytes
from conftest import fixture_json
from inbox.connection import Connections
from inbox.crypto import Vault
from inbox.errors import ConfigError
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.signing import HEADER
from inbox.store import Store
from inbox.store import Via
from receiver import create_app
from inbox import logs
from receiver import requestlog
from receiver.webhook import FETCH_JOB
from webhook_helpers import compact
from webhook_helpers import event_body
from webhook_helpers import headers_for
from webhook_helpers import message

RECEIVED = "webhook-message-received.json"
RECEIVED_ID = "019a7f3e-5c21-7b44-9d0e-3f6a2b8c1d47"


def post(client, body, key=TEST_WEBHOOK_KEY, headers=None):
    return client.post("/webhook", data=body, headers={**headers_for(body, key), **(headers or {})})


def post_fixture(client, name, headers=None):
    """Post a shared fixture with the signature Metriport computed for it."""
    signature = SIGNATURES["x-metriport-signature"][name]
    return client.post("/webhook", data=fixture_bytes(name), headers={HEADER: signature, **(headers or {})})


def feed_length(redis_client, settings):
    return redis_client.xlen(RedisKeys(settings.namespace).feed)


@pytest.fixture
def fetch_queue(redis_client, settings):
    """The worker's queue; jobs this test enqueued are deleted afterwards."""
    queue = Queue(settings.queue_name, connection=redis_client)
    before = set(queue.job_ids)
    yield queue
    for job_id in set(queue.job_ids) - before:
        queue.remove(job_id)
        redis_client.delete(f"rq:job:{job_id}")


def fetch_jobs_for(queue, message_id):
    return [job for job in queue.jobs if job.func_name == FETCH_JOB and job.args == (message_id,)]


@pytest.mark.parametrize(
    "keys", [(TEST_WEBHOOK_KEY, "new-key-after-rotation"), ("old-key", TEST_WEBHOOK_KEY)]
)
def test_fixture_verifies_with_either_of_two_keys(settings, keys):
    """During a key cut-over, a delivery signed with either configured key is accepted."""
    client = create_app(settings.replace(webhook_keys=keys)).test_client()
    response = post_fixture(client, RECEIVED)
    assert response.status_code == 200
    assert response.get_json()["created"] == 1


def test_pretty_printed_body_with_original_signature_is_refused(client, store):
    """Re-serialized JSON no longer matches Metriport's signature: 401, nothing stored."""
    pretty = json.dumps(fixture_json(RECEIVED), indent=2).encode()
    signature = SIGNATURES["x-metriport-signature"][RECEIVED]
    response = client.post("/webhook", data=pretty, headers={HEADER: signature})
    assert response.status_code == 401
    assert response.get_json()["error"] == "signature_mismatch"
    assert store.get(RECEIVED_ID) is None


@pytest.mark.parametrize(
    "signature, code",
    [
        (None, "signature_missing"),
        ("not-hex", "signature_malformed"),
        ("ab" * 31, "signature_malformed"),
        ("ab" * 32, "signature_mismatch"),
    ],
)
def test_bad_signatures_are_401_with_reason_and_counted(client, store, signature, code):
    """Each signature failure answers its own code and is counted as rejected:<code>."""
    headers = {HEADER: signature} if signature else {}
    response = client.post("/webhook", data=fixture_bytes(RECEIVED), headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": code, "detail": response.get_json()["detail"]}
    assert store.stats()[f"rejected:{code}"] == 1


def test_wrong_key_is_a_mismatch(signed_post):
    """A body signed with a key we do not hold is refused."""
    response = signed_post(fixture_bytes(RECEIVED), key="someone-elses-key")
    assert response.get_json()["error"] == "signature_mismatch"


def test_ping_echoes_pong_without_redis(settings):
    """The ping handshake answers even with Redis unreachable: it never touches the store."""
    dead = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = post_fixture(create_app(dead).test_client(), "webhook-ping.json")
    assert response.status_code == 200
    assert response.get_json() == fixture_json("ping-expected-response.json")


def _communication():
    return fixture_json("list-messages-page-1.json")["messages"][0]


def _dto():
    return fixture_json("list-messages-page-1.sdk-dto-variant.json")["messages"][1]


@pytest.mark.parametrize(
    "fields, expected_ids",
    [
        ({"payload": _dto()}, [_dto()["id"]]),
        ({"payload": _communication()}, [_communication()["id"]]),
        ({"payload": {"communication": _communication()}}, [_communication()["id"]]),
        ({"messages": [_communication(), _dto()]}, [_communication()["id"], _dto()["id"]]),
        ({"payload": {"messages": [{"communication": _communication()}]}}, [_communication()["id"]]),
    ],
    ids=["payload-dto", "payload-communication", "payload.communication", "messages",
         "payload.messages"],
)
def test_each_message_shape_is_ingested(store, fields, expected_ids, signed_post):
    """Every plausible message.received shape ends in the store, inbound, via webhook."""
    response = signed_post(event_body("message.received", **fields))
    assert response.status_code == 200
    assert response.get_json()["created"] == len(expected_ids)
    for message_id in expected_ids:
        stored = store.get(message_id)
        assert (stored.direction, stored.first_via) == ("inbound", "webhook")


@pytest.mark.parametrize(
    "shared_fixture", [RECEIVED, "webhook-message-received.alt-communication.json"]
)
def test_shared_fixtures_are_ingested(client, store, shared_fixture):
    """Both fixture shapes, with their original signatures, are stored as received."""
    response = post_fixture(client, shared_fixture)
    assert response.status_code == 200
    payload = fixture_json(shared_fixture)["payload"]
    assert store.get(RECEIVED_ID).resource == payload.get("communication", payload)


@pytest.mark.parametrize("field", ["id", "messageId"])
def test_id_only_body_enqueues_a_fetch(store, fetch_queue, field, signed_post):
    """A body naming a message without its content queues the worker's fetch job: 202."""
    message_id = str(uuid.uuid4())
    response = signed_post(event_body("message.received", payload={field: message_id}))
    assert response.status_code == 202
    assert response.get_json()["fetching"] == 1
    assert len(fetch_jobs_for(fetch_queue, message_id)) == 1
    assert store.get(message_id) is None


def test_replayed_delivery_is_a_no_op(client, redis_client, settings, store):
    """The same delivery id with the same body again answers 200 and does no store work."""
    first = post_fixture(client, RECEIVED)
    again = post_fixture(client, RECEIVED)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.get_json()["replay"] is True
    assert feed_length(redis_client, settings) == 1
    assert store.get(RECEIVED_ID).version == 1


def test_reused_delivery_id_with_new_body_is_processed(store, signed_post):
    """Metriport's sandbox reuses delivery ids: a different body under one id is not a replay."""
    delivery = str(uuid.uuid4())
    signed_post(event_body("message.received", delivery=delivery, payload=message("m-1")))
    response = signed_post(event_body("message.received", delivery=delivery, payload=message("m-2")))
    assert response.get_json()["created"] == 1
    assert store.get("m-2") is not None


def test_five_mib_body_with_content_length_is_413(store, signed_post):
    """A body past the limit is refused before it is read or verified."""
    body = event_body("message.received", payload=message("big", body="x" * (5 * 1024 * 1024)))
    response = signed_post(body)
    assert response.status_code == 413
    assert response.get_json()["error"] == "body_too_large"
    assert store.get("big") is None


def test_hundred_thousand_levels_of_nesting_is_400(store, signed_post):
    """JSON nested 100,000 deep is refused as json_too_deep, never a 500."""
    body = b"[" * 100_000 + b"]" * 100_000
    response = signed_post(body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "json_too_deep"
    assert store.stats()["rejected:json_too_deep"] == 1


def _nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "json_invalid"),
        (b"\xff\xfe{}", "json_invalid"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (compact({"meta": {"messageId": "d-1"}}), "missing_type"),
        (event_body("message.received", payload=message(extra=_nested(80))), "json_too_deep"),
        (event_body("message.received", messages=[message()] * 501), "too_many_messages"),
        (event_body("message.status", payload={"id": "m-1"}), "invalid_status"),
        (event_body("message.status"), "no_message"),
    ],
)
def test_signed_but_unusable_bodies_are_400_and_store_nothing(
    client, redis_client, settings, store, body, code
):
    """Each unusable body answers 400 with its reason code; not one record or feed entry."""
    response = post(client, body)
    assert response.status_code == 400
    assert response.get_json()["error"] == code
    assert feed_length(redis_client, settings) == 0
    assert store.count(store.index_key()) == 0
    assert store.stats()[f"rejected:{code}"] == 1


UNREADABLE = [
    (event_body("message.received"), "no_message"),
    (event_body("message.received", messages=[]), "no_message"),
    (event_body("message.received", payload={"subject": "x", "body": "y"}), "missing_id"),
    (event_body("message.received", payload=message("bad id with spaces")), "invalid_id"),
    (event_body("message.received", payload=42), "not_an_object"),
    (event_body("message.received", payload="not an id!"), "invalid_id"),
    (event_body("message.received", messages=[message("good-1"), {"subject": "no id"}]),
     "missing_id"),
]


@pytest.mark.parametrize("body, code", UNREADABLE)
def test_signed_message_received_without_a_readable_message_is_kept_and_reconciled(
    client, redis_client, settings, store, body, code
):
    """A signed message.received whose message cannot be read answers 202 (Metriport would mark
    a 4xx failed), stores no message, counts it by reason, keeps the raw body with a TTL and
    queues one immediate incremental reconcile run."""
    response = post(client, body)
    assert response.status_code == 202
    answer = response.get_json()
    assert (answer["unreadable"], answer["reconcile"]) == (code, "queued")
    assert feed_length(redis_client, settings) == 0
    assert store.count(store.index_key()) == 0
    assert store.stats()[f"unreadable:{code}"] == 1
    assert "rejected:" + code not in store.stats()
    [(kept, reason, _, size, ttl)] = store.quarantined()
    assert (kept, reason, size) == (answer["kept"], code, len(body))
    assert 0 < ttl <= 7 * 24 * 3600
    assert store.quarantined_body(kept) == body
    queue = Queue(settings.queue_name, connection=Connections(settings).queue)
    [job] = queue.get_jobs()
    assert (job.func_name, job.kwargs) == ("worker.jobs.reconcile",
                                           {"mode": "incremental", "handoff": True})


def test_a_burst_of_unreadable_deliveries_queues_one_run(client, settings, store):
    """Ten unreadable deliveries in a row: ten bodies kept, one reconcile run queued."""
    answers = [post(client, event_body("message.received", payload={"subject": "s"})).get_json()
               for _ in range(10)]
    assert [a["reconcile"] for a in answers] == ["queued"] + ["pending"] * 9
    assert len(store.quarantined()) == 10
    assert Queue(settings.queue_name, connection=Connections(settings).queue).count == 1


def test_unreadable_body_is_sealed_when_keys_are_set(settings, redis_client):
    """With a key ring, the kept body is encrypted in Redis and opens for the operator."""
    ring = settings.replace(encryption_keys=(("k1", b"\x01" * 32),))
    client = create_app(ring).test_client()
    body = event_body("message.received", payload={"subject": "CANARY-subject", "body": "x"})
    answer = post(client, body).get_json()
    kept = Store(ring).redis_keys.unreadable_webhook(answer["kept"])
    raw = redis_client.hget(kept, "r")
    assert b"CANARY" not in raw and Vault.kid_of(raw) == "k1"
    assert Store(ring).quarantined_body(answer["kept"]) == body


def test_message_status_updates_a_stored_message(client, store):
    """message.status sets the delivery result of a message already stored."""
    outbound = message("019a7f55-0b3c-7d19-a2e8-4c6f1b9d0e27", direction="outbound",
                       status="processing", updatedAt="2026-09-14T16:01:03.511Z")
    store.upsert([normalize(outbound)], Via.RECONCILE)
    response = post_fixture(client, "webhook-message-status.json")
    assert response.status_code == 200
    assert response.get_json()["updated"] == 1
    assert store.get(outbound["id"]).status == "failed"


def test_message_status_of_unknown_message_enqueues_a_fetch(client, fetch_queue):
    """A status for a message not stored yet queues its fetch instead of failing."""
    response = post_fixture(client, "webhook-message-status.json")
    assert response.status_code == 202
    assert len(fetch_jobs_for(fetch_queue, "019a7f55-0b3c-7d19-a2e8-4c6f1b9d0e27")) == 1


@pytest.mark.parametrize("kind", ["medical.consolidated-data", "patient.admit", "some.future-type"])
def test_other_event_types_are_acknowledged_and_counted(
    client, redis_client, settings, store, kind
):
    """Events of other types sharing the URL get 200 and a counter, nothing else."""
    response = post(client, event_body(kind, patients=[{"patientId": "p-1"}]))
    assert response.status_code == 200
    assert store.stats()[f"event:{kind}"] == 1
    assert feed_length(redis_client, settings) == 0


def test_redis_down_is_503_and_never_200(settings):
    """With Redis unreachable a message is answered 503 store_unavailable (Metriport keeps it)."""
    dead = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = post_fixture(create_app(dead).test_client(), RECEIVED)
    assert response.status_code == 503
    assert response.get_json()["error"] == "store_unavailable"


def test_app_refuses_to_start_without_a_webhook_key(settings):
    """Without METRIPORT_WEBHOOK_KEY the app is never built: ConfigError."""
    with pytest.raises(ConfigError, match="METRIPORT_WEBHOOK_KEY"):
        create_app(settings.replace(webhook_keys=()))


def test_get_on_webhook_is_json_405(client):
    """Only POST is served on /webhook, and the refusal is JSON that says what is allowed."""
    response = client.get("/webhook")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST"


@pytest.fixture
def log_lines():
    """Every request log line written during the test, parsed."""
    lines = []
    handler = logging.Handler()
    handler.addFilter(logs.RequestIdFilter())
    handler.setFormatter(logs.formatter())
    handler.emit = lambda record: lines.append(json.loads(handler.format(record)))
    requestlog.LOGGER.addHandler(handler)
    yield lines
    requestlog.LOGGER.removeHandler(handler)


def test_one_structured_log_line_per_request(client, log_lines, signed_post):
    """Each request logs one JSON line with route, status, reason, delivery, ids, size, time."""
    post_fixture(client, RECEIVED)
    signed_post(b"[1]")
    accepted, refused = log_lines
    assert accepted["route"] == "/webhook" and accepted["status"] == 200
    assert accepted["delivery"] == fixture_json(RECEIVED)["meta"]["messageId"]
    assert accepted["messages"] == [RECEIVED_ID]
    assert accepted["bytes"] == len(fixture_bytes(RECEIVED)) and accepted["ms"] >= 0
    assert (refused["status"], refused["reason"]) == (400, "not_an_object")
    assert {"time", "level", "logger", "request_id"} <= accepted.keys()
    assert accepted["request_id"] != refused["request_id"]


def test_request_id_is_taken_from_the_header_or_made_and_echoed(client, log_lines):
    """X-Request-ID is reused when sane, else generated; either way echoed and logged."""
    given = client.get("/healthz", headers={"X-Request-ID": "edge-42"})
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert given.headers["X-Request-ID"] == "edge-42"
    assert made.headers["X-Request-ID"] not in ("", "bad id with spaces")
    assert [line["request_id"] for line in log_lines] == ["edge-42", made.headers["X-Request-ID"]]


def test_webhook_request_id_is_taken_or_made_echoed_and_logged(client, log_lines):
    """The webhook (served below Flask) handles X-Request-ID like every other route."""
    given = post_fixture(client, RECEIVED, headers={"X-Request-ID": "edge-43"})
    made = client.post("/webhook", data=b"{}", headers={"X-Request-ID": "bad id with spaces"})
    assert (given.status_code, made.status_code) == (200, 401)
    assert given.headers["X-Request-ID"] == "edge-43"
    assert made.headers["X-Request-ID"] not in ("", "bad id with spaces")
    assert [line["request_id"] for line in log_lines] == ["edge-43", made.headers["X-Request-ID"]]
    assert [line["reason"] for line in log_lines] == [None, "signature_missing"]


def test_unexpected_error_is_json_500_without_its_message(settings, log_lines, caplog):
    """A bug answers 500 internal_error; the exception's text (it may quote data) is not logged."""
    app = create_app(settings)

    @app.get("/boom")
    def boom():
        raise ValueError("CANARY-subject-line")

    response = app.test_client().get("/boom")
    assert (response.status_code, response.get_json()["error"]) == (500, "internal_error")
    assert log_lines[0]["reason"] == "internal_error"
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(unexpected) == 1 and unexpected[0].request_id == log_lines[0]["request_id"]
    assert "ValueError" in caplog.text and "CANARY" not in caplog.text
    assert "CANARY" not in response.get_data(as_text=True)


json_values = hypothesis.strategies.recursive(
    hypothesis.strategies.none() | hypothesis.strategies.booleans()
    | hypothesis.strategies.integers() | hypothesis.strategies.text(max_size=20),
    lambda inner: hypothesis.strategies.lists(inner, max_size=4)
    | hypothesis.strategies.dictionaries(
        hypothesis.strategies.sampled_from(["id", "messageId", "communication", "messages",
                                            "status", "subject", "direction", "x"]),
        inner, max_size=4),
    max_leaves=12,
)


@hypothesis.settings(max_examples=150, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(
    kind=hypothesis.strategies.sampled_from(["message.received", "message.status", "other"]),
    payload=json_values,
)
def test_any_signed_payload_gets_a_deliberate_answer(kind, payload, signed_post):
    """Whatever JSON a signed body carries, the answer is 2xx or a coded 400, never a 500."""
    response = signed_post(event_body(kind, payload=payload))
    assert response.status_code in (200, 202, 400)
    assert response.status_code != 400 or response.get_json()["error"]

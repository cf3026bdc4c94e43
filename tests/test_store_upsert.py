"""The upsert on a real Redis: every outcome for every accepted shape, the rules and the ledger."""

import copy
import os

import pytest
import redis

from conftest import fixture_json
from conftest import raw_client
from conftest import raw_keys
from inbox.crypto import Vault
from inbox.errors import InvalidMessage
from inbox.normalize import normalize
from inbox.record import Meta
from inbox.record import unpack_routing
from inbox.store import Delivery
from inbox.store import LEDGER_TTL_SECONDS
from inbox.store import Outcome
from inbox.store import Store

FEED_FIELDS = {"event", "id", "via", "version", "direction", "patient", "status"}
#: words of subject lines, bodies and addresses in the fixtures: none may reach the feed
CONTENT = ("Discharge", "discharged", "follow-up", "Referral", "referral", "hospitalist",
           "intake@", "Northside", "Lab results", "CMP", "example.org")
SHAPES = ("communication", "wrapped", "dto")
T0 = "2026-09-14T15:41:55.902Z"
LATER = "2026-09-14T16:00:00.000Z"
EARLIER = "2026-09-14T15:00:00.000Z"


def message(shape, when=T0, status="completed", patient=None):
    """The fixture message in ``shape``, as of ``when``, with ``status`` (and another patient)."""
    if shape == "dto":
        dto = copy.deepcopy(fixture_json("webhook-message-received.json")["payload"])
        dto.update(updatedAt=when, status=status)
        if patient:
            dto["patientId"] = patient
        return dto
    resource = copy.deepcopy(fixture_json("list-messages-page-1.json")["messages"][0])
    resource.update(received=when, status=status)
    if patient:
        resource["subject"] = {"reference": f"Patient/{patient}"}
    return {"communication": resource} if shape == "wrapped" else resource


def put(store, msg, via="reconcile", delivery=None):
    """Normalize (inbound) and upsert one message; its outcome."""
    result = store.upsert([normalize(msg, direction="inbound")], via, delivery=delivery)
    return result.outcomes[0] if result.outcomes else None


def feed(store):
    """The feed entries as ``{field: value}`` dicts of str."""
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in raw_client(store).xrange(raw_keys(store).feed)
    ]


def namespace_keys(store):
    return sorted(raw_client(store).scan_iter(match=raw_keys(store).pattern(), count=1000))


@pytest.mark.parametrize("shape", SHAPES)
def test_created_then_duplicate(store, shape):
    """A new message is created once (one feed entry); the same content again is a duplicate."""
    msg = message(shape)
    assert put(store, msg) == Outcome.CREATED
    assert put(store, copy.deepcopy(msg), via="webhook") == Outcome.DUPLICATE
    entries = feed(store)
    assert [e["event"] for e in entries] == ["created"]
    stored = store.get(msg.get("communication", msg)["id"])
    assert stored.resource == msg.get("communication", msg)
    assert (stored.version, stored.first_via, stored.via) == (1, "reconcile", "reconcile")
    assert store.stats()["duplicate"] == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_newer_version_updates(store, shape):
    """A later as-of rewrites the record, bumps its version and appends one updated entry."""
    put(store, message(shape))
    newer = message(shape, when=LATER)
    assert put(store, newer, via="fetch") == Outcome.UPDATED
    stored = store.get(newer.get("communication", newer)["id"])
    assert stored.resource == newer.get("communication", newer)
    assert (stored.version, stored.via, stored.first_via) == (2, "fetch", "reconcile")
    assert [(e["event"], e["version"]) for e in feed(store)] == [("created", "1"), ("updated", "2")]


@pytest.mark.parametrize("shape", SHAPES)
def test_older_version_is_stale(store, shape):
    """An earlier as-of with different content is counted stale and changes nothing."""
    put(store, message(shape, when=LATER))
    assert put(store, message(shape, when=EARLIER)) == Outcome.STALE
    msg_id = normalize(message(shape)).id
    assert store.get(msg_id).resource == message(shape, when=LATER).get(
        "communication", message(shape, when=LATER))
    assert len(feed(store)) == 1
    assert store.stats()["stale:reconcile"] == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_rejected_message_in_a_batch_writes_nothing(store, shape):
    """Normalizing a whole page before the one script call: one bad message means no write at all."""
    page = [message(shape), {"communication": {"status": "completed"}}, {"id": "fine-id"}]
    with pytest.raises(InvalidMessage) as caught:
        records = [normalize(m, direction="inbound") for m in page]
        store.upsert(records, "reconcile")
    assert caught.value.code == "missing_id"
    assert namespace_keys(store) == []


def test_script_checks_the_whole_batch_before_writing(store):
    """A record whose as-of is unusable fails the call before its valid neighbours are written."""
    good = normalize({"id": "m-good", "sent": T0})
    bad = normalize({"id": "m-bad"})
    object.__setattr__(bad, "as_of", "soon")
    with pytest.raises(redis.ResponseError):
        store.upsert([good, bad], "reconcile")
    assert namespace_keys(store) == []


def test_list_pages_and_dto_variant_end_in_one_record_each(store):
    """Both list pages, then the SDK-DTO variant of page 1, give three records and three creations."""
    for name in ("list-messages-page-1.json", "list-messages-page-2.json"):
        records = [normalize(m, direction="inbound") for m in fixture_json(name)["messages"]]
        assert set(store.upsert(records, "reconcile").outcomes) == {Outcome.CREATED}
    dto_page = fixture_json("list-messages-page-1.sdk-dto-variant.json")["messages"]
    outcomes = store.upsert([normalize(m) for m in dto_page], "webhook").outcomes
    assert Outcome.CREATED not in outcomes
    assert store.count(store.index_key()) == 3
    assert store.count(store.index_key(direction="inbound")) == 3
    assert [e["event"] for e in feed(store)].count("created") == 3


def test_feed_entries_carry_ids_and_routing_only(store):
    """Every feed field is one of the routing fields, and no value holds message content."""
    for name in ("list-messages-page-1.json", "list-messages-page-2.json"):
        store.upsert([normalize(m, direction="inbound") for m in fixture_json(name)["messages"]],
                     "reconcile")
    put(store, message("dto", when=LATER), via="webhook")
    store.apply_status(normalize(message("dto")).id, "entered-in-error", 10**13)
    entries = feed(store)
    assert len(entries) == 5
    for entry in entries:
        assert set(entry) == FEED_FIELDS
        for value in entry.values():
            assert not any(word in value for word in CONTENT), value


def test_terminal_status_never_goes_back(store):
    """A completed message stays completed when a later in-progress copy arrives."""
    put(store, message("communication", when=EARLIER, status="completed"))
    later_in_progress = message("communication", when=LATER, status="in-progress")
    assert put(store, later_in_progress) == Outcome.STALE
    assert store.get(normalize(later_in_progress).id).status == "completed"


def test_terminal_status_wins_over_a_later_non_terminal_one(store):
    """An older terminal copy replaces a newer non-terminal one: delivery state only moves forward."""
    put(store, message("dto", when=LATER, status="processing"))
    assert put(store, message("dto", when=EARLIER, status="failed")) == Outcome.UPDATED
    assert store.get(normalize(message("dto")).id).status == "failed"


def test_status_webhook_cannot_regress_a_terminal_status(store):
    """``apply_status`` with a non-terminal status on a completed record is stale."""
    put(store, message("dto"))
    msg_id = normalize(message("dto")).id
    assert store.apply_status(msg_id, "processing", 10**13) == Outcome.STALE
    assert store.get(msg_id).status == "completed"


@pytest.mark.parametrize("first, second, expected", [
    ("webhook", "reconcile", Outcome.UPDATED),
    ("webhook", "fetch", Outcome.UPDATED),
    ("reconcile", "webhook", Outcome.STALE),
    ("fetch", "webhook", Outcome.STALE),
    ("webhook", "webhook", Outcome.STALE),
    ("reconcile", "fetch", Outcome.UPDATED),
])
def test_as_of_tie_goes_to_the_api_read(store, first, second, expected):
    """On an as-of tie an API read (reconcile/fetch) replaces the record; a webhook copy does not."""
    put(store, message("dto"), via=first)
    assert put(store, message("communication"), via=second) == expected
    stored = store.get(normalize(message("dto")).id)
    winner = "communication" if expected == Outcome.UPDATED else "dto"
    assert stored.resource == message(winner)


def test_webhook_dto_then_reconciled_communication_keeps_the_communication(store):
    """The DTO from a webhook gives way to the list's Communication of the same message (tie)."""
    webhook = fixture_json("webhook-message-received.json")["payload"]
    listed = fixture_json("list-messages-page-1.json")["messages"][0]
    assert put(store, webhook, via="webhook") == Outcome.CREATED
    assert put(store, listed, via="reconcile") == Outcome.UPDATED
    assert put(store, webhook, via="webhook") == Outcome.STALE
    assert store.get(listed["id"]).resource == listed


def test_patient_move_leaves_the_old_patient_index(store):
    """A message re-linked to another patient is listed under the new patient only."""
    put(store, message("dto", patient="p-old"))
    msg_id = normalize(message("dto")).id
    assert put(store, message("dto", when=LATER, patient="p-new")) == Outcome.UPDATED
    assert store.ids(store.index_key(patient="p-old")) == []
    assert store.ids(store.index_key(patient="p-new")) == [msg_id]
    assert store.get(msg_id).patient == "p-new"
    assert feed(store)[-1]["patient"] == "p-new"


def test_message_unlinked_from_its_patient_leaves_the_index(store):
    """A newer copy without any patient removes the id from the old patient's index."""
    resource = message("communication", patient="p-old")
    put(store, resource)
    unlinked = message("communication", when=LATER)
    del unlinked["subject"]
    assert put(store, unlinked) == Outcome.UPDATED
    assert store.count(store.index_key(patient="p-old")) == 0
    assert store.get(unlinked["id"]).patient is None
    assert store.count(store.index_key()) == 1


def test_replayed_delivery_does_no_store_work(store):
    """The same delivery id with the same body hash is answered replay, without touching records."""
    delivery = Delivery("6f1c2e9a-4b7d-4c3e-9a85-2d7e1b0f4c36", "hash-1")
    assert put(store, message("dto"), via="webhook", delivery=delivery) == Outcome.CREATED
    # a newer body under the same hash would be an update if it were processed: it is not
    result = store.upsert([normalize(message("dto", when=LATER))], "webhook", delivery=delivery)
    assert result.replay and result.outcomes == ()
    assert store.get(normalize(message("dto")).id).version == 1
    assert len(feed(store)) == 1
    assert store.stats()["replay"] == 1


def test_reused_delivery_id_with_another_body_is_processed(store):
    """Metriport's sandbox reuses delivery ids: a different body under the same id is processed."""
    delivery_id = "6f1c2e9a-4b7d-4c3e-9a85-2d7e1b0f4c36"
    put(store, message("dto"), via="webhook", delivery=Delivery(delivery_id, "hash-1"))
    other = {"id": "019a7f3e-0000-7000-8000-000000000001", "direction": "inbound",
             "status": "completed", "updatedAt": T0}
    assert put(store, other, via="webhook", delivery=Delivery(delivery_id, "hash-2")) == (
        Outcome.CREATED)
    assert raw_client(store).get(raw_keys(store).delivery(delivery_id)) == b"hash-2"
    assert store.count(store.index_key()) == 2


def test_delivery_ledger_expires_after_thirty_days(store):
    """The ledger entry of a delivery carries a 30-day TTL."""
    delivery = Delivery("d-1", "hash-1")
    put(store, message("dto"), via="webhook", delivery=delivery)
    ttl = raw_client(store).ttl(raw_keys(store).delivery("d-1"))
    assert LEDGER_TTL_SECONDS == 30 * 24 * 3600
    assert LEDGER_TTL_SECONDS - 60 < ttl <= LEDGER_TTL_SECONDS


def test_batch_with_repeated_id_creates_once(store):
    """Two versions of one id in the same page: created, then updated or stale in page order."""
    records = [normalize(message("dto")), normalize(message("dto", when=LATER)),
               normalize(message("dto", when=EARLIER))]
    outcomes = store.upsert(records, "reconcile").outcomes
    assert outcomes == (Outcome.CREATED, Outcome.UPDATED, Outcome.STALE)
    assert store.stats() == {
        "created": 1, "created:reconcile": 1, "updated": 1, "updated:reconcile": 1,
        "stale": 1, "stale:reconcile": 1,
    }


def test_encrypted_records_open_and_hold_no_plaintext(settings):
    """With a key ring the stored blob is sealed, yet get() returns the resource as received."""
    store = Store(settings.replace(encryption_keys=(("k1", os.urandom(32)),)))
    resource = message("communication")
    assert put(store, resource) == Outcome.CREATED
    assert put(store, copy.deepcopy(resource)) == Outcome.DUPLICATE
    raw = raw_client(store).hget(raw_keys(store).msg(resource["id"]), "r")
    assert b"discharged" not in raw and Vault.kid_of(raw) == "k1"
    assert store.get(resource["id"]).resource == resource


def test_get_many_answers_none_for_unknown_ids(store):
    """Unknown ids read as None, in the order asked."""
    put(store, message("dto"))
    msg_id = normalize(message("dto")).id
    found = store.get_many(["nope", msg_id])
    assert found[0] is None and found[1].id == msg_id
    assert store.get("nope") is None


def test_feed_is_trimmed_near_its_cap(settings):
    """With a small FEED_MAXLEN the stream stays near that length instead of growing."""
    store = Store(settings.replace(feed_maxlen=100))
    for start in range(0, 1000, 250):
        store.upsert([normalize({"id": f"m-{i:04d}", "sent": T0}) for i in range(start, start + 250)],
                     "reconcile")
    assert store.count(store.index_key()) == 1000
    assert raw_client(store).xlen(raw_keys(store).feed) < 400


def test_record_is_four_hash_fields(store):
    """A record is r (blob), h (digest), m (packed routing fields) and x (history): small."""
    resource = message("communication", patient="p-1")
    put(store, resource)
    row = raw_client(store).hgetall(raw_keys(store).msg(resource["id"]))
    assert set(row) == {b"r", b"h", b"m", b"x"}
    assert row[b"h"] == b"3" + Vault(store.settings.encryption_keys).digests(normalize(resource).meaning, "m1")[0].encode()
    version, direction, patient, *_, status = row[b"m"].decode().split("|")
    assert (version, direction, patient, status) == ("1", "inbound", "p-1", "completed")


def test_free_text_status_is_dropped_and_the_record_stays_intact(store):
    """A status that is not a code never reaches the record or the feed; other fields survive."""
    put(store, {"id": "m-1", "status": "odd|Jane Doe", "updatedAt": T0, "patientId": "p-1"})
    stored = store.get("m-1")
    assert (stored.status, stored.patient, stored.direction) == (None, "p-1", "inbound")
    assert feed(store)[0]["status"] == ""
    assert store.apply_status("m-1", "completed", 10**13) == Outcome.UPDATED
    assert (store.get("m-1").status, store.get("m-1").patient) == ("completed", "p-1")


def test_status_webhook_with_free_text_status_is_rejected(store):
    """``apply_status`` refuses a status that is not a code, before touching Redis."""
    put(store, message("dto", status="processing"))
    msg_id = normalize(message("dto")).id
    with pytest.raises(InvalidMessage) as caught:
        store.apply_status(msg_id, "Recipient Jane Doe refused", 10**13)
    assert caught.value.code == "invalid_status"
    assert store.get(msg_id).status == "processing"


def test_late_unindex_spares_a_record_that_moved_back(store):
    """If a record moved back to its old patient before the unindex ran, its entry stays."""
    put(store, message("dto", patient="p-a"))
    msg_id = normalize(message("dto")).id
    # as if a racing process had reported a move away from p-a after this record returned to it
    store._unindex_moved([msg_id.encode(), b"p-a"])
    assert store.ids(store.index_key(patient="p-a")) == [msg_id]
    store._unindex_moved([msg_id.encode(), b"p-b"])
    assert store.get(msg_id).patient == "p-a"


def test_packed_field_round_trips_through_the_python_codec(store):
    """What the Lua prelude packs, ``Meta`` reads back field for field and packs to the same text."""
    record = normalize(message("dto", status="in-progress"))
    store.upsert([record], via="webhook")
    store.apply_status(record.id, "completed", record.as_of + 1)
    raw = raw_client(store).hget(raw_keys(store).msg(record.id), "m").decode()
    meta = Meta.unpack(raw)
    assert meta.pack() == raw
    assert (meta.version, meta.status, meta.direction, meta.as_of) == (
        2, "completed", record.direction, record.as_of + 1)
    assert unpack_routing(raw) == (record.direction, record.patient)

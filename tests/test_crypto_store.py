"""Encryption at rest through the real store: nothing readable in Redis, tampering caught, dedupe kept."""

import hashlib
import uuid

import pytest

from conftest import raw_client
from conftest import raw_keys
from inbox import audit
from inbox.crypto import Vault
from inbox.crypto import fingerprint
from inbox.errors import DecryptionError
from inbox.normalize import normalize
from inbox.store import Delivery
from inbox.store import Outcome
from inbox.store import Store

OLD = ("old", b"\x11" * 32)
NEW = ("new", b"\x22" * 32)


def communication(message_id, canary, status="in-progress", updated="2026-09-14T15:41:50Z"):
    """A FHIR Communication whose subject line (topic) and body carry ``canary``."""
    return {
        "resourceType": "Communication", "id": message_id, "status": status,
        "subject": {"reference": "Patient/p-0001"},
        "topic": {"text": f"Re: {canary} follow-up"},
        "sender": {"display": f"{canary}@clinic.direct.example.org"},
        "payload": [{"contentString": f"Dear Dr. {canary}, results attached."}],
        "sent": "2026-09-14T15:41:50Z", "meta": {"lastUpdated": updated},
    }


def sdk_message(message_id, canary):
    """The flat SDK ``Message`` shape, with ``subject`` and ``body`` holding ``canary``."""
    return {"id": message_id, "patientId": "p-0002", "direction": "outbound", "status": "processing",
            "subject": f"{canary} lab results", "body": f"Body mentions {canary}.",
            "sentAt": "2026-09-14T15:41:50Z", "updatedAt": "2026-09-14T15:41:50Z"}


def populate(store, canary):
    """Every kind of write the service does: webhook upsert with ledger, page upsert, status, audit."""
    webhook = normalize(communication("m-0001", canary), direction="inbound")
    store.upsert([webhook], "webhook",
                 delivery=Delivery("d-0001", hashlib.sha256(webhook.body).hexdigest()))
    page = [normalize(communication(f"m-{i:04d}", canary), direction="inbound") for i in range(2, 6)]
    page.append(normalize(sdk_message("m-0006", canary)))
    store.upsert(page, "reconcile")
    changed = communication("m-0002", canary + "-v2", updated="2026-09-15T00:00:00Z")
    store.upsert([normalize(changed, direction="inbound")], "fetch")
    store.apply_status("m-0006", "failed", webhook.as_of + 1000)
    audit.record(raw_client(store), raw_keys(store), fingerprint("reader"), "message.get", ids=["m-0001"])


def values(client, key):
    """Everything a key holds, read with the command for its type, as bytes."""
    kind = client.type(key).decode()
    read = {
        "string": lambda: [client.get(key)],
        "hash": lambda: [b for pair in client.hgetall(key).items() for b in pair for b in readable(b)],
        "stream": lambda: [b for _, fields in client.xrange(key) for pair in fields.items() for b in pair],
        "zset": lambda: client.zrange(key, 0, -1),
        "set": lambda: list(client.smembers(key)),
        "list": lambda: client.lrange(key, 0, -1),
    }[kind]
    return b"\n".join(read())


def readable(value):
    """``value``, and its JSON too when it is a resource written unencrypted and compressed (mark
    0x02): compressing alone hides text from a byte search, and must not pass for encryption."""
    if value[:1] == b"\x02":
        return [value, Vault().open("any", value)]
    return [value]


@pytest.fixture
def uncompressed_dumps(redis_client):
    """DUMP without LZF compression, so a plaintext string would show up byte for byte."""
    before = redis_client.config_get("rdbcompression")["rdbcompression"]
    redis_client.config_set("rdbcompression", "no")
    yield
    redis_client.config_set("rdbcompression", before)


def leaks(store, canary):
    """Keys of the namespace whose DUMP or whose values contain ``canary``."""
    found = []
    for key in raw_client(store).scan_iter(match=raw_keys(store).pattern(), count=1000):
        if canary.encode() in raw_client(store).dump(key) or canary.encode() in values(raw_client(store), key):
            found.append(key.decode())
    return found


def test_no_plaintext_anywhere_in_redis_with_encryption_on(settings, uncompressed_dumps):
    """With a key ring, no key of the namespace holds the canary, by DUMP or by reading it."""
    store = Store(settings.replace(encryption_keys=(NEW,)))
    canary = "CANARY" + uuid.uuid4().hex[:10]
    populate(store, canary)
    keys = list(raw_client(store).scan_iter(match=raw_keys(store).pattern(), count=1000))
    assert len(keys) >= 8  # records, indexes, feed, stats, ledger, audit
    assert leaks(store, canary) == []
    assert canary in store.get("m-0001").resource["topic"]["text"]


def test_the_leak_scan_finds_plaintext_when_encryption_is_off(settings, uncompressed_dumps):
    """Control: without keys the same scan finds the canary in every record, so the check above can
    fail (those records are compressed: the scan decompresses them first)."""
    store = Store(settings)
    canary = "CANARY" + uuid.uuid4().hex[:10]
    populate(store, canary)
    found = leaks(store, canary)
    assert {raw_keys(store).msg(f"m-{i:04d}") for i in range(1, 7)} <= set(found)


def test_ciphertext_moved_to_another_record_fails_with_its_id(settings):
    """A blob copied from one record into another does not open there (id is the AAD)."""
    store = Store(settings.replace(encryption_keys=(NEW,)))
    store.upsert([normalize(communication(i, "moved"), direction="inbound") for i in ("m-a", "m-b")],
                 "reconcile")
    raw_client(store).hset(raw_keys(store).msg("m-b"), "r", raw_client(store).hget(raw_keys(store).msg("m-a"), "r"))
    with pytest.raises(DecryptionError) as caught:
        store.get("m-b")
    assert "m-b" in caught.value.detail
    assert store.get("m-a").resource["id"] == "m-a"


def test_tampered_record_is_reported_by_id_without_plaintext(settings):
    """One flipped byte in a stored blob: DecryptionError naming the id, no content in the message."""
    store = Store(settings.replace(encryption_keys=(NEW,)))
    store.upsert([normalize(communication("m-t", "secretcanary"), direction="inbound")], "webhook")
    blob = bytearray(raw_client(store).hget(raw_keys(store).msg("m-t"), "r"))
    blob[-5] ^= 0xFF
    raw_client(store).hset(raw_keys(store).msg("m-t"), "r", bytes(blob))
    with pytest.raises(DecryptionError) as caught:
        store.get("m-t")
    assert caught.value.code == "decrypt_failed"
    assert "m-t" in str(caught.value) and "secretcanary" not in str(caught.value)


def test_two_key_ring_reads_records_written_under_either_key(settings):
    """Records sealed under old and under new both read through the ring [new, old]."""
    Store(settings.replace(encryption_keys=(OLD,))).upsert(
        [normalize(communication("m-old", "x"), direction="inbound")], "reconcile")
    Store(settings.replace(encryption_keys=(NEW,))).upsert(
        [normalize(communication("m-new", "x"), direction="inbound")], "reconcile")
    ring = Store(settings.replace(encryption_keys=(NEW, OLD)))
    assert [m.id for m in ring.get_many(["m-old", "m-new"])] == ["m-old", "m-new"]
    assert Vault.kid_of(raw_client(ring).hget(raw_keys(ring).msg("m-old"), "r")) == "old"


def test_record_written_under_old_key_is_a_duplicate_under_the_rotated_ring(settings):
    """After rotation to [new, old], the same message again is a duplicate: no new version, no feed entry."""
    record = normalize(communication("m-dup", "x"), direction="inbound")
    Store(settings.replace(encryption_keys=(OLD,))).upsert([record], "reconcile")
    rotated = Store(settings.replace(encryption_keys=(NEW, OLD)))
    assert rotated.upsert([record], "reconcile").outcomes == (Outcome.DUPLICATE,)
    assert raw_client(rotated).xlen(raw_keys(rotated).feed) == 1
    new_only = Store(settings.replace(encryption_keys=(NEW,)))
    assert new_only.upsert([record], "webhook").outcomes == (Outcome.DUPLICATE,)
    assert raw_client(new_only).xlen(raw_keys(new_only).feed) == 1
    assert new_only.get("m-dup").version == 1


def test_stored_digest_is_keyed_per_ring(settings):
    """The digest stored for the same message differs between two rings and is not a plain SHA-256."""
    record = normalize(communication("m-h", "x"), direction="inbound")
    digests = []
    for ring in ((OLD,), (NEW,)):
        store = Store(settings.replace(encryption_keys=ring))
        store.upsert([record], "reconcile")
        digests.append(raw_client(store).hget(raw_keys(store).msg("m-h"), "h").decode())
        raw_client(store).delete(raw_keys(store).msg("m-h"))
    assert digests[0] != digests[1]
    assert not any(hashlib.sha256(record.meaning).hexdigest()[:32] in d for d in digests)


def test_api_read_rewrites_a_record_whose_key_was_lost(settings):
    """A record sealed under a key no longer in the ring is rewritten under the current key by a
    reconcile read of the same status and as-of, without a new version (its meaning is unknown,
    so status and as-of decide); a newer status is still an update."""
    record = normalize(communication("m-lost", "x"), direction="inbound")
    Store(settings.replace(encryption_keys=(OLD,))).upsert([record], "reconcile")
    store = Store(settings.replace(encryption_keys=(NEW,)))
    with pytest.raises(DecryptionError):
        store.get("m-lost")
    assert store.upsert([record], "reconcile").outcomes == (Outcome.DUPLICATE,)
    stored = store.get("m-lost")
    assert (stored.resource["id"], stored.version) == ("m-lost", 1)
    assert raw_client(store).xlen(raw_keys(store).feed) == 1
    Store(settings.replace(encryption_keys=(OLD,))).upsert(
        [normalize(communication("m-lost-2", "x"), direction="inbound")], "reconcile")
    done = normalize(communication("m-lost-2", "x", status="completed"), direction="inbound")
    assert store.upsert([done], "reconcile").outcomes == (Outcome.UPDATED,)
    assert store.get("m-lost-2").version == 2

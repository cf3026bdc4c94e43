"""rekey against a real Redis: every record moves to the new key, live writes survive, runs resume."""

import json
import threading

import pytest

from cli.dev.embedded import EmbeddedRedis
from conftest import raw_client
from conftest import raw_keys
from inbox.crypto import Vault
from inbox.errors import ConfigError
from inbox.errors import StoreUnavailable
from inbox.normalize import normalize
from inbox.rekey import rekey
from inbox.settings import Settings
from inbox.store import Outcome
from inbox.store import Store
from inbox.store import load_script

OLD = ("old", b"\x11" * 32)
NEW = ("new", b"\x22" * 32)


def message(n, text="first", minute=0):
    """Message ``n`` with some content, last updated at ``minute`` past the hour."""
    return {"resourceType": "Communication", "id": f"m-{n:05d}", "status": "in-progress",
            "subject": {"reference": f"Patient/p-{n % 7}"}, "topic": {"text": f"{text} {n}"},
            "payload": [{"contentString": f"body {text} {n}"}],
            "meta": {"lastUpdated": f"2026-09-14T15:{minute:02d}:00Z"}}


def fill(settings, ring, numbers, text="first"):
    """Store messages ``numbers`` under ``ring`` (empty ring: in clear)."""
    store = Store(settings.replace(encryption_keys=ring))
    store.upsert([normalize(message(n, text), direction="inbound") for n in numbers], "reconcile")


def kids(store):
    """The key id of every stored record (None for a record in clear)."""
    ids = raw_client(store).zrange(raw_keys(store).idx_all, 0, -1)
    return {Vault.kid_of(raw_client(store).hget(raw_keys(store).msg(i.decode()), "r")) for i in ids}


def test_rekey_moves_every_record_to_the_new_key(settings):
    """Records under the old key and in clear all end under new; the new key alone then reads them."""
    fill(settings, (), range(0, 30))
    fill(settings, (OLD,), range(30, 250))
    store = Store(settings.replace(encryption_keys=(NEW, OLD)))
    lines = []
    progress = rekey(store, batch=40, on_batch=lambda p: lines.append(p.line()))
    assert (progress.done, progress.scanned, progress.resealed, progress.failed) == (True, 250, 250, [])
    assert len(lines) == 7 and "250/250 scanned" in lines[-1]
    new_only = Store(settings.replace(encryption_keys=(NEW,)))
    assert kids(new_only) == {"new"}
    ids = [f"m-{n:05d}" for n in range(250)]
    assert [m.resource["topic"]["text"] for m in new_only.get_many(ids)] == [f"first {n}" for n in range(250)]
    assert not raw_client(store).exists(raw_keys(store).rekey_cursor)
    again = normalize(message(7), direction="inbound")
    assert new_only.upsert([again], "reconcile").outcomes == (Outcome.DUPLICATE,)


def test_rekey_runs_while_upserts_continue(settings):
    """A writer updating and adding messages during rekey loses nothing, and every record ends under new."""
    fill(settings, (OLD,), range(0, 300))
    store = Store(settings.replace(encryption_keys=(NEW, OLD)))
    writer_store = Store(settings.replace(encryption_keys=(NEW, OLD)))
    stop, wrote, latest = threading.Event(), threading.Semaphore(0), {}
    errors = []

    def write():
        round_ = 0
        try:
            while not stop.is_set():
                round_ += 1
                changed = [(n * 37 + round_) % 300 for n in range(5)]
                batch = [normalize(message(n, f"v{round_}", minute=round_ % 60), direction="inbound")
                         for n in changed if round_ < 60]
                batch.append(normalize(message(1000 + round_, "new"), direction="inbound"))
                writer_store.upsert(batch, "reconcile")
                for record in batch:
                    latest[record.id] = record
                wrote.release()
        except Exception as exc:  # reported to the test below
            errors.append(exc)
            wrote.release()

    def after_batch(progress):
        assert wrote.acquire(timeout=10), "the writer stopped writing"

    thread = threading.Thread(target=write)
    thread.start()
    try:
        progress = rekey(store, batch=25, on_batch=after_batch)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert errors == [] and progress.failed == []
    assert len(latest) > 10
    rekey(store)  # records the writer added behind the cursor were sealed under new already
    new_only = Store(settings.replace(encryption_keys=(NEW,)))
    assert kids(new_only) == {"new"}
    everything = [i.decode() for i in raw_client(new_only).zrange(raw_keys(new_only).idx_all, 0, -1)]
    stored = {m.id: m for m in new_only.get_many(everything)}
    assert len(stored) >= 300 + len([i for i in latest if i >= "m-01000"])
    for message_id, record in latest.items():
        assert stored[message_id].resource == json.loads(record.body)


def test_reseal_script_writes_only_if_the_digest_is_unchanged(settings):
    """record_reseal.lua: a stale expected digest writes nothing and answers 0; the current one writes.

    A batch is one call (scripts cannot be pipelined on a Redis Cluster), one answer per record.
    """
    store = Store(settings.replace(encryption_keys=(OLD,)))
    store.upsert([normalize(message(1), direction="inbound")], "reconcile")
    key = raw_keys(store).msg("m-00001")
    before = raw_client(store).hgetall(key)
    reseal = raw_client(store).register_script(load_script("record_reseal"))
    assert reseal(keys=[key], args=["not-the-digest", b"blob", "h2"]) == [0]
    assert raw_client(store).hgetall(key) == before
    missing = raw_keys(store).msg("m-missing")
    assert reseal(keys=[missing, key], args=["x", b"b", "h", before[b"h"], b"blob", "h2"]) == [0, 1]
    after = raw_client(store).hgetall(key)
    assert (after[b"r"], after[b"h"], after[b"m"]) == (b"blob", b"h2", before[b"m"])
    assert not raw_client(store).exists(raw_keys(store).msg("m-missing"))


def test_interrupted_rekey_resumes_after_the_last_batch(settings):
    """A run stopped after two batches leaves a cursor; the next run starts after it and finishes."""
    fill(settings, (OLD,), range(100))
    store = Store(settings.replace(encryption_keys=(NEW, OLD)))

    def stop_after_two(progress):
        if progress.scanned >= 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rekey(store, batch=10, on_batch=stop_after_two)
    assert raw_client(store).hget(raw_keys(store).rekey_cursor, "after") == b"m-00019"
    second = rekey(store, batch=10)
    assert (second.resumed_after, second.scanned, second.resealed) == ("m-00019", 80, 80)
    assert kids(store) == {"new"}


def test_redis_outage_mid_rekey_fails_fast_and_the_next_run_resumes():
    """Redis stopping after a batch ends rekey with StoreUnavailable; after restart it resumes there."""
    with EmbeddedRedis(appendonly=True) as server:
        settings = Settings(redis_url=server.url, namespace="rekey-outage")
        fill(settings, (OLD,), range(30))
        store = Store(settings.replace(encryption_keys=(NEW, OLD)))
        with pytest.raises(StoreUnavailable):
            rekey(store, batch=10, on_batch=lambda progress: server.stop())
        server.start()
        resumed = rekey(store, batch=10)
        assert (resumed.resumed_after, resumed.resealed) == ("m-00009", 20)
        assert kids(store) == {"new"}


def test_cursor_of_a_rekey_to_another_key_is_ignored(settings):
    """A cursor left by a run towards a different key id does not make a new rotation skip records."""
    fill(settings, (OLD,), range(20))
    store = Store(settings.replace(encryption_keys=(NEW, OLD)))
    raw_client(store).hset(raw_keys(store).rekey_cursor, mapping={"kid": "older", "after": "m-00015"})
    progress = rekey(store, batch=8)
    assert (progress.resumed_after, progress.scanned, progress.resealed) == (None, 20, 20)


def test_rekey_reports_records_that_do_not_open_and_goes_on(settings):
    """A tampered record is listed by id and reason; the other records are still resealed."""
    fill(settings, (OLD,), range(10))
    store = Store(settings.replace(encryption_keys=(NEW, OLD)))
    key = raw_keys(store).msg("m-00004")
    blob = bytearray(raw_client(store).hget(key, "r"))
    blob[-1] ^= 0x01
    raw_client(store).hset(key, "r", bytes(blob))
    progress = rekey(store, batch=3)
    assert progress.failed == [("m-00004", "decrypt_failed")]
    assert progress.resealed == 9
    assert "first" not in progress.line()


def test_second_rekey_finds_everything_current(settings):
    """Run twice, the second run rewrites nothing: all records are already under the current key."""
    fill(settings, (OLD,), range(15))
    store = Store(settings.replace(encryption_keys=(NEW, OLD)))
    rekey(store)
    second = rekey(store)
    assert (second.resealed, second.current) == (0, 15)


def test_rekey_without_keys_is_a_config_error(settings):
    """Without INBOX_ENCRYPTION_KEYS rekey refuses to run (it would have nothing to seal with)."""
    with pytest.raises(ConfigError):
        rekey(Store(settings))

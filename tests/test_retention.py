"""Retention: 90 days of simulated messages, a 30-day window, expiry, and what must hold after.

The store runs on a redis-server of its own so ``used_memory`` measures this store alone.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from cli.dev.embedded import EmbeddedRedis
from conftest import raw_client
from conftest import raw_keys
from inbox.connection import Connections
from inbox.errors import ConfigError
from inbox.feed import Consumer
from inbox.history import trace
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.retention import DAY_MS
from inbox.retention import expire
from inbox.store import Outcome
from inbox.store import Store
from inbox.store import Via
from receiver import create_app
from simulator import Simulator
from simulator.data import iso
from webhook_helpers import message
from worker import schedule
from worker.reconcile import run

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))

MESSAGES = 360
SPAN_DAYS = 90
RETENTION_DAYS = 30


def reconcile_run(settings, mode):
    """One reconciliation run's record (``Run.as_dict``)."""
    return run(settings, mode=mode).as_dict()


@pytest.fixture(scope="module")
def server():
    with EmbeddedRedis() as redis_server:
        yield redis_server


@pytest.fixture
def own(settings, server):
    """The test's settings on the private server (the namespace is flushed by the test's end)."""
    own = settings.replace(redis_url=server.url, retention_days=RETENTION_DAYS)
    yield own
    Connections(own).store.flushdb()


@pytest.fixture
def sim():
    with Simulator(seed=11, messages=0) as simulator:
        yield simulator


def _fill(sim, count=MESSAGES, span_days=SPAN_DAYS):
    """``count`` messages evenly spread over the last ``span_days`` days; the id of an old
    outbound message still in progress (it changes status later)."""
    now = int(time.time() * 1000)
    start = now - span_days * DAY_MS
    pending = None
    for i in range(count):
        sim.mailbox.generator.clock = start + i * span_days * DAY_MS // count
        if i == 3:
            pending = sim.mailbox.add(1, "outbound", pending=True)[0]
        else:
            sim.mailbox.add(1)
    return pending


def _age(resource):
    record = normalize(resource)
    return max(record.message_time, record.as_of)


def _feed(client, settings):
    rows = client.xrange(RedisKeys(settings.namespace).feed)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]


def test_ninety_days_thirty_day_retention(own, sim, server):
    pending = _fill(sim)
    reconcile = own.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=100)
    first = reconcile_run(reconcile, mode="full")
    assert first["created"] == MESSAGES
    store = Store(own)
    consumer = Consumer(own, "downstream", from_start=False)
    consumer.ensure_group()  # a consumer that has seen everything before expiry

    cutoff = int(time.time() * 1000) - RETENTION_DAYS * DAY_MS
    old = {i for i in sim.mailbox.ids() if _age(sim.mailbox.get(i)) < cutoff - 60_000}
    assert 200 < len(old) < MESSAGES and pending in old
    memory_before = records_memory(store, old)

    report = expire(store, batch=50)
    assert report.done and report.expired >= len(old) and report.batches >= MESSAGES // 50
    expired_entries = [e for e in _feed(raw_client(store), own) if e["event"] == "expired"]
    expired_ids = [e["id"] for e in expired_entries]
    assert len(expired_ids) == len(set(expired_ids)) == report.expired
    assert old <= set(expired_ids)
    assert all(_age(sim.mailbox.get(i)) < report.cutoff_ms for i in expired_ids)
    assert {e["via"] for e in expired_entries} == {"retention"}
    assert report.bytes_freed > 0
    assert store.stats()["expired"] == report.expired
    # memory: the blobs are gone from the expired records (the rest of the store grew meanwhile:
    # each expiry adds a feed entry and a history event, about as large as a deflated resource)
    memory_after = records_memory(store, old)
    assert memory_after < memory_before - report.bytes_freed // 2

    # the index and the mirror no longer know expired messages; the rest is untouched
    live = store.ids(store.index_key(), count=10_000)
    assert set(live) == set(sim.mailbox.ids()) - set(expired_ids)
    client = create_app(own.replace(inbox_api_keys=("k",))).test_client()
    gone = client.get(f"/medical/v1/message/{expired_ids[0]}", headers={"x-api-key": "k"})
    assert gone.status_code == 404 and gone.get_json()["name"] == "NOT_FOUND"
    kept = client.get(f"/medical/v1/message/{live[0]}", headers={"x-api-key": "k"})
    assert kept.status_code == 200
    listing = client.get("/medical/v1/message?count=500", headers={"x-api-key": "k"}).get_json()
    assert listing["meta"]["itemsInTotal"] == len(live)

    # a second run finds nothing more: each expiry is announced once
    again = expire(store, batch=50)
    assert again.expired == 0 and again.scanned == len(live)

    # reconciliation recreates nothing; a late webhook of the same version is a duplicate
    feed_length = len(_feed(raw_client(store), own))
    second = reconcile_run(reconcile, mode="full")
    assert (second["created"], second["updated"]) == (0, 0)
    assert second["duplicates"] == MESSAGES
    assert len(_feed(raw_client(store), own)) == feed_length
    assert store.get(expired_ids[0]) is None
    late = normalize(sim.mailbox.get(expired_ids[1]), sim.mailbox.direction(expired_ids[1]))
    assert store.upsert([late], via=Via.WEBHOOK).outcomes == (Outcome.DUPLICATE,)
    assert store.apply_status(late.id, late.status, late.as_of) == Outcome.DUPLICATE

    # the consumer is told about each expiry, with no message to load
    seen = []
    while True:
        entries = consumer.read(count=100)
        if not entries:
            break
        seen += entries
        consumer.ack(*entries)
    assert sorted(e.message_id for e in seen) == sorted(expired_ids)
    assert all(e.event == "expired" and e.message is None and e.error is None for e in seen)

    # a status change of an expired message is stored normally, with its content, and kept
    assert store.apply_status(pending, "completed", int(time.time() * 1000)) is None  # fetch it
    sim.mailbox.update(message_ids=[pending])
    third = reconcile_run(reconcile, mode="full")
    assert (third["created"], third["updated"]) == (0, 1)
    revived = store.get(pending)
    assert revived is not None and revived.status == sim.mailbox.get(pending)["status"]
    assert revived.resource == sim.mailbox.get(pending)
    assert pending in store.ids(store.index_key(), start=pending, count=1)
    assert pending in store.ids(store.index_key(direction="outbound"), start=pending, count=1)
    assert [e["event"] for e in _feed(raw_client(store), own) if e["id"] == pending][-1] == "updated"
    assert client.get(f"/medical/v1/message/{pending}", headers={"x-api-key": "k"}).status_code == 200
    assert expire(store).expired == 0  # its status change is inside the window


def test_expiry_resumes_after_an_interruption(own, sim):
    _fill(sim, count=120)
    reconcile_run(own.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=100), mode="full")
    store = Store(own)
    batches = []

    def stop_after_two(report):
        batches.append(report.scanned)
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        expire(store, batch=20, on_batch=stop_after_two)
    partial = store.stats()["expired"]
    resumed = expire(store, batch=20)
    assert resumed.resumed_after is not None
    assert resumed.scanned == 120 - 40  # went on after the last finished batch
    expired = [e for e in _feed(raw_client(store), own) if e["event"] == "expired"]
    assert len(expired) == len({e["id"] for e in expired}) == partial + resumed.expired
    assert store.expiry_cursor() is None


def test_retention_off_is_a_config_error(settings):
    with pytest.raises(ConfigError, match="INBOX_RETENTION_DAYS"):
        expire(Store(settings))


def records_memory(store, ids):
    """Redis memory (``MEMORY USAGE``) of the records of ``ids``, in bytes."""
    client, keys = raw_client(store), raw_keys(store)
    return sum(client.memory_usage(keys.msg(i), samples=0) for i in ids)


def _old_and_new(store, old=3, new=2):
    """``old`` messages sent 40 days ago and ``new`` ones sent now, stored by webhook."""
    now = int(time.time() * 1000)
    records = []
    for i in range(old + new):
        sent = iso(now - (40 * DAY_MS if i < old else 0))
        records.append(normalize(message(f"m-{i}", sentAt=sent, updatedAt=sent)))
    store.upsert(records, via=Via.WEBHOOK)
    return [r.id for r in records[:old]]


def _env(settings, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRIPORT_", "INBOX_"))}
    env.update(REDIS_URL=settings.redis_url, INBOX_NAMESPACE=settings.namespace, **extra)
    return env


def test_expire_once_command_prints_what_it_removed(settings, store):
    old = _old_and_new(store)
    done = subprocess.run([COMMAND, "expire", "--once"], capture_output=True, text=True,
                          timeout=60, env=_env(settings, INBOX_RETENTION_DAYS="30"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("expired 3 messages older than ")
    assert "(retention 30 days)" in done.stdout and "2 inside the window" in done.stdout
    assert [store.get(i) for i in old] == [None] * 3
    # like reconcile, one run is what the command does: --once is accepted, not needed
    again = subprocess.run([COMMAND, "expire", "--json"], capture_output=True,
                           text=True, timeout=60, env=_env(settings, INBOX_RETENTION_DAYS="30"))
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert (report["expired"], report["scanned"], report["done"]) == (0, 2, True)
    off = subprocess.run([COMMAND, "expire", "--once"], capture_output=True, text=True,
                         timeout=60, env=_env(settings))
    assert off.returncode == 2
    assert off.stderr.strip() == (
        "error: config_invalid: INBOX_RETENTION_DAYS is not set: retention is off, nothing expires.")


def test_clock_schedules_expiry_and_a_worker_runs_it(settings, store):
    from rq import Queue

    assert [e["name"] for e in schedule.entries(settings)] == [
        f"{settings.queue_name}-reconcile-full", f"{settings.queue_name}-reconcile-incremental"]
    configured = settings.replace(retention_days=30)
    queue = Queue(settings.queue_name, connection=Connections(settings).queue)
    schedule.scheduler(configured, Connections(configured)).enqueue_jobs()
    assert [job.func_name for job in queue.get_jobs()][-1] == "worker.jobs.expire"
    queue.empty()
    old = _old_and_new(store)
    job = queue.enqueue("worker.jobs.expire")
    subprocess.run([COMMAND, "worker", "--burst"], capture_output=True, timeout=90,
                   env=_env(settings, INBOX_RETENTION_DAYS="30", METRIPORT_API_KEY="k"))
    assert job.get_status(refresh=True) == "finished"
    assert job.return_value()["expired"] == 3
    assert [store.get(i) for i in old] == [None] * 3


def test_a_tombstone_stays_one_after_the_key_ring_changes(settings, store):
    """A digest written before encryption was switched on cannot be compared: the store rechecks,
    finds nothing to open, and the same version stays a duplicate without its content coming back."""
    from inbox.crypto import keygen
    from inbox.settings import Settings

    sent = iso(int(time.time() * 1000) - 40 * DAY_MS)
    record = normalize(message("m-old", sentAt=sent, updatedAt=sent))
    store.upsert([record], via=Via.WEBHOOK)
    assert expire(store, retention_days=30).expired == 1
    ring = Settings.from_env({"INBOX_ENCRYPTION_KEYS": keygen("k2")}).encryption_keys
    keyed = Store(settings.replace(encryption_keys=ring))
    assert keyed.upsert([record], via=Via.RECONCILE).outcomes == (Outcome.DUPLICATE,)
    assert keyed.get("m-old") is None and store.get("m-old") is None
    assert store.ids(store.index_key(), count=10) == []


def test_a_tombstone_is_small_and_keeps_the_history(settings, store, redis_client):
    """Only the blob and what the tombstone does not need go: the message's history stays for
    `trace`."""
    sent = iso(int(time.time() * 1000) - 40 * DAY_MS)
    store.upsert([normalize(message(f"t-{i}", sentAt=sent, updatedAt=sent)) for i in (1, 2)],
                 via=Via.WEBHOOK)
    keys = RedisKeys(settings.namespace)
    history = redis_client.hget(keys.msg("t-1"), "x")  # written by the upsert (inbox.history)
    assert history.split(b"|")[1:3] == [b"created", b"webhook"]
    redis_client.hset(keys.msg("t-2"), "x", "1|created|webhook|1|completed")  # a longer one
    assert expire(store, retention_days=30).expired == 2
    plain = redis_client.hgetall(keys.msg("t-1"))
    assert sorted(plain) == [b"e", b"h", b"m", b"x"] and plain[b"x"] == history
    # trace says what happened: created, then expired by retention at the tombstone's expiry
    # time (the mirror answers 404 from now on; this is where an operator finds why)
    traced = trace(settings, redis_client, "t-1")
    assert [(e.event, e.via, e.version) for e in traced.events] == [
        ("created", "webhook", 1), ("expired", "retention", 1)]
    assert traced.events[-1].at_ms == int(plain[b"e"])
    # One history event is just over Redis's 64-byte listpack value limit: the tombstone is a
    # hashtable of about 600 bytes with it (about 240 without, measured on 7.0)
    assert redis_client.memory_usage(keys.msg("t-1")) < 800
    assert redis_client.hget(keys.msg("t-2"), "x") == b"1|created|webhook|1|completed"
    assert b"r" not in redis_client.hgetall(keys.msg("t-2"))

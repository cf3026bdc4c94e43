"""The feed consumer API: groups, acks, reclaiming from dead consumers, dead letters, lag."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import raw_keys
from inbox.feed import Consumer
from inbox.feed import Feed
from inbox.normalize import normalize
from inbox.store import Store


def communication(n, patient="p-1", status="completed"):
    """A small inbound Communication whose id sorts by ``n``."""
    return {
        "resourceType": "Communication",
        "id": f"019a0000-0000-7000-8000-{n:012d}",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "topic": {"text": f"subject {n}"},
        "sent": "2026-09-14T15:41:50.000Z",
    }


def fill(store, n, start=0):
    """Store ``n`` new messages in one upsert; their message ids in feed order."""
    records = [normalize(communication(i), "inbound") for i in range(start, start + n)]
    store.upsert(records, "reconcile")
    return [r.id for r in records]


def drain(consumer, count=50):
    """Read until a read returns nothing; every entry read, in order (not acked)."""
    seen = []
    while True:
        entries = consumer.read(count=count)
        if not entries:
            return seen
        seen.extend(entries)


def test_two_groups_each_see_every_entry_once(settings, store):
    """Two groups consume independently: each gets every entry exactly once, in feed order."""
    ids = fill(store, 30)
    first = Consumer(settings, "billing", "b1")
    second = Consumer(settings, "search", "s1")
    for consumer in (first, second):
        entries = drain(consumer, count=7)
        consumer.ack(*entries)
        assert [e.message_id for e in entries] == ids
        assert len({e.id for e in entries}) == 30
        assert drain(consumer) == []


def test_consumers_of_one_group_share_the_work(settings, store):
    """Two consumers of one group split the entries between them without overlap."""
    fill(store, 20)
    a, b = Consumer(settings, "g", "a"), Consumer(settings, "g", "b")
    got_a, got_b = a.read(count=10), b.read(count=10)
    assert len(got_a) == len(got_b) == 10
    assert not {e.id for e in got_a} & {e.id for e in got_b}


def test_entries_carry_the_decrypted_message(encrypted_store):
    """With encryption on, a read entry holds the resource exactly as it was stored."""
    fill(encrypted_store, 1)
    consumer = Consumer(encrypted_store.settings, "g", "c", store=encrypted_store)
    (entry,) = consumer.read()
    assert entry.error is None
    assert entry.event == "created" and entry.version == 1 and entry.via == "reconcile"
    assert entry.message.resource == communication(0)


def test_undecryptable_record_is_reported_not_raised(encrypted_store, redis_client):
    """A record that cannot be opened is flagged on its entry; its neighbours still load."""
    ids = fill(encrypted_store, 3)
    blob = redis_client.hget(raw_keys(encrypted_store).msg(ids[1]), "r")
    redis_client.hset(raw_keys(encrypted_store).msg(ids[1]), "r", blob[:-1] + bytes([blob[-1] ^ 1]))
    redis_client.delete(raw_keys(encrypted_store).msg(ids[2]))
    consumer = Consumer(encrypted_store.settings, "g", "c", store=encrypted_store)
    entries = consumer.read()
    assert [e.error for e in entries] == [None, "decrypt_failed", "message_missing"]
    assert entries[0].message.id == ids[0]


def test_record_that_is_not_json_is_reported(settings, store, redis_client):
    """A clear-text record that does not parse is flagged ``record_unreadable``."""
    ids = fill(store, 2)
    redis_client.hset(raw_keys(store).msg(ids[0]), "r", b"{not json")
    entries = Consumer(settings, "g", "c").read()
    assert [e.error for e in entries] == ["record_unreadable", None]


def test_new_group_from_now_skips_history(settings, store):
    """A group created with from_start=False sees only entries written after it exists."""
    fill(store, 5)
    consumer = Consumer(settings, "late", "c", from_start=False)
    assert consumer.read() == []
    ids = fill(store, 2, start=100)
    assert [e.message_id for e in consumer.read()] == ids


def test_blocking_read_returns_an_entry_written_meanwhile(settings, store):
    """A blocking read with nothing new wakes up with the entry written while it waits."""
    consumer = Consumer(settings, "g", "c")
    assert consumer.read(block=0.2) == []
    writer = threading.Timer(0.3, fill, args=(store, 1))
    writer.start()
    try:
        entries = consumer.read(block=10)
    finally:
        writer.join()
    assert [e.message_id for e in entries] == [communication(0)["id"]]


CRASHING_CONSUMER = textwrap.dedent(
    """
    import sys, time
    from inbox.feed import Consumer
    from inbox.settings import Settings
    settings = Settings(redis_url=sys.argv[1], namespace=sys.argv[2])
    entries = Consumer(settings, "g", "doomed").read(count=int(sys.argv[3]))
    print(" ".join(e.id for e in entries), flush=True)
    time.sleep(60)
    """
)


def test_entries_of_a_killed_consumer_are_reclaimed(settings, store):
    """A consumer SIGKILLed before acking leaves its entries pending; another claims them."""
    fill(store, 10)
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CONSUMER, settings.redis_url, settings.namespace, "6"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        taken = process.stdout.readline().split()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert len(taken) == 6
    survivor = Consumer(settings, "g", "survivor", claim_idle=0.2)
    rest = survivor.read(count=10)
    assert len(rest) == 4 and not {e.id for e in rest} & set(taken)
    survivor.ack(*rest)
    time.sleep(0.3)
    reclaimed = survivor.read(count=10)
    assert sorted(e.id for e in reclaimed) == sorted(taken)
    assert all(e.deliveries == 2 and e.message is not None for e in reclaimed)
    survivor.ack(*reclaimed)
    assert survivor.pending() == 0


def test_poison_entry_moves_to_dead_letter_after_the_limit(settings, store):
    """An entry never acked is redelivered up to the limit, then dead-lettered and acked."""
    (message_id,) = fill(store, 1)
    consumer = Consumer(settings, "g", "c", claim_idle=0.05, max_deliveries=3)
    deliveries = []
    for _ in range(6):
        deliveries += [e.deliveries for e in consumer.read()]
        time.sleep(0.08)
    assert deliveries == [1, 2, 3]
    assert consumer.pending() == 0
    (dead,) = Feed(settings).deadletters()
    assert dead["id"] == message_id and dead["reason"] == "max_deliveries"
    assert dead["group"] == "g" and dead["deliveries"] == "4"
    assert set(dead) == {"id", "entry", "group", "consumer", "reason", "deliveries"}


def test_dead_letter_by_hand_records_the_reason(settings, store):
    """A consumer can set an entry aside with its own reason code; it is acked at once."""
    fill(store, 1)
    consumer = Consumer(settings, "g", "c")
    (entry,) = consumer.read()
    consumer.dead_letter(entry, "unprocessable")
    assert consumer.pending() == 0
    assert Feed(settings).deadletters()[0]["reason"] == "unprocessable"


def test_lag_and_pending_per_group(settings, store):
    """Group figures: pending counts unacked entries, lag counts entries not yet handed out."""
    fill(store, 12)
    consumer = Consumer(settings, "g", "c")
    entries = consumer.read(count=5)
    consumer.ack(*entries[:2])
    (group,) = Feed(settings).groups()
    assert (group.name, group.pending, group.lag, group.consumers) == ("g", 3, 7, 1)
    assert group.last_delivered == entries[-1].id


def test_lag_counted_without_xinfo_lag(settings, store):
    """The fallback count (Redis 6.2 has no lag field) agrees with the real figure."""
    fill(store, 9)
    Consumer(settings, "g", "c").read(count=4)
    feed = Feed(settings)
    (group,) = feed.groups()
    assert feed._count_after(group.last_delivered, chunk=2) == 5


def test_feed_after_is_exclusive(settings, store):
    """Positions page through the feed: each entry once, the position itself excluded."""
    ids = fill(store, 25)
    feed, seen, position = Feed(settings), [], None
    while batch := feed.after(position, limit=10):
        seen += batch
        position = batch[-1].id
    assert [e.message_id for e in seen] == ids


@pytest.fixture
def encrypted_store(settings):
    key = (b"k" * 32)
    return Store(settings.replace(encryption_keys=(("k1", key),)))


def test_entries_trimmed_while_pending_are_dead_lettered(settings, store, redis_client):
    """Pending entries trimmed out of the feed are acked and dead-lettered as trimmed."""
    fill(store, 3)
    Consumer(settings, "g", "gone").read()
    redis_client.xtrim(raw_keys(store).feed, maxlen=0, approximate=False)
    time.sleep(0.1)
    consumer = Consumer(settings, "g", "c", claim_idle=0.05)
    assert consumer.read() == []
    assert consumer.pending() == 0
    assert [d["reason"] for d in Feed(settings).deadletters()] == ["trimmed"] * 3

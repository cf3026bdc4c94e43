"""Feed read throughput: what a downstream consumer pays per entry, against a plain XRANGE.

A consumer reads the feed with XREADGROUP, loads each entry's message from the store, then
acknowledges it. This script seeds N messages (about 1 KiB each), then reads the whole feed
once per variant and batch size, on the same Redis in the same run:

- ``xrange``: XRANGE pages of the stream, nothing else (the baseline: raw stream read cost);
- ``xreadgroup+ack``: a consumer group read, then XACK of the batch;
- ``xreadgroup+load+ack``: the same plus ``Store.get_many`` of the batch's ids (what a consumer
  that needs the resources does; the resources are decrypted when ``--encrypt`` is given);
- ``Consumer.read+ack``: the project's consumer API (``inbox.feed.Consumer``): a reclaim
  (XAUTOCLAIM) before each read, XREADGROUP, the store load, then ``ack``.

Figures are entries per second and the ratio to the baseline of the same batch size. Bounded:
each variant reads the N entries once per round (default 10 000, 3 rounds): about 30 s.

    .venv/bin/python bench/feed.py [--messages 10000] [--batches 10,100,500] [--rounds 3] [--encrypt]
"""

import argparse
import json
import os
import platform
import secrets
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from cli.dev.embedded import EmbeddedRedis  # noqa: E402
from inbox.connection import Connections  # noqa: E402
from inbox.feed import Consumer  # noqa: E402
from inbox.normalize import normalize  # noqa: E402
from inbox.rediskeys import RedisKeys  # noqa: E402
from inbox.settings import Settings  # noqa: E402
from inbox.store import Store  # noqa: E402

GROUP = "bench"


def message(number):
    """A Communication of about 1 KiB, ids time-ordered like Metriport's."""
    return {
        "resourceType": "Communication",
        "id": f"0195c3d1-{number:012d}",
        "status": "completed",
        "subject": {"reference": f"Patient/p-{number % 500}"},
        "sent": "2026-03-01T10:00:00Z",
        "payload": [{"contentString": "x" * 900}],
    }


def seed(store, count, page=500):
    for start in range(0, count, page):
        records = [normalize(message(n), direction="inbound")
                   for n in range(start, min(count, start + page))]
        store.upsert(records, "reconcile")


def read_xrange(store, client, batch):
    feed = RedisKeys(store.settings.namespace).feed
    last, seen = "-", 0
    while True:
        entries = client.xrange(feed, min=last, max="+", count=batch)
        if not entries:
            return seen
        seen += len(entries)
        last = "(" + entries[-1][0].decode()


def read_group(store, client, batch, load):
    feed = RedisKeys(store.settings.namespace).feed
    group = f"{GROUP}-{uuid.uuid4().hex[:6]}"
    client.xgroup_create(feed, group, id="0")
    seen = 0
    try:
        while True:
            reply = client.xreadgroup(group, "c1", {feed: ">"}, count=batch)
            if not reply or not reply[0][1]:
                return seen
            entries = reply[0][1]
            if load:
                ids = [fields[b"id"].decode() for _, fields in entries]
                messages = store.get_many(ids)
                assert all(m is not None for m in messages)
            client.xack(feed, group, *(entry_id for entry_id, _ in entries))
            seen += len(entries)
    finally:
        client.xgroup_destroy(feed, group)


def read_consumer(store, client, batch):
    consumer = Consumer(store.settings, f"{GROUP}-{uuid.uuid4().hex[:6]}", "c1", store=store)
    seen = 0
    try:
        while True:
            entries = consumer.read(count=batch)
            if not entries:
                return seen
            assert all(entry.message is not None for entry in entries)
            consumer.ack(*entries)
            seen += len(entries)
    finally:
        client.xgroup_destroy(RedisKeys(store.settings.namespace).feed, consumer.group)


VARIANTS = {
    "xrange": read_xrange,
    "xreadgroup+ack": lambda store, client, batch: read_group(store, client, batch, load=False),
    "xreadgroup+load+ack": lambda store, client, batch: read_group(store, client, batch, load=True),
    "Consumer.read+ack": read_consumer,
}


def measure(store, client, expected, batches, rounds):
    """Best rate of ``rounds`` reads per (batch, variant); rounds interleave the variants so a
    noisy neighbour on the shared machine slows all of them alike."""
    best = {}
    for _ in range(rounds):
        for batch in batches:
            for name, read in VARIANTS.items():
                started = time.perf_counter()
                seen = read(store, client, batch)
                elapsed = time.perf_counter() - started
                assert seen == expected, (name, seen, expected)
                best[batch, name] = max(best.get((batch, name), 0.0), seen / elapsed)
    return [
        {"batch": batch, "variant": name, "entries_per_s": round(best[batch, name]),
         "ratio_to_xrange": round(best[batch, name] / best[batch, "xrange"], 3)}
        for batch in batches for name in VARIANTS
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batches", default="10,100,500")
    parser.add_argument("--rounds", type=int, default=3, help="best of N reads per variant")
    parser.add_argument("--encrypt", action="store_true", help="store resources encrypted")
    options = parser.parse_args()
    batches = [int(b) for b in options.batches.split(",")]
    keys = (("k1", secrets.token_bytes(32)),) if options.encrypt else ()
    server = None if os.environ.get("REDIS_URL") else EmbeddedRedis().start()
    try:
        url = os.environ.get("REDIS_URL") or server.url
        settings = Settings(redis_url=url, namespace=f"bench-feed-{uuid.uuid4().hex[:8]}",
                            encryption_keys=keys)
        client = Connections(settings).store
        store = Store(settings, client=client)
        seed(store, options.messages)
        try:
            rows = measure(store, client, options.messages, batches, options.rounds)
        finally:
            for key in client.scan_iter(match=RedisKeys(settings.namespace).pattern(), count=1000):
                client.delete(key)
    finally:
        if server is not None:
            server.close()
    print(f"# {platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}, "
          f"{options.messages} messages, encryption {'on' if options.encrypt else 'off'}")
    print(f"{'batch':>6} {'variant':<22} {'entries/s':>10} {'vs xrange':>9}")
    for row in rows:
        print(f"{row['batch']:>6} {row['variant']:<22} {row['entries_per_s']:>10} "
              f"{row['ratio_to_xrange']:>9.3f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

"""Cost of the downstream paths against the bare Redis work they cannot avoid (ratios, same run).

- mirror page: ``GET /medical/v1/message?count=500`` through the Flask test client, against the
  baseline ``Store.ids`` + ``Store.get_many`` of the same 500 ids;
- feed consumer: ``Consumer.read(100)`` + ``ack`` against raw XREADGROUP + XACK + ``get_many``;
- feed poll: ``GET /feed?limit=1000`` against a raw XRANGE of 1000 entries.

Usage: ``.venv/bin/python bench/feed_mirror.py`` (embedded redis-server unless REDIS_URL is set).
Bounded: 10,000 messages, a few hundred timed calls, well under 60 s.
"""

import os
import statistics
import time
import uuid

from cli.dev.embedded import EmbeddedRedis
from inbox.connection import Connections
from inbox.feed import Consumer
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Store
from receiver import create_app

MESSAGES = 10_000
KEY = {"x-api-key": "bench"}


def timed(fn, repeat):
    """Median seconds of ``fn()`` over ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def fill(store):
    for start in range(0, MESSAGES, 500):
        records = [
            normalize({
                "resourceType": "Communication", "id": f"019a{n:08d}-0000-7000-8000-000000000000",
                "status": "completed", "subject": {"reference": f"Patient/p-{n % 20}"},
                "topic": {"text": "x" * 60}, "payload": [{"contentString": "y" * 700}],
            }, "inbound" if n % 2 else "outbound")
            for n in range(start, start + 500)
        ]
        store.upsert(records, "reconcile")


def run(url):
    settings = Settings(redis_url=url, namespace=f"bench-{uuid.uuid4().hex[:8]}",
                        webhook_keys=("w",), inbox_api_keys=("bench",))
    store = Store(settings)
    fill(store)
    client = create_app(settings).test_client()
    index = store.index_key()
    middle = store.ids(index, count=5000)[-1]

    def mirror():
        assert client.get(f"/medical/v1/message?count=500&fromItem={middle}", headers=KEY).status_code == 200

    def mirror_base():
        store.get_many(store.ids(index, start=middle, count=501))

    def mirror_patient():
        client.get("/medical/v1/message?count=100&patientId=p-3&direction=inbound", headers=KEY)

    def mirror_patient_base():
        store.get_many(store.ids(store.index_key(patient="p-3"), count=101))

    rows = [
        ("mirror page count=500 (fromItem)", timed(mirror, 30), timed(mirror_base, 30)),
        ("mirror page count=100 patient+direction", timed(mirror_patient, 30), timed(mirror_patient_base, 30)),
    ]

    consumer = Consumer(settings, "bench", "c1")
    raw = Connections(settings).store
    keys = RedisKeys(settings.namespace)
    raw.xgroup_create(keys.feed, "raw", id="0")

    def consume():
        consumer.ack(*consumer.read(count=100))

    def consume_base():
        reply = raw.xreadgroup("raw", "c1", {keys.feed: ">"}, count=100)
        rows_ = reply[0][1]
        store.get_many([f[b"id"].decode() for _, f in rows_])
        raw.xack(keys.feed, "raw", *[i for i, _ in rows_])

    rows.append(("consumer read(100)+ack", timed(consume, 40), timed(consume_base, 40)))

    def poll():
        client.get("/feed?limit=1000", headers=KEY)

    def poll_base():
        raw.xrange(keys.feed, count=1000)

    rows.append(("GET /feed limit=1000", timed(poll, 30), timed(poll_base, 30)))
    for key in raw.scan_iter(match=keys.pattern(), count=1000):
        raw.delete(key)
    return raw.info()["redis_version"], rows


def main():
    if os.environ.get("REDIS_URL"):
        version, rows = run(os.environ["REDIS_URL"])
    else:
        with EmbeddedRedis() as server:
            version, rows = run(server.url)
    print(f"redis {version}, {MESSAGES} messages of ~1 KiB")
    print(f"{'path':<42}{'median ms':>10}{'baseline ms':>13}{'ratio':>8}")
    for name, measured, baseline in rows:
        print(f"{name:<42}{measured * 1000:>10.2f}{baseline * 1000:>13.2f}{measured / baseline:>8.2f}")


if __name__ == "__main__":
    main()

"""What encryption costs per message, next to what a message costs anyway (a Redis round trip).

Measures, in one run on this machine: an HSET then an HGET (two round trips) of a 1 KiB record on a
private redis-server (the baseline), seal+open of a ~1 KB Communication (compressed, then sealed), the keyed digests with a ring of
one and of two keys, and normalize() of the same message. Prints each as ops/s and as a share of
the baseline. Bounded: about 1 s per measurement. Run: ``.venv/bin/python bench/crypto.py``.
"""

import os
import time

from cli.dev.embedded import EmbeddedRedis
from inbox.connection import connect
from inbox.crypto import Vault
from inbox.normalize import normalize
from store import communications

SECONDS = 1.0


def rate(operation):
    """Operations per second of ``operation()`` over about SECONDS."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < SECONDS:
        for _ in range(100):
            operation()
        count += 100
    return count / elapsed


def main():
    # a ~1 KB Communication with varied text, as bench/store.py stores (a body of one repeated
    # character would compress to nothing and flatter sealing, which compresses first)
    message = communications(1)[0]
    record = normalize(message, direction="inbound")
    one = Vault([("k1", os.urandom(32))])
    two = Vault([("k2", os.urandom(32)), ("k1", os.urandom(32))])
    blob = one.seal(record.id, record.body)
    with EmbeddedRedis() as server:
        client = connect(server.url)
        key = "{bench}:msg:" + record.id

        def round_trip():
            client.hset(key, "r", record.body)
            client.hget(key, "r")

        baseline = rate(round_trip)
    results = [
        ("redis HSET + HGET 1 KiB (baseline)", baseline),
        ("seal + open 1 KiB", rate(lambda: one.open(record.id, one.seal(record.id, record.body)))),
        ("open 1 KiB", rate(lambda: one.open(record.id, blob))),
        ("digests, ring of 1", rate(lambda: one.digests(record.meaning, "m1"))),
        ("digests, ring of 2", rate(lambda: two.digests(record.meaning, "m1"))),
        ("normalize 1 KiB message", rate(lambda: normalize(message, direction="inbound"))),
    ]
    print(f"body {len(record.body)} B, sealed {len(blob)} B")
    for name, ops in results:
        print(f"{name:36s} {ops:>10,.0f} ops/s  {baseline / ops:6.1%} of baseline")


if __name__ == "__main__":
    main()

"""Sizing figures for docs/operations.md: Redis memory per message, live and as a tombstone, and
what a backup costs.

For each of encryption off and on, in a fresh embedded redis-server: store N simulated messages
(the simulator's generator, pages of 500 as reconciliation does), read ``used_memory``; expire them
all (retention with a cutoff after the newest message) and read it again; then back the namespace
up to a file and restore it into a second fresh server. Prints bytes per message for each state
and the backup's size and speed.

    .venv/bin/python bench/lifecycle.py                    # 20,000 messages
    .venv/bin/python bench/lifecycle.py --messages 2000    # quicker
"""

import argparse
import os
import tempfile
import time

from cli.dev.embedded import EmbeddedRedis
from inbox.backup import backup
from inbox.backup import restore
from inbox.connection import connect
from inbox.crypto import keygen
from inbox.normalize import normalize
from inbox.retention import DAY_MS
from inbox.retention import expire
from inbox.settings import Settings
from inbox.store import Store
from simulator.data import Mailbox

PAGE = 500


def used(client):
    client.execute_command("MEMORY", "PURGE")
    return client.info("memory")["used_memory"]


def measure(messages, encrypted):
    ring = Settings.from_env({"INBOX_ENCRYPTION_KEYS": keygen("bench")}).encryption_keys
    mailbox = Mailbox(seed=3, messages=messages)
    records = [normalize(mailbox.get(i), mailbox.direction(i)) for i in mailbox.ids()]
    body = sum(len(r.body) for r in records) / len(records)
    with EmbeddedRedis() as server, EmbeddedRedis() as second:
        settings = Settings(redis_url=server.url, namespace="bench",
                            encryption_keys=ring if encrypted else ())
        client = connect(server.url, socket_timeout=30)
        store = Store(settings, client=client)
        empty = used(client)
        for start in range(0, len(records), PAGE):
            store.upsert(records[start:start + PAGE], via="reconcile")
        live = used(client)
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "bench.backup")
            started = time.perf_counter()
            backup(client, "bench", path)
            backup_seconds = time.perf_counter() - started
            size = os.path.getsize(path)
            target = connect(second.url, socket_timeout=30)
            started = time.perf_counter()
            restore(target, "bench", path,
                    Store(settings.replace(redis_url=second.url), client=target).reindex)
            restore_seconds = time.perf_counter() - started
        newest = max(max(r.message_time or 0, r.as_of) for r in records)
        report = expire(store, retention_days=1, now_ms=newest + 2 * DAY_MS)
        tombstones = used(client)
        assert report.expired == len(records)
    per = lambda total: (total - empty) / len(records)  # noqa: E731
    return {
        "resource": body,
        "live": per(live),
        "tombstone": per(tombstones),
        "backup_bytes": size / len(records),
        "backup_rate": len(records) / backup_seconds,
        "restore_rate": len(records) / restore_seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{args.messages} simulated messages per run; bytes per message (used_memory delta / N)")
    print(f"{'encryption':<11}{'resource':>10}{'live':>8}{'tombstone':>11}{'backup file':>13}"
          f"{'backup msg/s':>14}{'restore msg/s':>15}")
    for encrypted in (False, True):
        row = measure(args.messages, encrypted)
        print(f"{'on' if encrypted else 'off':<11}{row['resource']:>10.0f}{row['live']:>8.0f}"
              f"{row['tombstone']:>11.0f}{row['backup_bytes']:>13.0f}{row['backup_rate']:>14.0f}"
              f"{row['restore_rate']:>15.0f}")


if __name__ == "__main__":
    main()

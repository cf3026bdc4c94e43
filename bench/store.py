"""Benchmark of the message store: upsert throughput and Redis memory per stored message.

Measures on this machine, with at-rest encryption off and on in the same run:

- single-call throughput: one ``Store.upsert`` (one round trip) per message;
- page throughput: one call per page of 500, Metriport's largest list page;
- Redis memory per stored message: ``INFO memory`` ``used_memory`` before and after storing N
  realistic ~1 KB Communications in a fresh namespace, and where it goes (``MEMORY USAGE``).

Throughput includes the Python side (normalization, canonical JSON, digest, sealing). Figures are
printed with ratios (page vs single, encrypted vs plain); see bench/RESULTS.md.

    .venv/bin/python bench/store.py                  # 50,000 messages, embedded redis-server
    .venv/bin/python bench/store.py --messages 5000 --sample 5000 --single 1000   # quicker
    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/store.py   # an existing server
"""

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import time
import uuid

from cli.dev.embedded import EmbeddedRedis
from inbox.connection import connect
from inbox.crypto import Vault
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Store

PAGE = 500
WORDS = ("patient", "follow-up", "results", "attached", "please", "schedule", "clinic", "visit",
         "discharge", "summary", "referral", "medication", "review", "labs", "within", "days",
         "cardiology", "imaging", "report", "consult", "thank", "you", "regards", "team")


def communications(count, seed=7):
    """``count`` realistic Communications of about 1 KB, ids time-ordered like UUIDv7."""
    rng = random.Random(seed)
    base_ms = 1_789_400_000_000
    patients = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(max(1, count // 25))]
    messages = []
    for i in range(count):
        when_ms = base_ms + i * 1000
        stamp = f"{when_ms:012x}"
        message_id = (f"{stamp[:8]}-{stamp[8:]}-7{rng.getrandbits(12):03x}-"
                      f"8{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}")
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 45)))
        sent = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when_ms / 1000)) + ".000Z"
        resource = {
            "resourceType": "Communication",
            "id": message_id,
            "status": "completed",
            "subject": {"reference": f"Patient/{rng.choice(patients)}"},
            "topic": {"text": f"Re: {rng.choice(WORDS)} {rng.choice(WORDS)} {i}"},
            "sender": {"display": f"clinician{rng.randint(1, 999)}@hospital.direct.example.org"},
            "recipient": [{"type": "Organization", "display": "Northside Family Clinic"}],
            "sent": sent,
            "received": sent,
            "payload": [
                {"contentString": text},
                {"contentReference": {"reference": f"DocumentReference/{uuid.UUID(int=i)}"}},
            ],
            "extension": [{
                "url": "https://public.metriport.com/fhir/StructureDefinition/data-source.json",
                "valueCoding": {
                    "system": "https://public.metriport.com/fhir/StructureDefinition/"
                              "data-source.json",
                    "code": "CAREQUALITY",
                },
            }],
        }
        messages.append(resource)
    return messages


def used_memory(client):
    return client.info("memory")["used_memory"]


def server_seconds(client):
    """CPU seconds redis-server has used so far (user + system)."""
    cpu = client.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def clear(client, namespace):
    """Delete every key of ``namespace`` (only ours, also on a shared server)."""
    keys = list(client.scan_iter(match=RedisKeys(namespace).pattern(), count=5000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])


def store_pages(store, messages):
    """Normalize and upsert ``messages`` one page per call; seconds taken."""
    began = time.perf_counter()
    for start in range(0, len(messages), PAGE):
        records = [normalize(m, direction="inbound") for m in messages[start:start + PAGE]]
        store.upsert(records, "reconcile")
    return time.perf_counter() - began


def store_singly(store, messages):
    """Normalize and upsert ``messages`` one call each; seconds taken."""
    began = time.perf_counter()
    for message in messages:
        store.upsert([normalize(message, direction="inbound")], "webhook")
    return time.perf_counter() - began


def breakdown(client, store, count):
    """Bytes per message of each structure, from ``MEMORY USAGE`` (samples records)."""
    keys = RedisKeys(store.settings.namespace)
    sample = store.ids(store.index_key(), count=200)
    record = statistics.mean(client.memory_usage(keys.msg(i), samples=0) for i in sample)
    # the stored resource alone (deflated, and sealed when encrypted), against its JSON's size
    blob = statistics.mean(client.hstrlen(keys.msg(i), "r") for i in sample)
    indexes = sum(client.memory_usage(k, samples=0) or 0 for k in (
        keys.idx_all, keys.idx_direction("inbound")))
    patient_keys = list(client.scan_iter(match=keys.pattern()[:-1] + "idx:patient:*", count=5000))
    patients = sum(client.memory_usage(k, samples=0) or 0 for k in patient_keys)
    feed = client.memory_usage(keys.feed, samples=0) or 0
    return {
        "record": record,
        "of which resource": blob,
        "idx all+direction": indexes / count,
        "idx patients": patients / count,
        "feed": feed / count,
    }


def measure_memory(client, settings, messages, mode):
    """Store ``messages`` by pages in a fresh namespace: memory per message and where it goes."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    store = Store(settings.replace(namespace=namespace), client=client)
    try:
        client.config_resetstat()
        before = used_memory(client)
        seconds = store_pages(store, messages)
        after = used_memory(client)
        evalsha = client.info("commandstats").get("cmdstat_evalsha", {})
        calls = evalsha.get("calls", 0) - evalsha.get("failed_calls", 0)
        return {
            "mode": mode,
            "page_msg_s": [len(messages) / seconds],
            "single_msg_s": [],
            "client_us": [],
            "server_us": [],
            "bytes_per_msg": (after - before) / len(messages),
            "calls_per_page": calls / -(-len(messages) // PAGE),
            "breakdown": breakdown(client, store, len(messages)),
        }
    finally:
        clear(client, namespace)


def measure_throughput(client, settings, messages, single, figures):
    """One more round of page and single-call throughput, appended to ``figures``.

    Also the CPU each side spent per message on the page path (this process, and redis-server's
    from INFO cpu): on a shared machine these move much less than wall time.
    """
    for path, count, key in ((store_pages, len(messages), "page_msg_s"),
                             (store_singly, single, "single_msg_s")):
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        store = Store(settings.replace(namespace=namespace), client=client)
        try:
            cpu, server_cpu = time.process_time(), server_seconds(client)
            figures[key].append(count / path(store, messages[:count]))
            if key == "page_msg_s":
                figures["client_us"].append((time.process_time() - cpu) / count * 1e6)
                figures["server_us"].append((server_seconds(client) - server_cpu) / count * 1e6)
        finally:
            clear(client, namespace)


def python_share(messages, settings):
    """CPU seconds per message of normalize + digest + seal alone (no arguments, no I/O)."""
    vault = Vault(settings.encryption_keys)
    began = time.process_time()
    for message in messages:
        record = normalize(message, direction="inbound")
        vault.seal(record.id, record.body)
        vault.digests(record.meaning, "m1")
    return (time.process_time() - began) / len(messages)


@contextlib.contextmanager
def redis_server():
    """REDIS_URL if set, else a private embedded redis-server for this run."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"], "REDIS_URL"
        return
    with EmbeddedRedis() as server:
        yield server.url, "embedded"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000,
                        help="messages stored through the page path (and for memory)")
    parser.add_argument("--single", type=int, default=5_000,
                        help="messages stored one call each")
    parser.add_argument("--sample", type=int, default=10_000,
                        help="messages stored through the page path in each throughput round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput rounds per mode; the best is reported")
    parser.add_argument("--budget", type=float, default=35.0,
                        help="seconds after which no new round starts")
    parser.add_argument("--cluster", action="store_true",
                        help="instead: batch upserts on a 3-master Redis Cluster next to one server "
                             "(bench/store_cluster.py; its options follow)")
    args, rest = parser.parse_known_args()
    if args.cluster:
        import store_cluster

        return store_cluster.main([*rest, "--rounds", str(args.rounds)])
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    began = time.monotonic()
    load = os.getloadavg()
    messages = communications(args.messages)
    sizes = [len(json.dumps(m, separators=(",", ":"))) for m in messages[:1000]]
    key = ("bench", os.urandom(32))
    with redis_server() as (url, where):
        client = connect(url, socket_timeout=30)
        version = client.info("server")["redis_version"]
        plain_settings = Settings(redis_url=url)
        sealed_settings = plain_settings.replace(encryption_keys=(key,))
        modes = (("plain", plain_settings), ("encrypted", sealed_settings))
        runs = [measure_memory(client, settings, messages, mode) for mode, settings in modes]
        # rounds alternate the modes, so a burst of load on this shared machine hits both;
        # no new round starts after --budget seconds, so a loaded machine still ends in time
        sample = messages[:args.sample]
        for round_number in range(args.rounds):
            if round_number and time.monotonic() - began > args.budget:
                break
            for run, (_, settings) in zip(runs, modes):
                measure_throughput(client, settings, sample, args.single, run)
        python = {mode: min(python_share(sample[:5000], settings) for _ in range(args.rounds))
                  for mode, settings in modes}
    for run in runs:
        run["page"], run["single"] = max(run["page_msg_s"]), max(run["single_msg_s"])

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, redis-server {version} ({where}); "
          f"load average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"messages: {len(messages)} for memory, {args.sample} (page path) and {args.single} "
          f"(single path) per round, best of {len(runs[0]['single_msg_s'])} rounds; "
          f"resource JSON mean {statistics.mean(sizes):.0f} B; {time.monotonic() - began:.0f} s")
    print()
    print(f"{'mode':<10} {'page msg/s':>11} {'single msg/s':>13} {'page/single':>12} "
          f"{'B/msg':>7} {'B/msg/B json':>13} {'normalize+seal':>15}")
    for run in runs:
        print(f"{run['mode']:<10} {run['page']:>11,.0f} {run['single']:>13,.0f} "
              f"{run['page'] / run['single']:>12.1f} {run['bytes_per_msg']:>7,.0f} "
              f"{run['bytes_per_msg'] / statistics.mean(sizes):>13.2f} "
              f"{python[run['mode']] * 1e6:>12.1f} us")
    plain, sealed = runs
    print()
    print("page path CPU per message (best round): "
          + "; ".join(f"{run['mode']} client {min(run['client_us']):.1f} us + server "
                      f"{min(run['server_us']):.1f} us = at most "
                      f"{1e6 / (min(run['client_us']) + min(run['server_us'])):,.0f} msg/s "
                      "on one client" for run in runs))
    print(f"script calls per page of {PAGE}: "
          + ", ".join(f"{run['mode']} {run['calls_per_page']:.2f}" for run in runs))
    cpu = {run["mode"]: min(run["client_us"]) + min(run["server_us"]) for run in runs}
    print(f"encrypted/plain throughput: page {sealed['page'] / plain['page']:.2f}, "
          f"single {sealed['single'] / plain['single']:.2f}, by page-path CPU "
          f"{cpu['plain'] / cpu['encrypted']:.2f}; "
          f"memory {sealed['bytes_per_msg'] / plain['bytes_per_msg']:.2f}")
    for run in runs:
        parts = ", ".join(f"{name} {value:,.0f}" for name, value in run["breakdown"].items())
        print(f"MEMORY USAGE per message ({run['mode']}): {parts}")


if __name__ == "__main__":
    main()

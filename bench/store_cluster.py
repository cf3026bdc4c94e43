"""Batch upsert throughput on a 3-master Redis Cluster next to a single redis-server, same run.

Each of ``--processes`` client processes ingests its own namespace in pages of ``--page-size``
new messages (one ``Store.upsert`` call per page, as a reconcile walk does). On the cluster the
namespaces are picked so their hash tags land on different masters, which is how a deployment
shards (one namespace per Metriport account or environment). Both targets are embedded servers
on 127.0.0.1, started and stopped here; each round runs the single server then the cluster, medians count.

    .venv/bin/python bench/store_cluster.py [--processes 3] [--pages 8] [--page-size 500]
                                            [--rounds 5]

Prints one line per round and a summary with the cluster/single ratio. Records are synthetic
(~1 KiB Communication resources, no encryption), built before the clock starts.

Wall-clock throughput on a small machine is bounded by the client processes' CPU, which the
servers share; so each round also reports the CPU seconds the busiest server used
(``INFO cpu``, user + sys, before and after): the cluster's gain in server capacity, whatever
the clients' cores (wall time inside scripts would count time the server sat preempted).
"""

import argparse
import collections
import multiprocessing
import statistics
import time
import uuid

import redis

from cli.dev.embedded import EmbeddedCluster
from cli.dev.embedded import EmbeddedRedis
from inbox.connection import connect
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Store

FILLER = "lorem ipsum dolor sit amet " * 24  # ~650 bytes of synthetic text


def resource(message_id, n):
    return {
        "resourceType": "Communication",
        "id": message_id,
        "status": "completed",
        "sent": "2026-01-01T00:00:00.000Z",
        "meta": {"lastUpdated": "2026-01-01T00:00:00.000Z"},
        "subject": {"reference": f"Patient/bench-patient-{n % 50}"},
        "payload": [{"contentString": FILLER}],
    }


def ingest(job):
    """One client process: store ``pages`` pages in ``namespace``; returns (start, end) times."""
    url, namespace, pages, page_size, barrier = job
    store = Store(Settings(redis_url=url, namespace=namespace))
    batches = [
        [normalize(resource(f"{namespace}-{p:04d}-{i:04d}", i), direction="inbound")
         for i in range(page_size)]
        for p in range(pages)
    ]
    store.stats()  # connect (and read the slot map) before the clock starts
    barrier.wait()
    started = time.perf_counter()
    for records in batches:
        assert store.upsert(records, "reconcile").counts()["created"] == page_size
    return started, time.perf_counter()


def run(url, namespaces, args):
    """Messages per second stored by one process per namespace, all starting together."""
    with multiprocessing.Manager() as manager, multiprocessing.Pool(len(namespaces)) as pool:
        barrier = manager.Barrier(len(namespaces))
        jobs = [(url, ns, args.pages, args.page_size, barrier) for ns in namespaces]
        spans = pool.map(ingest, jobs)
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return len(namespaces) * args.pages * args.page_size / elapsed


def spread_namespaces(client, count, run_id):
    """``count`` namespaces spread evenly over the masters by their hash-tag slots."""
    owners = {span: nodes["primary"][1] for span, nodes in client.cluster_slots().items()}
    per_master = -(-count // len(set(owners.values())))
    placed, chosen = collections.Counter(), []
    for i in range(100_000):
        namespace = f"bench-{run_id}-{i}"
        slot = client.keyslot(RedisKeys(namespace).feed)
        port = next(p for (low, high), p in owners.items() if low <= slot <= high)
        if placed[port] < per_master:
            placed[port] += 1
            chosen.append(namespace)
        if len(chosen) == count:
            return chosen
    raise RuntimeError("Could not spread the namespaces over the masters.")


def flush(ports):
    """Empty the servers before the next round."""
    for port in ports:
        with redis.Redis(host="127.0.0.1", port=port) as direct:
            direct.flushall()


def cpu_seconds(port):
    """CPU seconds (user + sys, main thread and children) the server at ``port`` used so far."""
    with redis.Redis(host="127.0.0.1", port=port) as direct:
        cpu = direct.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def keys_per_master(cluster):
    sizes = []
    for node in cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=node.port) as direct:
            sizes.append(direct.dbsize())
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    with EmbeddedCluster() as cluster, EmbeddedRedis(
        appendonly=True, binary=cluster.server
    ) as single:
        client = connect(cluster.url)
        ports = [single.port] + [n.port for n in cluster.nodes]
        flush(ports)
        rates = {"single": [], "cluster": []}
        busiest = {"single": [], "cluster": []}
        for round_no in range(1, args.rounds + 1):
            namespaces = spread_namespaces(client, args.processes, uuid.uuid4().hex[:6])
            before = {port: cpu_seconds(port) for port in ports}
            rates["single"].append(run(single.url, namespaces, args))
            rates["cluster"].append(run(cluster.url, namespaces, args))
            used = {port: cpu_seconds(port) - before[port] for port in ports}
            busiest["single"].append(used[single.port])
            busiest["cluster"].append(max(used[n.port] for n in cluster.nodes))
            print(f"round {round_no}: single {rates['single'][-1]:,.0f} msg/s, "
                  f"cluster {rates['cluster'][-1]:,.0f} msg/s; busiest server's CPU: "
                  f"single {busiest['single'][-1]:.2f} s, cluster {busiest['cluster'][-1]:.2f} s; "
                  f"keys per master {keys_per_master(cluster)}")
            flush(ports)
        median = {name: statistics.median(values) for name, values in rates.items()}
        load = {name: statistics.median(values) for name, values in busiest.items()}
        print(
            f"summary: {args.processes} processes x {args.pages} pages x "
            f"{args.page_size} messages, "
            f"{cluster.server}: single {median['single']:,.0f} msg/s, 3-master cluster "
            f"{median['cluster']:,.0f} msg/s (ratio {median['cluster'] / median['single']:.2f}); "
            f"busiest server's CPU single {load['single']:.2f} s, cluster "
            f"{load['cluster']:.2f} s (ratio {load['cluster'] / load['single']:.2f})"
        )


if __name__ == "__main__":
    main()

"""The store, the feed and a reconcile-like page walk on a real 3-master Redis Cluster.

One cluster (three redis-server processes in cluster mode on 127.0.0.1) serves the whole module;
each test works in its own namespace, which is one hash tag, hence one slot on one master.
Skipped only where no redis-server/redis-cli pair can build a cluster, and never when ``CI`` is set.
"""

import collections
import concurrent.futures
import copy
import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest
import redis
from rq import SimpleWorker

from cli.dev.embedded import EmbeddedCluster
from conftest import TEST_WEBHOOK_KEY
from conftest import _delete_queue
from conftest import fixture_json
from conftest import raw_client
from conftest import raw_keys
from conftest import reconcile_summary as reconcile_run
from inbox.connection import Connections
from inbox.connection import connect
from inbox.errors import ConfigError
from inbox.errors import StoreUnavailable
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Outcome
from inbox.store import Store
from receiver import create_app
from servers import serving
from simulator import Simulator

pytestmark = pytest.mark.cluster

TEMPLATE = fixture_json("list-messages-page-1.json")["messages"][0]


@pytest.fixture(scope="module")
def cluster():
    """A real 3-master cluster for the module, stopped by pid afterwards."""
    try:
        embedded = EmbeddedCluster()
        embedded.start()
    except (ConfigError, RuntimeError, subprocess.SubprocessError) as exc:
        message = f"no redis-server that runs in cluster mode could build a cluster: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield embedded
    finally:
        embedded.close()


@pytest.fixture(scope="module")
def client(cluster):
    return connect(cluster.url)


@pytest.fixture
def cluster_settings(cluster, client, redis_url):
    """Settings with the store on the cluster and RQ on the session's standalone Redis."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield Settings(redis_url=cluster.url, rq_redis_url=redis_url, namespace=namespace)
    cluster.wait_ok()
    for key in client.scan_iter(match=RedisKeys(namespace).pattern(), count=1000):
        client.delete(key)


@pytest.fixture
def cluster_store(cluster_settings, client):
    return Store(cluster_settings, client=client)


def message(message_id, status="processing", updated="2026-01-01T00:00:00Z", patient=None):
    """A Communication shaped like the fixture page's, with its own id."""
    resource = copy.deepcopy(TEMPLATE)
    resource["id"] = message_id
    resource["status"] = status
    resource["meta"] = {"lastUpdated": updated}
    if patient:
        resource["subject"] = {"reference": f"Patient/{patient}"}
    return normalize(resource, direction="inbound")


def batch(prefix, count, **fields):
    return [message(f"{prefix}-{i:05d}", **fields) for i in range(count)]


def master_of(client, namespace):
    """The port of the master that owns ``namespace``'s hash-tag slot."""
    slot = client.keyslot(RedisKeys(namespace).feed)
    for (low, high), owners in client.cluster_slots().items():
        if low <= slot <= high:
            return owners["primary"][1]
    raise AssertionError(f"slot {slot} is not covered")


def node(cluster, port):
    return next(n for n in cluster.nodes if n.port == port)


def dbsizes(cluster):
    """Keys held by each master, by port (asked of each node directly)."""
    sizes = {}
    for member in cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=member.port) as direct:
            sizes[member.port] = direct.dbsize()
    return sizes


def test_upsert_outcomes_and_feed(cluster_store, client):
    """Created, duplicate and updated on a cluster, with one feed entry per change."""
    first = message("m-1")
    assert cluster_store.upsert([first], "webhook").outcomes == (Outcome.CREATED,)
    assert cluster_store.upsert([first], "reconcile").outcomes == (Outcome.DUPLICATE,)
    changed = message("m-1", status="completed", updated="2026-01-02T00:00:00Z")
    assert cluster_store.upsert([changed], "reconcile").outcomes == (Outcome.UPDATED,)
    stored = cluster_store.get("m-1")
    assert (stored.status, stored.version, stored.first_via, stored.via) == (
        "completed", 2, "webhook", "reconcile")
    events = [fields[b"event"] for _, fields in client.xrange(raw_keys(cluster_store).feed)]
    assert events == [b"created", b"updated"]


def test_batch_of_500_lives_in_one_slot(cluster_store, client):
    """A 500-record batch is one script call; every key of the namespace shares one slot."""
    records = batch("b", 500, patient="p-7")
    result = cluster_store.upsert(records, "reconcile")
    assert result.counts()["created"] == 500
    assert client.xlen(raw_keys(cluster_store).feed) == 500
    stored = cluster_store.get_many([r.id for r in records[:50]] + ["missing"])
    assert [s.id for s in stored[:50]] == [r.id for r in records[:50]] and stored[50] is None
    assert stored[0].resource["id"] == "b-00000"
    keys = list(client.scan_iter(match=raw_keys(cluster_store).pattern(), count=1000))
    assert len(keys) == 500 + 5  # records, idx:all, idx:dir:inbound, idx:patient:p-7, feed, stats
    assert len({client.keyslot(k) for k in keys}) == 1


def test_ids_listing_and_status(cluster_store):
    """Listing walks the index by id on the cluster and a status update applies once."""
    records = batch("l", 120)
    cluster_store.upsert(records, "reconcile")
    walked, start = [], None
    while True:
        index = cluster_store.index_key(direction="inbound")
        page = cluster_store.ids(index, start=start, count=51)
        walked.extend(page[:50])
        if len(page) <= 50:
            break
        start = page[50]
    assert walked == sorted((r.id for r in records), reverse=True)
    assert cluster_store.count(cluster_store.index_key()) == 120
    later = records[0].as_of + 1000
    assert cluster_store.apply_status("l-00000", "failed", later) == Outcome.UPDATED
    assert cluster_store.apply_status("l-00000", "failed", later + 1) == Outcome.DUPLICATE
    assert cluster_store.apply_status("unknown", "failed", later) is None
    assert cluster_store.stats()["created"] == 120


def test_feed_consumer_group_read_and_ack(cluster_store, client):
    """A consumer group reads the feed on the cluster; acked entries leave the pending list."""
    feed = raw_keys(cluster_store).feed
    client.xgroup_create(feed, "downstream", id="0", mkstream=True)
    cluster_store.upsert(batch("f", 30), "webhook")
    [[stream, entries]] = client.xreadgroup("downstream", "c1", {feed: ">"}, count=20)
    assert stream == feed.encode() and len(entries) == 20
    assert client.xack(feed, "downstream", *(entry_id for entry_id, _ in entries[:15])) == 15
    assert client.xpending(feed, "downstream")["pending"] == 5
    [[_, rest]] = client.xreadgroup("downstream", "c1", {feed: ">"}, count=50)
    assert len(rest) == 10
    read = {fields[b"id"] for _, fields in entries + rest}
    assert read == {f"f-{i:05d}".encode() for i in range(30)}
    blocking = Connections(cluster_store.settings).blocking(block_seconds=1)
    assert blocking.xreadgroup("downstream", "c1", {feed: ">"}, count=1, block=300) == []


def test_reconcile_like_page_walk(cluster_store, client):
    """Pages of a walk (overlapping at the edges) store each message once; a re-walk changes nothing."""
    records = batch("r", 1000)
    pages = [records[i:i + 100 + 1] for i in range(0, 1000, 100)]  # each page repeats one id
    first = [cluster_store.upsert(page, "reconcile").counts() for page in pages]
    assert sum(c["created"] for c in first) == 1000
    assert sum(c["duplicates"] for c in first) == 9
    again = [cluster_store.upsert(page, "reconcile").counts() for page in pages]
    assert sum(c["duplicates"] for c in again) == 1009
    assert client.xlen(raw_keys(cluster_store).feed) == 1000
    assert cluster_store.count(cluster_store.index_key()) == 1000


def test_two_namespaces_on_different_masters_ingest_concurrently(cluster, client, redis_url):
    """Two namespaces on different masters ingest in parallel; DBSIZE per master shows the split."""
    run = uuid.uuid4().hex[:8]
    chosen = {}
    for i in range(200):
        namespace = f"acct-{run}-{i}"
        chosen.setdefault(master_of(client, namespace), namespace)
        if len(chosen) == 2:
            break
    (port_a, ns_a), (port_b, ns_b) = chosen.items()
    stores = {ns: Store(Settings(redis_url=cluster.url, rq_redis_url=redis_url, namespace=ns))
              for ns in (ns_a, ns_b)}
    before = dbsizes(cluster)

    def ingest(namespace, count):
        for start in range(0, count, 100):
            stores[namespace].upsert(batch(f"{namespace}-{start}", 100), "reconcile")
        return namespace

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            done = list(pool.map(ingest, (ns_a, ns_b), (600, 300)))
        assert done == [ns_a, ns_b]
        after = dbsizes(cluster)
        growth = {port: after[port] - before[port] for port in after}
        other = (set(growth) - {port_a, port_b}).pop()
        assert growth == {port_a: 600 + 5, port_b: 300 + 5, other: 0}  # + 3 indexes, feed, stats
        assert stores[ns_a].count(stores[ns_a].index_key()) == 600
        assert stores[ns_b].count(stores[ns_b].index_key()) == 300
    finally:
        for namespace in (ns_a, ns_b):
            for key in client.scan_iter(match=RedisKeys(namespace).pattern(), count=1000):
                client.delete(key)


def test_master_restart_loses_no_acknowledged_message(cluster, cluster_store, client):
    """A master restarted on its port: writes fail meanwhile, then resume; nothing acked is lost."""
    feed = raw_keys(cluster_store).feed
    client.xgroup_create(feed, "downstream", id="0", mkstream=True)
    acked = cluster_store.upsert(batch("a", 200), "webhook")
    assert acked.counts()["created"] == 200
    [[_, delivered]] = client.xreadgroup("downstream", "c1", {feed: ">"}, count=50)
    client.xack(feed, "downstream", *(entry_id for entry_id, _ in delivered[:20]))
    owner = node(cluster, master_of(client, cluster_store.settings.namespace))

    owner.stop()
    try:
        with pytest.raises(StoreUnavailable):
            cluster_store.upsert(batch("lost", 10), "webhook")
    finally:
        owner.start()
        cluster.wait_ok()

    resumed = cluster_store.upsert(batch("a", 200) + batch("b", 100), "webhook")
    assert resumed.counts() == {"created": 100, "updated": 0, "duplicates": 200, "stale": 0}
    assert cluster_store.count(cluster_store.index_key()) == 300
    assert all(cluster_store.get_many([f"a-{i:05d}" for i in range(200)]))
    assert cluster_store.get("lost-00000") is None
    assert client.xlen(feed) == 300
    assert client.xpending(feed, "downstream")["pending"] == 30
    [[_, rest]] = client.xreadgroup("downstream", "c1", {feed: ">"}, count=500)
    assert len(rest) == 250


def test_selfcheck_reaches_the_cluster(cluster, redis_url):
    """`metriport-inbox selfcheck` with a cluster store and a standalone queue pings the cluster."""
    env = dict(os.environ, REDIS_URL=cluster.url, RQ_REDIS_URL=redis_url)
    command = pathlib.Path(sys.executable).with_name("metriport-inbox")
    done = subprocess.run([str(command), "selfcheck"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert "redis: ok" in done.stdout


def _walking(settings, sim, **changes):
    """``settings`` pointed at the simulator, pages of 100, the test webhook key."""
    return settings.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=100,
                            webhook_keys=(TEST_WEBHOOK_KEY,), **changes)


def _assert_store_equals_simulator(store, sim):
    """Every simulator message stored once, as the simulator has it now, announced once."""
    ids = sim.mailbox.ids()
    assert store.count(store.index_key()) == len(ids)
    for stored in store.get_many(ids):
        assert stored.resource == sim.mailbox.get(stored.id)
    created = [f[b"id"] for _, f in raw_client(store).xrange(raw_keys(store).feed) if f[b"event"] == b"created"]
    assert sorted(created) == sorted(i.encode() for i in ids)


@pytest.fixture
def receiver_url(cluster_settings):
    """The receiver app (store on the cluster, RQ on the standalone Redis) on a real WSGI server."""
    app = create_app(cluster_settings.replace(webhook_keys=(TEST_WEBHOOK_KEY,)))
    try:
        with serving(app) as url:
            yield url
    finally:
        _delete_queue(cluster_settings)


def test_real_reconciler_and_fetch_job_on_the_cluster(cluster_settings, client, receiver_url,
                                                      monkeypatch):
    """The real reconciler on a 3-master cluster: a full walk cut by its budget, resumed from the
    checkpoint, an incremental walk after status changes and new messages, status webhooks, and
    a fetch job run by a real RQ worker; the store ends equal to the simulator each time."""
    with Simulator(seed=31, messages=0, webhook_url=receiver_url,
                   webhook_key=TEST_WEBHOOK_KEY) as sim:
        sim.mailbox.add(450, "inbound")
        sim.mailbox.add(250, "outbound", pending=True)
        settings = _walking(cluster_settings, sim)
        store = Store(settings, client=client)

        cut = reconcile_run(settings.replace(reconcile_request_budget=3), mode="full")
        assert (cut["outcome"], cut["pages"]) == ("budget_exhausted", 3)
        assert client.get(RedisKeys(settings.namespace).reconcile_cursor("inbound")) is not None
        resumed = reconcile_run(settings, mode="full")
        assert resumed["outcome"] == "completed", resumed
        assert resumed["directions"]["inbound"]["resumed"] is True
        assert resumed["round_trips"] < resumed["pages"] + 10
        _assert_store_equals_simulator(store, sim)

        # status webhooks for some, new messages and status changes for the walk to find
        by_webhook = sim.mailbox.update(count=20)
        assert sim.deliver_webhooks(by_webhook).succeeded == 20
        sim.mailbox.update(count=30)
        sim.mailbox.add(40, "inbound")
        incremental = reconcile_run(settings, mode="incremental")
        assert incremental["outcome"] == "completed", incremental
        assert incremental["created"] == 40
        # older messages whose status changed are found by the next full walk
        full = reconcile_run(settings, mode="full")
        assert (full["outcome"], full["created"], full["updated"]) == ("completed", 0, 30)
        _assert_store_equals_simulator(store, sim)

        # a status webhook for a message the store does not hold yet: the receiver queues a fetch
        unknown = sim.mailbox.add(1, "outbound", pending=False)
        assert sim.deliver_webhooks(unknown).succeeded == 1
        assert store.get(unknown[0]) is None
        for name, value in (("REDIS_URL", settings.redis_url), ("RQ_REDIS_URL", settings.rq_redis_url),
                            ("INBOX_NAMESPACE", settings.namespace),
                            ("METRIPORT_API_KEY", sim.api_key), ("METRIPORT_API_URL", sim.url)):
            monkeypatch.setenv(name, value)
        queue = Connections(settings).queue
        assert SimpleWorker([settings.queue_name], connection=queue).work(burst=True)
        assert store.get(unknown[0]).first_via == "fetch"
        _assert_store_equals_simulator(store, sim)
        entries = [f for _, f in client.xrange(raw_keys(store).feed)]
        updated = collections.Counter(f[b"id"] for f in entries if f[b"event"] == b"updated")
        assert len(updated) == 50 and set(updated.values()) == {1}


def test_reconcile_command_on_the_cluster(cluster_settings, client):
    """`metriport-inbox reconcile --once --full --json` with REDIS_URL=redis+cluster://… walks
    every page (the reported failure stopped after the first), exit 0, store equal to the simulator."""
    with Simulator(seed=32, messages=520) as sim:
        env = dict(os.environ, REDIS_URL=cluster_settings.redis_url,
                   RQ_REDIS_URL=cluster_settings.rq_redis_url,
                   INBOX_NAMESPACE=cluster_settings.namespace, METRIPORT_API_KEY=sim.api_key,
                   METRIPORT_API_URL=sim.url, RECONCILE_PAGE_SIZE="100")
        command = pathlib.Path(sys.executable).with_name("metriport-inbox")
        done = subprocess.run([str(command), "reconcile", "--once", "--full", "--json"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.splitlines()[-1])
        assert (summary["outcome"], summary["created"]) == ("completed", 520)
        assert "Traceback" not in done.stderr
        _assert_store_equals_simulator(Store(cluster_settings, client=client), sim)


def test_whole_cluster_down_is_store_unavailable_then_recovers(cluster, cluster_store):
    """With every master stopped calls raise StoreUnavailable, not a redis-py error; then recover."""
    cluster_store.upsert(batch("d", 10), "webhook")
    for member in cluster.nodes:
        member.stop()
    try:
        with pytest.raises(StoreUnavailable):
            cluster_store.stats()
        with pytest.raises(StoreUnavailable):
            cluster_store.upsert(batch("e", 10), "webhook")
    finally:
        for member in cluster.nodes:
            member.start()
        cluster.wait_ok()
    assert cluster_store.count(cluster_store.index_key()) == 10
    assert cluster_store.upsert(batch("e", 10), "webhook").counts()["created"] == 10


def test_backup_on_a_cluster_restores_into_another_namespace(cluster_store, client, tmp_path,
                                                              cluster_settings):
    """backup and restore take a redis+cluster:// client: the snapshot of one namespace (one
    slot) comes back in another namespace (possibly on another master) the same."""
    from inbox.backup import backup
    from inbox.backup import restore
    from inbox.feed import Consumer

    cluster_store.upsert(batch("bk", 120, patient="p-1"), via="reconcile")
    cluster_store.upsert([message("bk-00001", status="completed",
                                  updated="2026-02-01T00:00:00Z", patient="p-1")], via="reconcile")
    consumer = Consumer(cluster_settings, "g", "c", connections=Connections(cluster_settings))
    consumer.ack(*consumer.read(count=50)[:30])
    taken = backup(client, cluster_settings.namespace, tmp_path / "b")
    assert (taken.records, taken.feed_entries) == (120, 121)
    other = cluster_settings.replace(namespace=f"test-{uuid.uuid4().hex[:12]}")
    try:
        put = restore(client, other.namespace, tmp_path / "b", Store(other, client=client).reindex)
        assert (put.records, put.indexed, put.feed_entries) == (120, 120, 121)
        copy_store = Store(other, client=client)
        for index in (cluster_store.index_key(), cluster_store.index_key(patient="p-1")):
            assert copy_store.ids(index.replace(cluster_settings.namespace, other.namespace),
                                  count=500) == cluster_store.ids(index, count=500)
        assert copy_store.get("bk-00001").status == "completed"
        groups = [(g["name"], g["pending"], g["last-delivered-id"])
                  for g in client.xinfo_groups(RedisKeys(other.namespace).feed)]
        assert groups == [(b"g", 20, client.xinfo_groups(RedisKeys(cluster_settings.namespace).feed)[0][
            "last-delivered-id"])]
    finally:
        for key in client.scan_iter(match=RedisKeys(other.namespace).pattern(), count=1000):
            client.delete(key)

"""Backup and restore: a store filled by the simulator, backed up with the command, restored into
a fresh redis-server, must serve the same mirror, the same feed positions, and take the next
incremental reconciliation exactly as the original does."""

import base64
import gzip
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from cli.dev.embedded import EmbeddedRedis
from inbox.connection import Connections
from inbox.crypto import keygen
from inbox.feed import Consumer
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Delivery
from inbox.store import Outcome
from inbox.store import Store
from inbox.store import Via
from receiver import create_app
from simulator import Simulator
from simulator.data import iso
from worker.reconcile import run

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))
READER = "reader-key"


def reconcile_run(settings, mode):
    """One reconciliation run's record (``Run.as_dict``)."""
    return run(settings, mode=mode).as_dict()


@pytest.fixture
def sim():
    with Simulator(seed=5, messages=0) as simulator:
        simulator.mailbox.add(180, "inbound")
        simulator.mailbox.add(120, "outbound")
        yield simulator


@pytest.fixture
def target():
    with EmbeddedRedis() as server:
        yield server


def _env(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRIPORT_", "INBOX_"))}
    env.update(REDIS_URL=settings.redis_url, INBOX_NAMESPACE=settings.namespace)
    return env  # no INBOX_ENCRYPTION_KEYS: backup and restore never open a record


def _cli(args, settings):
    return subprocess.run([COMMAND, *args], env=_env(settings), capture_output=True, text=True,
                          timeout=120)


def _fill(source, sim):
    """Reconcile, webhooks with ledger entries, status changes, two consumer groups and a dead
    letter: every kind of key a running store has."""
    reconcile = source.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=50)
    assert reconcile_run(reconcile, mode="full")["created"] == 300
    store = Store(source)
    for message_id in sim.mailbox.ids("inbound")[:5]:
        record = normalize(sim.mailbox.get(message_id), "inbound")
        store.upsert([record], via=Via.WEBHOOK, delivery=Delivery(str(uuid.uuid4()), "h" * 32))
    sim.mailbox.update(count=10)
    assert reconcile_run(reconcile, mode="full")["updated"] == 10
    billing = Consumer(source, "billing", "billing-1")
    entries = billing.read(count=100)
    billing.ack(*entries[:60])
    billing.dead_letter(entries[60], "bad_input")
    Consumer(source, "late", from_start=False).ensure_group()
    return reconcile


def _mirror(settings):
    """Every page of the mirror listing (all, one direction, one patient) and a few messages."""
    client = create_app(settings.replace(inbox_api_keys=(READER,))).test_client()
    headers = {"x-api-key": READER}
    pages = []
    patient = None
    for query in ("count=40", "count=40&direction=outbound", None):
        if query is None:
            query = f"count=10&patientId={patient}"
        url = f"/medical/v1/message?{query}"
        while url:
            body = client.get(url, headers=headers).get_json()
            pages.append(body)
            patient = patient or next(
                (m["subject"]["reference"].split("/")[1] for m in body["messages"]
                 if "subject" in m), None)
            url = body["meta"].get("nextPage", "").replace("http://localhost", "")
    ids = [m["id"] for m in pages[0]["messages"][:3]]
    singles = [client.get(f"/medical/v1/message/{i}", headers=headers).get_json() for i in ids]
    return pages, singles


def _feed_state(settings):
    client, keys = Connections(settings).store, RedisKeys(settings.namespace)
    groups = sorted((g["name"], g["consumers"], g["pending"], g["last-delivered-id"],
                     g.get("entries-read"), g.get("lag")) for g in client.xinfo_groups(keys.feed))
    pending = [(p["message_id"], p["consumer"], p["times_delivered"])
               for p in client.xpending_range(keys.feed, "billing", "-", "+", 1000)]
    return {
        "entries": client.xrange(keys.feed),
        "groups": groups,
        "pending": pending,
        "dead": client.xrange(keys.deadletter),
        "stats": client.hgetall(keys.stats),
        "runs": client.lrange(keys.reconcile_runs, 0, -1),
        "state": client.hgetall(keys.reconcile_state),
    }


def _indexes(settings):
    client, keys = Connections(settings).store, RedisKeys(settings.namespace)
    names = sorted(client.scan_iter(match=keys.pattern().replace("*", "idx:*"), count=1000))
    return {name[len(keys.prefix) + 1:]: client.zrange(name, 0, -1) for name in names}


def test_backup_restores_into_a_fresh_server_exactly(settings, sim, target, tmp_path):
    kid_key = keygen("bk")
    source = settings.replace(encryption_keys=Settings.from_env(
        {"INBOX_ENCRYPTION_KEYS": kid_key}).encryption_keys)
    reconcile = _fill(source, sim)
    path = tmp_path / "inbox.backup"

    done = _cli(["backup", str(path)], source)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backup of namespace {source.namespace} to {path}: ")
    assert ", 300 records, feed 310 entries up to " in done.stdout
    assert not path.with_name("inbox.backup.partial").exists()
    with gzip.open(path, "rt") as lines:
        text = lines.read()
    for message_id in sim.mailbox.ids()[:20]:  # sealed: no content in the clear
        assert sim.mailbox.get(message_id)["payload"][0]["contentString"][:30] not in text
    assert "rq:" not in text and "reconcile:lock" not in text

    restored = source.replace(redis_url=target.url)
    done = _cli(["restore", str(path)], restored)
    assert done.returncode == 0, done.stderr
    assert "300 records, 300 indexed" in done.stdout

    assert _mirror(restored) == _mirror(source)
    assert _indexes(restored) == _indexes(source)
    assert _feed_state(restored) == _feed_state(source)
    keys = RedisKeys(source.namespace)
    one = keys.msg(sim.mailbox.ids()[0])
    sealed = Connections(source).store.hget(one, "r")
    assert Connections(restored).store.hget(one, "r") == sealed and not sealed.startswith(b"{")
    assert not Connections(restored).store.keys("rq:*")

    # the next incremental run and the consumers go on exactly alike
    sim.mailbox.add(30, "inbound")
    sim.mailbox.update(count=3)
    results = []
    for settings_ in (source, restored):
        sim.reset_counts()
        summary = reconcile_run(reconcile.replace(redis_url=settings_.redis_url), mode="incremental")
        new = Consumer(settings_, "billing", "billing-1").read(count=500)
        late = Consumer(settings_, "late").read(count=500)
        results.append((
            {k: summary[k] for k in ("outcome", "mode", "pages", "seen", "created", "updated",
                                     "duplicates")},
            dict(sim.requests),
            [(e.event, e.message_id, e.version) for e in new],
            [(e.event, e.message_id, e.version) for e in late],
        ))
    assert results[0] == results[1]
    assert results[0][0]["mode"] == "incremental" and results[0][0]["created"] == 30
    assert len(results[0][3]) == 33  # the late group sees exactly the changes after the backup
    assert _mirror(restored) == _mirror(source)


def test_restore_refuses_a_namespace_that_holds_keys(settings, sim, target, tmp_path):
    _fill(settings, sim)
    path = tmp_path / "b"
    assert _cli(["backup", str(path)], settings).returncode == 0
    restored = settings.replace(redis_url=target.url)
    assert _cli(["restore", str(path)], restored).returncode == 0
    client = Connections(restored).store
    before = client.dbsize()
    again = _cli(["restore", str(path)], restored)
    assert again.returncode == 1
    assert again.stderr.startswith("error: restore_target_not_empty: Namespace ")
    assert client.dbsize() == before


@pytest.mark.parametrize("damage, code", [
    (lambda data: data[: len(data) * 2 // 3], "backup_truncated"),
    (lambda data: data.replace(b'"ttl": 0', b'"ttl": 1', 1), "backup_corrupt"),
    (lambda data: b"not a backup at all", "backup_unreadable"),
])
def test_a_damaged_file_restores_nothing(settings, sim, target, tmp_path, damage, code):
    _fill(settings, sim)
    path = tmp_path / "b"
    assert _cli(["backup", str(path)], settings).returncode == 0
    text = gzip.decompress(path.read_bytes())
    raw = damage(text)
    path.write_bytes(raw if raw.startswith(b"not") else gzip.compress(raw))
    restored = settings.replace(redis_url=target.url)
    done = _cli(["restore", str(path)], restored)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {code}: ")
    assert Connections(restored).store.dbsize() == 0


def test_backup_taken_under_writes_is_one_instant(settings, sim, target, tmp_path):
    """Status changes land while the backup runs: in the restored copy every record's version is
    the last one its feed announces (no record newer or older than the feed)."""
    import threading
    import time

    from inbox.backup import backup
    from inbox.backup import restore

    _fill(settings, sim)
    store = Store(settings)
    ids = sim.mailbox.ids()
    stop, written = threading.Event(), []

    def writer():
        step = 0
        while not stop.is_set():
            message_id = ids[step % len(ids)]
            resource = dict(sim.mailbox.get(message_id), note=[{"text": f"edit {step}"}])
            resource["meta"] = {"lastUpdated": iso(int(time.time() * 1000) + step)}
            outcome = store.upsert([normalize(resource, sim.mailbox.direction(message_id))],
                                   via=Via.RECONCILE).outcomes[0]
            assert outcome == Outcome.UPDATED
            written.append(message_id)
            step += 1
            # paced (hundreds of writes a second, far above Metriport's): a writer in a tight
            # loop moves the feed between every two calls, and the backup gives up by design
            # (backup_busy, docs/operations.md)
            time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        before = len(written)
        backup(Connections(settings).store, settings.namespace, tmp_path / "b")
        during = len(written) - before
    finally:
        stop.set()
        thread.join()
    assert during > 0  # writes landed while the backup ran
    restored = settings.replace(redis_url=target.url)
    restore(Connections(restored).store, settings.namespace, tmp_path / "b",
            Store(restored).reindex)
    announced = {}
    for entry in Connections(restored).store.xrange(RedisKeys(settings.namespace).feed):
        fields = {k.decode(): v.decode() for k, v in entry[1].items()}
        announced[fields["id"]] = int(fields["version"])
    versions = {m.id: m.version for m in Store(restored).get_many(ids)}
    assert versions == announced


def _small_backup(settings, tmp_path):
    """A backup of a few webhook-stored messages (the feed and counters come along)."""
    store = Store(settings)
    store.upsert([normalize(resource) for resource in _messages(3)], via=Via.WEBHOOK)
    path = tmp_path / "b"
    assert _cli(["backup", str(path)], settings).returncode == 0
    return path


def _messages(count):
    with Simulator(seed=9, messages=count) as simulator:
        return [simulator.mailbox.get(i) for i in simulator.mailbox.ids("inbound")
                + simulator.mailbox.ids("outbound")]


def _rewrite(path, edit):
    """Apply ``edit`` to the decoded lines and write the file back with a matching trailer."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    body = edit(lines[:-1])
    digest = hashlib.sha256("".join(body[1:]).encode()).hexdigest()
    trailer = {**json.loads(lines[-1]), "keys": len(body) - 1, "sha256": digest}
    path.write_bytes(gzip.compress(("".join(body) + json.dumps(trailer) + "\n").encode()))


def test_restore_onto_an_older_redis_writes_nothing_and_says_why(settings, target, tmp_path):
    """DUMP payloads restore only on the same or a newer Redis: a file from a newer server is
    refused before any write, with one line and no traceback."""
    path = _small_backup(settings, tmp_path)

    def newer(lines):
        header = json.loads(lines[0])
        return [json.dumps({**header, "redis": "99.0.0"}) + "\n", *lines[1:]]

    _rewrite(path, newer)
    done = _cli(["restore", str(path)], settings.replace(redis_url=target.url))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: restore_redis_too_old: ")
    assert "Redis 99.0.0" in done.stderr and "Traceback" not in done.stderr
    assert Connections(settings.replace(redis_url=target.url)).store.dbsize() == 0


def test_a_payload_redis_refuses_ends_with_one_line_and_no_payload(settings, target, tmp_path):
    """A payload that passes the file's checksum but not Redis's (written by another tool, or a
    server whose DUMP format this one does not read): a clear error naming Redis's reason, never
    a traceback quoting the payload."""
    path = _small_backup(settings, tmp_path)
    canary = b"CANARY-PAYLOAD-BYTES"

    def broken(lines):
        entry = json.loads(lines[1])
        entry["dump"] = base64.b64encode(canary).decode()
        return [lines[0], json.dumps(entry) + "\n", *lines[2:]]

    _rewrite(path, broken)
    done = _cli(["restore", str(path)], settings.replace(redis_url=target.url))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: restore_refused: Redis refused a key of the backup (")
    assert "Traceback" not in done.stderr and "CANARY" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

"""The service as a running system, in each topology docs/scaling.md documents: the Procfile's
``web``, ``worker`` and ``clock`` as real subprocesses against the simulator, the whole loop
(webhooks with drops and duplicates, scheduled runs every 2 s, status changes, new messages) and,
in the same test, the faults an operator meets, each handled the way docs/operations.md says:

1. the worker kill -9'ed in the middle of a walk (a new worker; the next run resumes);
2. every Redis server stopped for 10 s in the middle of a walk, while webhooks arrive and the
   clock runs (nothing restarted: the processes reconnect, the clock resumes its schedule, the
   interrupted run frees its lock once Redis is back and the next run resumes the walk);
3. encryption switched on, then the key rotated, while the clock runs (restart with the new key
   ring, ``metriport-inbox rekey``): no feed entry at all;
4. the store's Redis at maxmemory (503 ``store_full``, not ready; then room made).

Each test ends by comparing the store and the feed with the simulator: every message stored as
Metriport lists it, one ``created`` entry per message, ``updated`` entries only for messages
whose status really changed.
"""

import signal
import subprocess
import threading
import time

import pytest
import requests

from chaos.harness import alive
from chaos.harness import descendants
from chaos.harness import feed_events
from chaos.harness import kill9
from chaos.harness import wait_until
from conftest import TEST_WEBHOOK_KEY
from inbox.connection import Connections
from inbox.crypto import keygen
from inbox.feed import Feed
from inbox.rediskeys import RedisKeys
from inbox.runs import RunLog
from inbox.settings import Settings
from inbox.store import Store
from simulator import Faults
from simulator import Simulator
from system.harness import Deployment

MESSAGES = 300
PAGE = 50
#: the scheduled incremental run, seconds
INTERVAL = 2
OUTAGE_SECONDS = 10


TOPOLOGIES = ["single", "cluster"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_deployment_survives_ordinary_operations(topology, processes):
    with Simulator(seed=21, messages=MESSAGES, webhook_key=TEST_WEBHOOK_KEY) as sim:
        deployment = Deployment(topology, processes, sim, RECONCILE_INTERVAL=INTERVAL,
                                RECONCILE_PAGE_SIZE=PAGE)
        sim.sender.url = deployment.url + "/webhook"
        try:
            changed = _operate(deployment, sim)
            deployment.stop()
        finally:
            processes.stop_all()
            deployment.close()
    for process in processes.started:
        if process.name.startswith(("web", "clock")):
            assert "Traceback" not in process.log(), process.log()
    print(f"{topology}: {len(sim.mailbox)} messages, {len(changed)} status changes")


def _operate(deployment, sim):
    """The loop and the faults, in order; the ids whose status changed at Metriport."""
    deployment.start()
    sim.deliver_webhooks(drop=0.2, duplicate=0.1, shuffle=True, concurrency=4)
    _converge(deployment, sim)

    # status changes and new messages, of which webhooks announce only some; the worker is
    # killed in the middle of the walk that repairs the rest
    changed = set(sim.mailbox.update(count=20))
    announced = sim.mailbox.add(40)
    unannounced = sim.mailbox.add(250)
    sim.deliver_webhooks(sorted(changed) + announced, drop=0.2, duplicate=0.1, concurrency=4)
    sim.faults = Faults(slow=1.0, delay_max=0.3, seed=21)
    _kill_worker_mid_walk(deployment)
    sim.faults = Faults(seed=21)
    _converge(deployment, sim)
    assert unannounced

    # every Redis down for 10 s in the middle of a walk, while webhooks arrive and the clock
    # runs; nothing restarted
    sim.mailbox.add(200)
    arriving = sim.webhook_deliveries(sim.mailbox.add(60, "inbound"))
    sender = threading.Thread(target=sim.sender.deliver, args=(arriving,),
                              kwargs=dict(delay=0.4, concurrency=2))
    clock = deployment.running["clock"]
    sim.faults = Faults(slow=1.0, delay_max=0.3, seed=22)
    sender.start()
    _wait_mid_walk(deployment.store)
    deployment.outage(OUTAGE_SECONDS)
    sim.faults = Faults(seed=22)
    back = time.time()
    sender.join(60)
    wait_until(lambda: _runs_started_after(deployment, back) >= 2, timeout=60,
               what="two scheduled runs after the outage")
    assert "lost" in clock.log() and "back after" in clock.log(), clock.log()
    sim.sender.retry_failed()
    _converge(deployment, sim)

    # encryption on, then rotated, while the clock runs: not one feed entry
    feed = Feed(deployment.store.settings)
    entries = feed.length()
    first = keygen("k1")
    _switch_keys(deployment, first)
    second = keygen("k2")
    _switch_keys(deployment, f"{second},{first}")
    assert feed.length() == entries
    _converge(deployment, sim)

    # the store's Redis full: 503 store_full and not ready, then room made, then retried
    with deployment.full():  # the messages appear while it is full: no run stores them first
        refused = sim.webhook_deliveries(sim.mailbox.add(10, "inbound"))
        sim.sender.deliver(refused)
        readiness = requests.get(deployment.url + "/readyz", timeout=5)
    assert {d.status_code for d in refused} == {503}
    assert (readiness.status_code, readiness.json()["checks"]["redis"]) == (503, "full")
    sim.sender.retry_failed()
    assert all(d.outcome == "success" for d in refused)
    _converge(deployment, sim)
    _assert_feed(deployment.store, sim, changed)
    return changed


def _kill_worker_mid_walk(deployment):
    """kill -9 the worker (and its work horse) once a walk has saved a checkpoint; the operator
    starts a new one and frees the dead run's lock instead of waiting for its expiry."""
    store = deployment.store
    _wait_mid_walk(store)
    worker = deployment.running.pop("worker")
    below = descendants(worker.pid)
    kill9(worker.pid)
    for pid in below:
        kill9(pid)
    worker.stop()
    assert worker.popen.returncode == -signal.SIGKILL
    wait_until(lambda: not [pid for pid in below if alive(pid)], timeout=10,
               what="the work horse to die")
    Connections(store.settings).store.delete(RedisKeys(store.settings.namespace).reconcile_lock)
    deployment.start("worker")


def _wait_mid_walk(store):
    """Until a walk has stored a page and checkpointed the next one."""
    wait_until(lambda: any(store.checkpoint(d) for d in ("inbound", "outbound")), timeout=60,
               interval=0.01, what="a walk in progress")


def _runs_started_after(deployment, moment):
    runs = RunLog(deployment.store).recent(limit=20)
    return sum(run.started >= _iso(moment) for run in runs)


def _iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _switch_keys(deployment, ring):
    """Deploy a new key ring: restart every process with it, run ``rekey``, let the clock run."""
    deployment.extra_env["INBOX_ENCRYPTION_KEYS"] = ring
    deployment.restart()
    # the restarted clock does not start a full walk: the last one is recent
    clock = deployment.running["clock"]
    wait_until(lambda: "next full run in" in clock.log(), timeout=30, what="the clock's plan")
    env = deployment.env()
    done = subprocess.run(["metriport-inbox", "rekey"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    deployment.store = Store(Settings.from_env(env))
    runs = len(RunLog(deployment.store).recent(limit=100))
    wait_until(lambda: len(RunLog(deployment.store).recent(limit=100)) >= min(runs + 2, 100),
               timeout=60, what="two scheduled runs with the new keys")


def _converge(deployment, sim, timeout=90):
    """Wait until the store equals the simulator: every message, each exactly as listed."""
    wait_until(lambda: _equal(deployment.store, sim.mailbox), timeout=timeout, interval=0.5,
               what="the store to equal the simulator")


def _equal(store, mailbox):
    expected = mailbox.ids()
    if store.count(store.index_key()) != len(expected):
        return False
    for start in range(0, len(expected), 500):
        chunk = expected[start:start + 500]
        for message_id, stored in zip(chunk, store.get_many(chunk)):
            if stored is None or stored.resource != mailbox.get(message_id):
                return False
    return True


def _assert_feed(store, sim, changed):
    events = feed_events(store)
    created = {i: n for (event, i), n in events.items() if event == "created"}
    updated = {i for (event, i) in events if event == "updated"}
    assert set(created) == set(sim.mailbox.ids())
    assert set(created.values()) == {1}, "a message was announced twice"
    assert updated <= changed, f"{len(updated - changed)} spurious updated entries"
    assert {event for event, _ in events} <= {"created", "updated"}

"""A reconciliation run kill -9ed in the middle of its walk loses nothing and repeats nothing.

The run is killed twice over: as a foreground ``reconcile --once --full`` and as an RQ job inside
``metriport-inbox worker`` (how the clock's runs execute).
"""

import math

import pytest
from rq import Queue

from chaos.harness import BIN
from chaos.harness import alive
from chaos.harness import assert_store_equals_mailbox
from chaos.harness import created_per_message
from chaos.harness import descendants
from chaos.harness import environment
from chaos.harness import kill9
from chaos.harness import reconcile_command
from chaos.harness import summary_of
from chaos.harness import wait_until
from inbox.connection import Connections
from inbox.rediskeys import RedisKeys
from inbox.runs import RunLog
from inbox.store import Store
from simulator import Faults
from simulator import Simulator

pytestmark = pytest.mark.chaos

MESSAGES = 1200
PAGE = 50
WORKER = [BIN / "metriport-inbox", "worker"]


class Foreground:
    """Runs as ``metriport-inbox reconcile --once --full --json``; the summary is its last line."""

    def __init__(self, processes, settings, env):
        self.processes, self.env = processes, env

    def start(self, name):
        return self.processes.start(name, reconcile_command(), self.env)

    def finish(self, name):
        run = self.start(name)
        run.wait(60)
        return summary_of(run)


class RQJob:
    """Runs as ``worker.jobs.reconcile`` jobs in RQ workers; the summary is the run record."""

    def __init__(self, processes, settings, env):
        self.processes, self.env = processes, env
        self.store = Store(settings)
        self.queue = Queue(settings.queue_name, connection=Connections(settings).queue)

    def start(self, name):
        self.queue.enqueue("worker.jobs.reconcile", mode="full")
        return self.processes.start(name, WORKER, self.env)

    def finish(self, name):
        self.queue.enqueue("worker.jobs.reconcile", mode="full")
        assert self.processes.start(name, [*WORKER, "--burst"], self.env).wait(60) == 0
        return RunLog(self.store).recent(limit=1)[0].as_dict()


@pytest.mark.parametrize("runner", [Foreground, RQJob], ids=["reconcile-once", "rq-worker"])
def test_killed_walk_resumes_from_checkpoint(chaos_settings, processes, runner):
    """After kill -9 mid-walk the lock holds off a second run until it expires; the next run
    resumes from the checkpoint with fewer requests than a full walk, and every message ends
    stored once with exactly one ``created`` feed entry."""
    store = Store(chaos_settings)
    # every page a little slow, so the walk is long enough to be killed in the middle
    with Simulator(seed=9, messages=MESSAGES, faults=Faults(slow=1.0, delay_max=0.1, seed=9)) as sim:
        settings = chaos_settings.replace(api_url=sim.url, api_key=sim.api_key)
        runs = runner(processes, settings, environment(settings, RECONCILE_PAGE_SIZE=PAGE))
        inbound = len(sim.mailbox.ids("inbound"))
        full_walk_pages = sum(math.ceil(len(sim.mailbox.ids(d)) / PAGE) for d in ("inbound", "outbound"))

        first = runs.start("first")
        # kill once several inbound pages are stored, well before the inbound walk ends
        wait_until(lambda: store.count(store.index_key()) >= 6 * PAGE or not first.running,
                   timeout=30, what="the first pages to be stored")
        assert first.running, "the walk ended before it could be killed"
        # the whole process tree, as a crash or the OOM killer would: RQ walks in a forked child
        tree = descendants(first.pid)
        for pid in tree:
            kill9(pid)
        kill9(first.pid)
        assert first.wait(5) == -9
        wait_until(lambda: not any(alive(pid) for pid in tree), timeout=5, what="the work horse to die")
        stored_at_kill = store.count(store.index_key())
        assert stored_at_kill < inbound
        assert store.checkpoint("inbound") is not None

        # the dead run's lock is still there: a run now is skipped, never concurrent
        assert runs.finish("skipped")["outcome"] == "skipped"

        # the lock expires by itself (LOCK_TTL_MS); make that happen now instead of in minutes
        client, lock = Connections(store.settings).store, RedisKeys(store.settings.namespace).reconcile_lock
        assert client.pexpire(lock, 1)
        wait_until(lambda: not client.exists(lock), timeout=5,
                   what="the lock to expire")
        sim.reset_counts()
        summary = runs.finish("second")

    assert summary["outcome"] == "completed"
    assert summary["directions"]["inbound"]["resumed"] is True
    assert summary["directions"]["outbound"]["resumed"] is False
    assert summary["requests"] == sim.requests["list"]
    assert summary["requests"] < full_walk_pages
    assert summary["created"] == MESSAGES - stored_at_kill
    assert store.checkpoint("inbound") is None
    assert_store_equals_mailbox(store, sim.mailbox)
    created = created_per_message(store)
    assert len(created) == MESSAGES
    assert set(created.values()) == {1}

"""A reconciliation run kill -9ed in the middle of its walk loses nothing and repeats nothing."""

import math

import pytest

from chaos.harness import assert_store_equals_mailbox
from chaos.harness import created_per_message
from chaos.harness import environment
from chaos.harness import kill9
from chaos.harness import reconcile_command
from chaos.harness import summary_of
from chaos.harness import wait_until
from inbox.store import Store
from simulator import Faults
from simulator import Simulator

pytestmark = pytest.mark.chaos

MESSAGES = 1200
PAGE = 50


def test_killed_walk_resumes_from_checkpoint(chaos_settings, processes):
    """After kill -9 mid-walk the lock holds off a second run until it expires; the next run
    resumes from the checkpoint with fewer requests than a full walk, and every message ends
    stored once with exactly one ``created`` feed entry."""
    store = Store(chaos_settings)
    # every page a little slow, so the walk is long enough to be killed in the middle
    with Simulator(seed=9, messages=MESSAGES, faults=Faults(slow=1.0, delay_max=0.1, seed=9)) as sim:
        settings = chaos_settings.replace(api_url=sim.url, api_key=sim.api_key)
        env = environment(settings, RECONCILE_PAGE_SIZE=PAGE)
        inbound = len(sim.mailbox.ids("inbound"))
        full_walk_pages = sum(math.ceil(len(sim.mailbox.ids(d)) / PAGE) for d in ("inbound", "outbound"))

        first = processes.start("reconcile-1", reconcile_command(direction=None), env)
        # kill once several inbound pages are stored, well before the inbound walk ends
        wait_until(lambda: store.count(store.index_key()) >= 6 * PAGE or not first.running,
                   timeout=30, what="the first pages to be stored")
        assert first.running, "the walk ended before it could be killed"
        kill9(first.pid)
        assert first.wait(5) == -9
        stored_at_kill = store.count(store.index_key())
        assert stored_at_kill < inbound
        checkpoint = store.client.get(store.keys.reconcile_cursor("inbound"))
        assert checkpoint is not None

        # the dead run's lock is still there: a run now is skipped, never concurrent
        skipped = processes.start("reconcile-skipped", reconcile_command(), env)
        assert skipped.wait(30) == 4
        assert summary_of(skipped)["outcome"] == "skipped"

        # the lock expires by itself (LOCK_TTL_MS); make that happen now instead of in minutes
        assert store.client.pexpire(store.keys.reconcile_lock, 1)
        wait_until(lambda: not store.client.exists(store.keys.reconcile_lock), timeout=5,
                   what="the lock to expire")
        sim.reset_counts()
        second = processes.start("reconcile-2", reconcile_command(), env)
        assert second.wait(60) == 0, second.log()
        summary = summary_of(second)

    assert summary["outcome"] == "completed"
    assert summary["directions"]["inbound"]["resumed"] is True
    assert summary["directions"]["outbound"]["resumed"] is False
    assert summary["requests"] == sim.requests["list"]
    assert summary["requests"] < full_walk_pages
    assert summary["created"] == MESSAGES - stored_at_kill
    assert store.client.get(store.keys.reconcile_cursor("inbound")) is None
    assert_store_equals_mailbox(store, sim.mailbox)
    created = created_per_message(store)
    assert len(created) == MESSAGES
    assert set(created.values()) == {1}

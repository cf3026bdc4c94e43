"""Metriport's retry of failed deliveries arriving while a reconciliation walks the same messages."""

import threading

import pytest

from chaos.harness import assert_store_equals_mailbox
from chaos.harness import created_per_message
from chaos.harness import environment
from chaos.harness import feed_events
from chaos.harness import received_deliveries
from chaos.harness import reconcile_command
from chaos.harness import scrape
from chaos.harness import start_receiver
from chaos.harness import succeeded
from chaos.harness import summary_of
from conftest import TEST_WEBHOOK_KEY
from inbox.store import Store
from simulator import Faults
from simulator import Simulator

pytestmark = pytest.mark.chaos

MESSAGES = 400
PAGE = 20


def test_retry_flush_during_reconcile_creates_each_message_once(chaos_settings, processes):
    """Live traffic with drops and duplicates, then Metriport's retry of every failed delivery
    (back to back, 0-200 ms apart) racing a full reconcile run: one ``created`` per message."""
    web = start_receiver(processes, chaos_settings, workers=2, threads=4)
    store = Store(chaos_settings)
    faults = Faults(slow=1.0, delay_max=0.3, seed=11)
    with Simulator(seed=11, messages=MESSAGES, faults=faults, webhook_url=web.url + "/webhook",
                   webhook_key=TEST_WEBHOOK_KEY) as sim:
        deliveries = received_deliveries(sim, shape="mixed")
        live = sim.sender.deliver(deliveries, drop=0.5, duplicate=0.2, shuffle=True, concurrency=4)
        failed = len(sim.sender.failed())
        assert failed == live.dropped >= 150

        settings = chaos_settings.replace(api_url=sim.url, api_key=sim.api_key)
        walk = processes.start("reconcile", reconcile_command(),
                               environment(settings, RECONCILE_PAGE_SIZE=PAGE))
        flush = threading.Thread(target=sim.sender.retry_failed)
        flush.start()
        flush.join(60)
        assert not flush.is_alive()
        assert walk.wait(60) == 0, walk.log()
        summary = summary_of(walk)

        assert len(succeeded(deliveries)) == MESSAGES
        assert_store_equals_mailbox(store, sim.mailbox)
        metrics = scrape(web.url)

    created = created_per_message(store)
    assert len(created) == MESSAGES and set(created.values()) == {1}
    # both channels really raced: reconciliation created some messages, the flush others
    assert 0 < summary["created"] < MESSAGES
    # what an operator alerts on: repairs by reconciliation, and the age of the last run
    assert metrics[("metriport_inbox_repaired_total", ())] == summary["created"]
    assert metrics[("metriport_inbox_reconcile_last_run_success", ())] == 1
    assert metrics[("metriport_inbox_reconcile_runs_total", (("outcome", "completed"),))] == 1
    assert 0 <= metrics[("metriport_inbox_reconcile_last_run_age_seconds", ())] < 60
    events = feed_events(store)
    print(f"{failed} failed deliveries retried during a walk that created {summary['created']}; "
          f"feed: {sum(events.values())} entries")

"""The receiver under steady signed load while gunicorn workers are kill -9ed."""

import threading
import time

import pytest

from chaos.harness import assert_every_2xx_stored
from chaos.harness import children
from chaos.harness import created_per_message
from chaos.harness import kill9
from chaos.harness import received_deliveries
from chaos.harness import start_receiver
from chaos.harness import succeeded
from chaos.harness import wait_until
from conftest import TEST_WEBHOOK_KEY
from inbox.store import Store
from simulator import Simulator

pytestmark = pytest.mark.chaos

MESSAGES = 600
KILLS = 3


def test_worker_kill_loses_no_acknowledged_delivery(chaos_settings, processes):
    """Three workers kill -9ed during 600 signed deliveries: every 2xx is stored, the rest failed
    visibly, gunicorn replaced the workers, and Metriport's retry then completes the store."""
    web = start_receiver(processes, chaos_settings, workers=2, threads=4)
    store = Store(chaos_settings)
    with Simulator(seed=3, messages=MESSAGES, webhook_url=web.url + "/webhook",
                   webhook_key=TEST_WEBHOOK_KEY) as sim:
        deliveries = received_deliveries(sim, shape="mixed")
        load = threading.Thread(
            target=sim.sender.deliver, args=(deliveries,), kwargs=dict(concurrency=8, delay=0.01)
        )
        load.start()
        killed = []
        try:
            for round_number in range(1, KILLS + 1):
                wait_until(lambda: len(succeeded(deliveries)) >= round_number * MESSAGES // (KILLS + 2),
                           timeout=30, what="deliveries to be answered")
                workers = wait_until(lambda: [p for p in children(web.pid) if p not in killed],
                                     timeout=10, what="a live gunicorn worker")
                kill9(workers[0])
                killed.append(workers[0])
                time.sleep(0.1)
        finally:
            load.join(60)
        assert not load.is_alive()
        first_pass = assert_every_2xx_stored(store, deliveries)
        failed_first = MESSAGES - first_pass

        assert web.running
        respawned = wait_until(lambda: len(children(web.pid)) == 2 and children(web.pid),
                               timeout=10, what="gunicorn to replace the killed workers")
        assert not set(respawned) & set(killed)

        # what Metriport marked failed comes back with POST /settings/webhook/retry
        sim.sender.retry_failed()
        assert_every_2xx_stored(store, deliveries)
        assert len(succeeded(deliveries)) == MESSAGES

    created = created_per_message(store)
    assert len(created) == MESSAGES and set(created.values()) == {1}
    assert store.count(store.index_key()) == MESSAGES
    print(f"killed {len(killed)} workers; {failed_first} of {MESSAGES} deliveries failed and were retried")

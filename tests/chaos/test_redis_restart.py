"""redis-server (AOF, appendfsync always) killed and restarted while the receiver is under load."""

import threading
import time

import pytest
import requests

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

MESSAGES = 500
OUTAGE_SECONDS = 2.0


def answered_503(deliveries):
    return sum(d.status_code == 503 for d in deliveries)


def test_redis_crash_answers_503_and_recovers_without_restart(aof_redis, chaos_settings, processes):
    """While Redis is down the webhook answers 503 and /readyz 503; after Redis restarts from its
    AOF the same gunicorn workers store again, and nothing answered 2xx is missing."""
    web = start_receiver(processes, chaos_settings, workers=2, threads=4)
    workers_before = sorted(children(web.pid))
    store = Store(chaos_settings)
    with Simulator(seed=5, messages=MESSAGES, webhook_url=web.url + "/webhook",
                   webhook_key=TEST_WEBHOOK_KEY) as sim:
        deliveries = received_deliveries(sim)
        load = threading.Thread(
            target=sim.sender.deliver, args=(deliveries,), kwargs=dict(concurrency=4, delay=0.03)
        )
        load.start()
        try:
            wait_until(lambda: len(succeeded(deliveries)) >= MESSAGES // 5, timeout=30,
                       what="the first deliveries")
            kill9(aof_redis.process.pid)
            aof_redis.stop()  # reaps the killed server
            before_outage = len(succeeded(deliveries))
            wait_until(lambda: answered_503(deliveries) >= 3, timeout=15, what="503 answers")
            readiness = requests.get(web.url + "/readyz", timeout=5)
            time.sleep(OUTAGE_SECONDS)
            during_outage = len(succeeded(deliveries))
            aof_redis.start()
            after_restart = len(succeeded(deliveries))
        finally:
            load.join(60)
        assert not load.is_alive()
        assert readiness.status_code == 503 and readiness.json()["error"] == "not_ready"
        refused = answered_503(deliveries)
        # requests in flight at the crash may still finish; then nothing succeeds until the restart
        assert during_outage - before_outage <= 4  # at most one per sender thread
        assert len(succeeded(deliveries)) > after_restart, "no delivery succeeded after the restart"
        assert sorted(children(web.pid)) == workers_before, "gunicorn workers were restarted"
        first_pass = assert_every_2xx_stored(store, deliveries)

        sim.sender.retry_failed()
        assert len(succeeded(deliveries)) == MESSAGES
        assert_every_2xx_stored(store, deliveries)

    created = created_per_message(store)
    assert len(created) == MESSAGES and set(created.values()) == {1}
    print(f"{refused} deliveries answered 503 during the outage; {first_pass} of {MESSAGES} "
          "succeeded on the first attempt")

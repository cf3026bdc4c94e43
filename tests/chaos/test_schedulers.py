"""Two clocks and three RQ workers: reconciliation runs never overlap and store nothing twice."""

import datetime

import pytest
from rq import Queue

from chaos.harness import BIN
from chaos.harness import assert_store_equals_mailbox
from chaos.harness import created_per_message
from chaos.harness import environment
from chaos.harness import wait_until
from inbox.connection import Connections
from inbox.runs import RunLog
from inbox.store import Store
from simulator import Faults
from simulator import Simulator

pytestmark = pytest.mark.chaos

MESSAGES = 600
PAGE = 50
#: overlap tolerated between two runs' recorded times: the gap between a run's ``started``
#: stamp and its lock attempt (walks themselves take seconds)
SLACK = datetime.timedelta(milliseconds=50)


def test_two_clocks_three_workers_never_overlap(chaos_settings, processes):
    """Both clocks enqueue their full and incremental runs, the test enqueues two more; three
    workers take them at once: the lock lets one walk at a time, the rest are skipped, no job
    fails, and every message has exactly one ``created`` feed entry."""
    store = Store(chaos_settings)
    queue = Queue(chaos_settings.queue_name, connection=Connections(chaos_settings).queue)
    with Simulator(seed=7, messages=MESSAGES, faults=Faults(slow=1.0, delay_max=0.3, seed=7)) as sim:
        settings = chaos_settings.replace(api_url=sim.url, api_key=sim.api_key)
        env = environment(settings, RECONCILE_PAGE_SIZE=PAGE)
        clocks = [processes.start(f"clock-{n}", [BIN / "metriport-inbox", "worker", "--cron"], env)
                  for n in (1, 2)]
        wait_until(lambda: queue.count >= 4, timeout=20, what="both clocks to enqueue")
        for clock in clocks:
            clock.stop()
        for _ in range(2):
            queue.enqueue("worker.jobs.reconcile", mode="full")
        jobs = queue.count
        assert jobs == 6, "each clock enqueues one full and one incremental run at start"

        workers = [processes.start(f"worker-{n}", [BIN / "metriport-inbox", "worker", "--burst"], env)
                   for n in (1, 2, 3)]
        for worker in workers:
            assert worker.wait(60) == 0, worker.log()

        assert queue.failed_job_registry.count == 0
        assert queue.finished_job_registry.count == jobs
        runs = [run.as_dict() for run in RunLog(store).recent(limit=100)]
        assert_store_equals_mailbox(store, sim.mailbox)

    assert len(runs) == jobs
    outcomes = sorted(run["outcome"] for run in runs)
    assert set(outcomes) <= {"completed", "skipped"}
    assert outcomes.count("skipped") >= 1, "the workers never raced for the lock"
    walked = sorted(
        (datetime.datetime.fromisoformat(r["started"]), datetime.datetime.fromisoformat(r["ended"]))
        for r in runs if r["outcome"] != "skipped"
    )
    for (_, previous_end), (start, _) in zip(walked, walked[1:]):
        assert start + SLACK >= previous_end, "two reconciliation runs overlapped"
    created = created_per_message(store)
    assert len(created) == MESSAGES and set(created.values()) == {1}
    assert sum(run.get("created", 0) for run in runs) == MESSAGES
    print(f"{jobs} runs: {outcomes.count('completed')} walked one after another, "
          f"{outcomes.count('skipped')} skipped")

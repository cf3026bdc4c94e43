"""The worker as users run it: ``metriport-inbox reconcile --once`` and ``metriport-inbox worker``
as real subprocesses, RQ jobs executed by a real RQ worker, and the rq cron schedule."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from rq import Queue
from rq.job import JobStatus

from cli.dev.embedded import free_port
from inbox.connection import Connections
from inbox.rediskeys import RedisKeys
from inbox.store import Store
from simulator import Faults
from simulator import Simulator
from worker import schedule

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))


@pytest.fixture
def sim():
    with Simulator(seed=11, messages=0) as simulator:
        simulator.mailbox.add(120, "inbound")
        simulator.mailbox.add(60, "outbound")
        yield simulator


def _env(settings, sim, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRIPORT_", "RECONCILE_", "INBOX_"))}
    env.update(REDIS_URL=settings.redis_url, INBOX_NAMESPACE=settings.namespace,
               METRIPORT_API_KEY=sim.api_key, METRIPORT_API_URL=sim.url, RECONCILE_PAGE_SIZE="50")
    env.update(extra)
    return env


def _cli(args, env):
    return subprocess.run([COMMAND, *args], env=env, capture_output=True, text=True, timeout=60)


def test_reconcile_once_json_last_line_and_exit_0(settings, sim, store):
    """`reconcile --once --json` stores everything, logs pages to stderr, ends with the summary."""
    done = _cli(["reconcile", "--once", "--json"], _env(settings, sim))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["outcome"] == "completed"
    for field in ("pages", "requests", "seen", "created", "updated", "duplicates", "invalid"):
        assert isinstance(summary[field], int)
    assert (summary["seen"], summary["created"], summary["pages"]) == (180, 180, 5)
    assert "inbound: page 3" in done.stderr
    assert store.count(store.index_key()) == 180


def test_reconcile_one_direction_full(settings, sim, store):
    """`--direction outbound --full` walks only the outbound list, in full; without `--once`,
    which is the default (and only) mode."""
    done = _cli(["reconcile", "--full", "--direction", "outbound", "--json"], _env(settings, sim))
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (done.returncode, summary["mode"], list(summary["directions"])) == (0, "full", ["outbound"])
    assert store.count(store.index_key(direction="inbound")) == 0


def test_reconcile_without_api_key_is_a_config_error(settings, sim):
    """Without METRIPORT_API_KEY the command exits 2 with a one-line error, no traceback."""
    env = _env(settings, sim)
    del env["METRIPORT_API_KEY"]
    done = _cli(["reconcile", "--once"], env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: config_invalid: METRIPORT_API_KEY")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("case, code, outcome", [
    ("wrong_key", 1, "failed"), ("budget", 3, "budget_exhausted"), ("locked", 4, "skipped")])
def test_reconcile_exit_codes(settings, sim, redis_client, case, code, outcome):
    """Failure exits 1, a spent request budget 3 and a held lock 4, each with its JSON summary."""
    env = _env(settings, sim)
    if case == "wrong_key":
        env["METRIPORT_API_KEY"] = "wrong"
    elif case == "budget":
        env["RECONCILE_REQUEST_BUDGET"] = "2"
    else:
        redis_client.set(RedisKeys(settings.namespace).reconcile_lock, "another-run", px=60_000)
    done = _cli(["reconcile", "--once", "--json"], env)
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["outcome"] == outcome


@pytest.fixture
def queue(settings):
    queue = Queue(settings.queue_name, connection=Connections(settings).queue)
    queue.empty()
    yield queue
    queue.empty()


def test_rq_worker_runs_fetch_and_reconcile_jobs(settings, sim, queue):
    """A real `metriport-inbox worker --burst` runs an enqueued fetch job and a reconcile job."""
    message_id = sim.mailbox.ids("inbound")[5]
    fetch = queue.enqueue("worker.jobs.fetch_message", message_id)
    reconcile = queue.enqueue("worker.jobs.reconcile", mode="full")
    done = subprocess.run([COMMAND, "worker", "--burst"], env=_env(settings, sim),
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert fetch.get_status(refresh=True) == JobStatus.FINISHED
    assert fetch.return_value() == {"id": message_id, "outcome": "created"}
    assert reconcile.get_status(refresh=True) == JobStatus.FINISHED
    summary = reconcile.return_value()
    assert (summary["outcome"], summary["created"], summary["duplicates"]) == ("completed", 179, 1)
    stored = Store(settings).get(message_id)
    assert stored.first_via == "fetch" and stored.direction is None


def test_fetch_job_for_an_unknown_id_fails_in_rq(settings, sim, queue):
    """Fetching an id Metriport does not know fails the job (HTTP 404); nothing stored."""
    job = queue.enqueue("worker.jobs.fetch_message", "0000-unknown")
    subprocess.run([COMMAND, "worker", "--burst"], env=_env(settings, sim),
                   capture_output=True, text=True, timeout=90)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "MetriportError" in job.latest_result().exc_string
    assert "HTTP 404" in job.latest_result().exc_string
    assert Store(settings).get("0000-unknown") is None


def test_schedule_enqueues_full_then_incremental_within_their_intervals(settings, queue):
    """The clock enqueues a full and an incremental run on the namespace's queue, timeouts below the intervals."""
    configured = settings.replace(reconcile_interval=300, reconcile_full_interval=86400)
    scheduler = schedule.scheduler(configured, Connections(configured))
    scheduler.place_full_run()
    scheduler.enqueue_jobs()
    jobs = queue.get_jobs()
    assert [job.func_name for job in jobs] == ["worker.jobs.reconcile"] * 2
    assert [job.kwargs for job in jobs] == [{"mode": "full"}, {"mode": "incremental"}]
    assert [job.timeout for job in jobs] == [77760, 270]
    assert [job.ttl for job in jobs] == [86400, 300]


def test_clock_restart_waits_for_the_full_run_that_is_not_due(settings, queue, redis_client):
    """A full walk that ended an hour ago (full interval: a day): a restarted clock enqueues only
    the incremental run, and schedules the full one a day after the last one, not now."""
    configured = settings.replace(reconcile_interval=300, reconcile_full_interval=86400)
    ended = time.time() - 3600
    redis_client.hset(RedisKeys(settings.namespace).reconcile_state, mapping={
        "full:inbound": int(ended * 1000), "full:outbound": int((ended + 60) * 1000)})
    scheduler = schedule.scheduler(configured, Connections(configured))
    scheduler.place_full_run()
    scheduler.enqueue_jobs()
    assert [job.kwargs for job in queue.get_jobs()] == [{"mode": "incremental"}]
    full = next(job for job in scheduler.get_jobs() if job.kwargs == {"mode": "full"})
    assert abs(full.next_enqueue_time.timestamp() - (ended + 86400)) < 1


def test_clock_restart_runs_a_full_walk_when_the_last_one_is_too_old(settings, queue, redis_client):
    """One direction's last full walk is older than the full interval: full run at once."""
    configured = settings.replace(reconcile_interval=300, reconcile_full_interval=86400)
    now_ms = int(time.time() * 1000)
    redis_client.hset(RedisKeys(settings.namespace).reconcile_state, mapping={
        "full:inbound": now_ms - 90_000_000, "full:outbound": now_ms})
    scheduler = schedule.scheduler(configured, Connections(configured))
    scheduler.place_full_run()
    scheduler.enqueue_jobs()
    assert [job.kwargs for job in queue.get_jobs()] == [{"mode": "full"}, {"mode": "incremental"}]


def test_killed_run_is_resumed_from_its_checkpoint(settings, redis_client, store):
    """A `reconcile --once` killed with SIGKILL mid-walk is finished by the next run from its cursor."""
    keys = RedisKeys(settings.namespace)
    with Simulator(seed=3, messages=0, faults=Faults(slow=1.0, delay_max=0.2, seed=3)) as sim:
        sim.mailbox.add(500, "inbound")
        env = _env(settings, sim, RECONCILE_DIRECTIONS="inbound")
        process = subprocess.Popen([COMMAND, "reconcile", "--once"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while store.count(store.index_key()) < 150 and time.monotonic() < deadline:
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=10)
        cursor = redis_client.get(keys.reconcile_cursor("inbound"))
        stored_before = store.count(store.index_key())
        assert cursor is not None and 150 <= stored_before < 500
        redis_client.delete(keys.reconcile_lock)  # what the lock's expiry does after a kill
        sim.faults = Faults()
        done = _cli(["reconcile", "--once", "--json"], env)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (done.returncode, summary["directions"]["inbound"]["resumed"]) == (0, True)
    assert summary["pages"] < 10
    assert summary["duplicates"] <= 50  # at most the page stored just before its checkpoint
    assert store.count(store.index_key()) == 500


def test_clock_process_enqueues_the_scheduled_runs(settings, queue):
    """`metriport-inbox worker --cron` (Procfile clock:) enqueues both runs at start, stops on SIGTERM."""
    env = {**os.environ, "REDIS_URL": settings.redis_url, "INBOX_NAMESPACE": settings.namespace,
           "METRIPORT_API_KEY": "k", "METRIPORT_API_URL": "http://127.0.0.1:9"}
    clock = subprocess.Popen([COMMAND, "worker", "--cron"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while queue.count < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        clock.send_signal(signal.SIGTERM)
        assert clock.wait(timeout=10) == 0
    finally:
        clock.kill()
        clock.wait(timeout=10)
    assert sorted(job.kwargs["mode"] for job in queue.get_jobs()) == ["full", "incremental"]


def test_reconcile_with_redis_down_fails_fast(settings, sim):
    """With nothing listening at REDIS_URL the run fails with store_unavailable, exit 1, no hang."""
    env = _env(settings, sim, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    done = _cli(["reconcile", "--once", "--json"], env)  # a hang would hit _cli's timeout
    assert done.returncode == 1
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["outcome"], summary["error"]["code"], summary["requests"]) == (
        "failed", "store_unavailable", 0)

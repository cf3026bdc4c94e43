"""Reconciliation against a misbehaving list endpoint (``hostile_metriport``, real sockets).

Each misbehaviour was seen to hold a run for ever, block Redis, or leave a looping checkpoint
(issue #14). Every test is bounded: the deadlines under test are a few seconds here.
"""

import os
import pathlib
import subprocess
import sys
import time

import pytest
from rq import Queue
from rq.job import JobStatus

from conftest import reconcile_summary as run
from hostile_metriport import LIST
from hostile_metriport import HostileMetriport
from hostile_metriport import message
from hostile_metriport import page
from inbox.rediskeys import RedisKeys
from inbox.runs import RunLog

KEY = "hostile-api-key"
FIRST = f"{LIST}?count=10&direction=inbound"
SECOND = f"{LIST}?fromItem=m-10&count=10&direction=inbound"
COMMAND = pathlib.Path(sys.executable).parent / "metriport-inbox"


@pytest.fixture
def metriport():
    with HostileMetriport() as server:
        yield server


def configured(settings, server, **changes):
    return settings.replace(api_key=KEY, api_url=server.base, reconcile_page_size=10,
                            reconcile_directions=("inbound",), **changes)


def ids(first, last):
    return [message(f"m-{n:02d}") for n in range(first, last - 1, -1)]


def lock_and_cursor(redis_client, settings):
    keys = RedisKeys(settings.namespace)
    return redis_client.get(keys.reconcile_lock), redis_client.get(keys.reconcile_cursor("inbound"))


def test_a_next_page_pointing_back_fails_the_run_and_is_never_checkpointed(settings, metriport, store, redis_client):
    """Page 2's nextPage is page 2 again: stopped after two requests, no checkpoint left."""
    metriport.routes[FIRST] = metriport.json(page(metriport.base, ids(19, 10), "fromItem=m-10&count=10&direction=inbound"))
    metriport.routes[SECOND] = metriport.json(page(metriport.base, ids(10, 1), "direction=inbound&count=10&fromItem=m-10"))
    summary = run(configured(settings, metriport), mode="full")
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "cursor_loop")
    assert "\n" not in summary["error"]["detail"]
    assert summary["requests"] == 2
    assert store.get("m-01") is not None and store.get("m-19") is not None
    assert lock_and_cursor(redis_client, settings) == (None, None)

    metriport.routes[SECOND] = metriport.json(page(metriport.base, ids(10, 1)))
    summary = run(configured(settings, metriport), mode="full")
    assert summary["outcome"] == "completed"
    assert summary["directions"]["inbound"]["resumed"] is False


def test_a_page_repeated_under_another_url_is_a_loop(settings, metriport):
    """A server varying the URL (a junk parameter) while serving the same page is caught too."""
    for n in range(5):
        metriport.routes[f"{LIST}?fromItem=m-10&count=10&direction=inbound&junk={n}"] = metriport.json(
            page(metriport.base, ids(10, 1), f"fromItem=m-10&count=10&direction=inbound&junk={n + 1}"))
    metriport.routes[FIRST] = metriport.json(page(metriport.base, ids(19, 11), "fromItem=m-10&count=10&direction=inbound&junk=0"))
    summary = run(configured(settings, metriport), mode="full")
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "cursor_loop")
    assert summary["requests"] == 3


def test_a_resumed_checkpoint_that_loops_is_dropped(settings, metriport, redis_client):
    """A loop met after resuming from a checkpoint deletes it: the next run starts at the top."""
    keys = RedisKeys(settings.namespace)
    redis_client.set(keys.reconcile_cursor("inbound"),
                     f'{{"url": "{metriport.base}{SECOND}", "saved": 0}}')
    metriport.routes[SECOND] = metriport.json(page(metriport.base, ids(10, 1), "fromItem=m-10&count=10&direction=inbound"))
    summary = run(configured(settings, metriport), mode="full")
    assert summary["error"]["code"] == "cursor_loop"
    assert summary["directions"]["inbound"]["resumed"] is True
    assert lock_and_cursor(redis_client, settings) == (None, None)


def test_a_page_larger_than_the_count_asked_is_refused_before_any_write(settings, metriport, store):
    """150,000 items for count=500 blocked Redis in one call; here 11 for 10: nothing stored."""
    metriport.routes[FIRST] = metriport.json(page(metriport.base, ids(20, 10)))
    summary = run(configured(settings, metriport), mode="full")
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "page_too_large")
    assert store.get("m-20") is None and store.count(store.index_key()) == 0


@pytest.mark.parametrize("declare", [True, False])
def test_a_body_past_the_size_limit_is_refused_while_reading(settings, metriport, store, declare):
    """A 5 MB body with a 1 MB limit: refused at the declared length or at the first MB read."""
    metriport.routes[FIRST] = metriport.flood(5 * 1024 * 1024, declare=declare)
    summary = run(configured(settings, metriport),
                  client_options={"max_response_bytes": 1024 * 1024, "max_attempts": 1})
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "response_too_large")


@pytest.mark.parametrize("trickle", ["body", "headers"])
def test_a_trickled_answer_is_cut_at_the_request_deadline_and_the_lock_freed(
        settings, metriport, redis_client, trickle):
    """One byte every 0.2 s never trips a read timeout; the total deadline (2 s) cuts it."""
    metriport.routes[FIRST] = (metriport.trickle_body(0.2) if trickle == "body"
                               else metriport.trickle_headers(0.2))
    started = time.monotonic()
    summary = run(configured(settings, metriport), client_options={"request_deadline": 2.0})
    elapsed = time.monotonic() - started
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "request_deadline")
    assert elapsed < 15, elapsed
    assert lock_and_cursor(redis_client, settings) == (None, None)


def test_the_run_deadline_ends_an_endless_walk(settings, metriport, redis_client):
    """Fresh pages for ever, each 0.3 s late: RECONCILE_DEADLINE=2 ends the run, lock freed."""
    for n in range(200):
        query = "count=10&direction=inbound" if n == 0 else f"fromItem=m-{n:03d}&count=10&direction=inbound"
        metriport.routes[f"{LIST}?{query}"] = metriport.slow_json(
            page(metriport.base, [message(f"m-{n:03d}")], f"fromItem=m-{n + 1:03d}&count=10&direction=inbound"), 0.3)
    started = time.monotonic()
    summary = run(configured(settings, metriport, reconcile_deadline=2), mode="full")
    elapsed = time.monotonic() - started
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "run_deadline")
    assert elapsed < 15, elapsed
    lock, cursor = lock_and_cursor(redis_client, settings)
    assert lock is None and cursor is not None  # a deadline is no loop: the next run resumes


def test_items_with_a_trailing_newline_are_skipped(settings, metriport, store):
    """Reconciliation shares the id rule: ``idnl\\n`` is skipped as invalid_id, never stored."""
    metriport.routes[FIRST] = metriport.json(page(metriport.base, [message("idnl\n"), message("m-ok")]))
    summary = run(configured(settings, metriport))
    assert (summary["outcome"], summary["created"], summary["invalid"]) == ("completed", 1, 1)
    assert store.stats()["invalid:reconcile:invalid_id"] == 1


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
def test_a_page_with_non_json_numbers_is_refused(settings, metriport, store, number):
    body = b'{"meta": {}, "messages": [{"id": "m-1", "resourceType": "Communication", "x": %s}]}' % number.encode()
    metriport.routes[FIRST] = metriport.raw(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    summary = run(configured(settings, metriport), client_options={"max_attempts": 1})
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "invalid_answer")
    assert store.get("m-1") is None


def test_reconcile_command_against_a_loop_exits_non_zero_within_a_minute_then_completes(
        settings, metriport, store):
    """Issue #14's done-when: the command, twice; the loop is gone for the second run."""
    metriport.routes[FIRST] = metriport.json(page(metriport.base, ids(19, 10), "fromItem=m-10&count=10&direction=inbound"))
    metriport.routes[SECOND] = metriport.json(page(metriport.base, ids(10, 1), "fromItem=m-10&count=10&direction=inbound"))
    env = {**os.environ, "REDIS_URL": settings.redis_url, "INBOX_NAMESPACE": settings.namespace,
           "METRIPORT_API_KEY": KEY, "METRIPORT_API_URL": metriport.base,
           "RECONCILE_DIRECTIONS": "inbound", "RECONCILE_PAGE_SIZE": "10"}
    env.pop("INBOX_ENCRYPTION_KEYS", None)
    started = time.monotonic()
    looping = subprocess.run([str(COMMAND), "reconcile", "--once", "--full"], env=env,
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert time.monotonic() - started < 60
    assert looping.returncode == 1, looping.stderr
    assert "error: cursor_loop:" in looping.stderr

    metriport.routes[SECOND] = metriport.json(page(metriport.base, ids(10, 1)))
    fixed = subprocess.run([str(COMMAND), "reconcile", "--once", "--full"], env=env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.startswith("completed:")
    assert store.count(store.index_key()) == 19


def test_an_rq_job_ends_its_run_before_the_job_timeout_and_frees_the_lock(settings, metriport, store, redis_client):
    """A killed run left its lock ~150 s; under RQ the run's deadline is 10 s short of the job's."""
    for n in range(200):
        query = "count=10&direction=inbound" if n == 0 else f"fromItem=m-{n:03d}&count=10&direction=inbound"
        metriport.routes[f"{LIST}?{query}"] = metriport.slow_json(
            page(metriport.base, [message(f"m-{n:03d}")], f"fromItem=m-{n + 1:03d}&count=10&direction=inbound"), 0.3)
    queue = Queue(settings.queue_name, connection=redis_client)
    job = queue.enqueue("worker.jobs.reconcile", mode="full", job_timeout=13)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRIPORT_", "RECONCILE_", "INBOX_"))}
    env.update(REDIS_URL=settings.redis_url, INBOX_NAMESPACE=settings.namespace, METRIPORT_API_KEY=KEY,
               METRIPORT_API_URL=metriport.base, RECONCILE_DIRECTIONS="inbound", RECONCILE_PAGE_SIZE="10")
    subprocess.run([str(COMMAND), "worker", "--burst"], env=env, capture_output=True, timeout=90,
                   stdin=subprocess.DEVNULL)
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert "The run reached its deadline" in job.latest_result().exc_string
    assert "JobTimeoutException" not in job.latest_result().exc_string
    last = RunLog(store).recent(1)[0]
    assert (last.outcome.value, last.error["code"]) == ("failed", "run_deadline")
    assert last.seconds < 10
    assert lock_and_cursor(redis_client, settings)[0] is None

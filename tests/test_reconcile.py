"""Reconciliation runs against the simulator (a real HTTP server on 127.0.0.1) and a real Redis."""

import gc
import json
import math
import threading

import pytest

from conftest import reconcile_summary as run
from inbox.rediskeys import RedisKeys
from inbox.runs import RunLog
from simulator import Faults
from simulator import Simulator

PAGE = 50
FAST_RETRIES = {"backoff_base": 0.02}



@pytest.fixture
def sim():
    with Simulator(seed=7, messages=0) as simulator:
        yield simulator


def _settings(settings, sim, **changes):
    return settings.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=PAGE, **changes)


def _feed(redis_client, settings):
    rows = redis_client.xrange(RedisKeys(settings.namespace).feed)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in rows]


def _stored_ids(store, direction):
    return store.ids(store.index_key(direction=direction), count=100_000)


def test_multi_page_walk_both_directions(settings, sim, store, redis_client):
    """A first run walks every page of both directions and stores each message once, repaired."""
    sim.mailbox.add(330, "inbound")
    sim.mailbox.add(170, "outbound")
    summary = run(_settings(settings, sim))
    assert summary["outcome"] == "completed"
    assert summary["mode"] == "full"  # incremental asked, but no full walk has completed yet
    assert summary["directions"]["inbound"]["pages"] == math.ceil(330 / PAGE)
    assert summary["directions"]["outbound"]["pages"] == math.ceil(170 / PAGE)
    assert summary["requests"] == summary["pages"] == sim.requests["list"]
    assert (summary["seen"], summary["created"], summary["repaired"]) == (500, 500, 500)
    for direction in ("inbound", "outbound"):
        assert _stored_ids(store, direction) == sorted(sim.mailbox.ids(direction), reverse=True)
    feed = _feed(redis_client, settings)
    assert len(feed) == 500 and {e["event"] for e in feed} == {"created"}
    assert {e["via"] for e in feed} == {"reconcile"}
    assert store.stats()["repaired"] == 500
    (recorded,) = RunLog(store).recent(limit=5)
    assert recorded.as_dict() == summary and recorded.totals.created == 500


def test_run_stopped_after_page_3_of_10_resumes_from_the_checkpoint(settings, sim, store, redis_client):
    """A run cut off after 3 of 10 pages is finished by the next run from page 4, no page twice."""
    sim.mailbox.add(10 * PAGE, "inbound")
    first = run(_settings(settings, sim, reconcile_request_budget=3), directions=["inbound"])
    assert first["outcome"] == "budget_exhausted"
    assert (first["pages"], first["created"]) == (3, 3 * PAGE)
    cursor = json.loads(redis_client.get(RedisKeys(settings.namespace).reconcile_cursor("inbound")))
    assert cursor["url"].startswith(sim.url)
    assert sim.requests["list"] == 3

    second = run(_settings(settings, sim), directions=["inbound"])
    assert second["outcome"] == "completed"
    assert second["directions"]["inbound"]["resumed"] is True
    assert (second["pages"], second["requests"], second["created"]) == (7, 7, 7 * PAGE)
    assert second["duplicates"] == 0
    assert sim.requests["list"] == 10
    assert store.count(store.index_key(direction="inbound")) == 10 * PAGE
    assert redis_client.get(RedisKeys(settings.namespace).reconcile_cursor("inbound")) is None


def test_retry_after_is_honoured(settings, sim, store):
    """Each page is answered 429 with Retry-After: 1 first; the retry waits at least that long."""
    sim.mailbox.add(2 * PAGE, "inbound")
    sim.faults = Faults(rate_limit=1.0, max_consecutive=1, retry_after=1, seed=1)
    summary = run(_settings(settings, sim), directions=["inbound"])
    assert summary["outcome"] == "completed"
    assert sim.requests["list 429"] == 2
    assert summary["retries"] == 2 and summary["requests"] == 4
    assert summary["seconds"] >= 2 * 1.0
    assert store.count(store.index_key(direction="inbound")) == 2 * PAGE


def test_server_errors_and_slow_pages_are_retried(settings, sim, store):
    """5xx answers and pages slower than the read timeout are retried until every page is stored."""
    sim.mailbox.add(8 * PAGE, "outbound")
    sim.faults = Faults(server_error=0.4, slow=0.5, delay_max=1.0, max_consecutive=2, seed=3)
    options = dict(FAST_RETRIES, timeouts=(2.0, 0.3))
    summary = run(_settings(settings, sim), directions=["outbound"], client_options=options)
    assert summary["outcome"] == "completed"
    server_errors = sum(n for name, n in sim.requests.items() if name.startswith("list 5"))
    assert server_errors > 0
    assert summary["retries"] > server_errors  # the rest were read timeouts
    assert _stored_ids(store, "outbound") == sorted(sim.mailbox.ids("outbound"), reverse=True)


def test_two_concurrent_runs_one_runs_one_skips(settings, sim):
    """While a run holds the lock a second run returns skipped without a single request."""
    sim.mailbox.add(20 * PAGE, "inbound")
    sim.faults = Faults(slow=1.0, delay_max=0.1, seed=5)
    configured = _settings(settings, sim)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", run(configured)))
    first.start()
    try:
        while sim.requests["list"] == 0 and first.is_alive():
            threading.Event().wait(0.01)
        results["second"] = run(configured)
    finally:
        first.join(timeout=60)
    assert results["first"]["outcome"] == "completed"
    assert results["second"]["outcome"] == "skipped"
    assert results["second"]["requests"] == 0
    assert sim.requests["list"] == results["first"]["requests"]


def test_incremental_stops_early_and_full_reaches_the_end(settings, sim):
    """After a full walk, new messages cost an incremental run 3 pages; a full run walks them all."""
    sim.mailbox.add(12 * PAGE, "inbound")
    sim.mailbox.add(6 * PAGE, "outbound")
    configured = _settings(settings, sim)
    run(configured)
    sim.mailbox.add(10, "inbound")

    incremental = run(configured)
    assert incremental["mode"] == "incremental"
    assert incremental["created"] == 10
    assert incremental["directions"]["inbound"]["pages"] == 3  # 1 with news, then 2 without
    assert incremental["directions"]["outbound"]["pages"] == 2
    assert incremental["requests"] == 5

    full = run(configured, mode="full")
    assert full["mode"] == "full"
    assert full["directions"]["inbound"]["pages"] == math.ceil((12 * PAGE + 10) / PAGE)
    assert full["directions"]["outbound"]["pages"] == 6
    assert (full["created"], full["updated"]) == (0, 0)
    assert full["duplicates"] == 18 * PAGE + 10


def test_status_change_found_by_full_run_is_one_updated_entry(settings, sim, store, redis_client):
    """A delivery status settled deep in the list: the full run finds it, one `updated` entry."""
    sim.mailbox.add(10 * PAGE, "outbound", pending=True)
    configured = _settings(settings, sim)
    run(configured)
    target = sim.mailbox.ids("outbound")[0]  # the oldest: on the last page
    assert sim.mailbox.update(message_ids=[target]) == [target]

    assert run(configured)["updated"] == 0  # incremental stops long before the last page
    full = run(configured, mode="full")
    again = run(configured, mode="full")

    assert (full["updated"], again["updated"]) == (1, 0)
    updated = [e for e in _feed(redis_client, settings) if e["event"] == "updated"]
    assert len(updated) == 1
    assert updated[0]["id"] == target and updated[0]["via"] == "reconcile"
    assert updated[0]["status"] == sim.mailbox.get(target)["status"]
    assert store.get(target).status == sim.mailbox.get(target)["status"]


def test_webhook_auto_retry_asks_metriport_to_resend(settings, sim):
    """With auto-retry on and failed deliveries at Metriport, the run asks for a re-send."""
    sim.mailbox.add(3, "inbound")
    sim.sender.url, sim.sender.key = "http://127.0.0.1:9/webhook", "test-key"
    deliveries = [sim.sender.message_received(sim.mailbox.get(i)) for i in sim.mailbox.ids()]
    sim.sender.deliver(deliveries, drop=1.0)  # dropped deliveries are kept as failed, like Metriport
    failed = sim.sender.status()["webhookRequestsFailed"]
    assert failed == 3
    summary = run(_settings(settings, sim, webhook_auto_retry=True))
    assert summary["webhook"] == {"failed": failed, "retried": True}
    assert sim.requests["settings"] == 2  # GET /settings/webhook, POST /settings/webhook/retry
    assert summary["requests"] == sim.requests["settings"] + sim.requests["list"]


def test_wrong_api_key_fails_the_run_and_frees_the_lock(settings, sim, redis_client):
    """A 403 ends the run as failed with code unauthorized, and the lock is released."""
    sim.mailbox.add(3, "inbound")
    summary = run(_settings(settings, sim).replace(api_key="wrong"))
    assert summary["outcome"] == "failed"
    assert summary["error"]["code"] == "unauthorized"
    assert redis_client.get(RedisKeys(settings.namespace).reconcile_lock) is None


def test_the_collector_threshold_is_restored_after_a_run(settings, sim):
    """A walk collects garbage less often (worker.reconcile); completed or failed, the run gives
    the process its own thresholds back."""
    sim.mailbox.add(60, "inbound")
    before = gc.get_threshold()
    gc.set_threshold(1234, *before[1:])
    try:
        assert run(_settings(settings, sim))["outcome"] == "completed"
        assert gc.get_threshold()[0] == 1234
        assert run(_settings(settings, sim).replace(api_key="wrong"))["outcome"] == "failed"
        assert gc.get_threshold()[0] == 1234
    finally:
        gc.set_threshold(*before)

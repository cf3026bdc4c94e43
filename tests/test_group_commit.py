"""Group commit: concurrent webhook upserts of one process share round trips, and nothing else.

Threads stand in for a gevent worker's greenlets (the same ``threading`` primitives, patched
there). Each caller must get its own outcome, its own error, and its own replay answer, exactly as
if it had called alone; a lost script (SCRIPT FLUSH) is loaded again.
"""

import threading
import uuid

import pytest

from conftest import raw_client
from conftest import raw_keys
from inbox.errors import StoreUnavailable
from inbox.normalize import normalize
from inbox.store import Delivery
from inbox.store import Outcome
from inbox.store import Store
from inbox.store import Via

pytestmark = pytest.mark.timeout(60)

CALLERS = 24


def record(message_id=None, **fields):
    resource = {"resourceType": "Communication", "id": message_id or str(uuid.uuid4()),
                "status": "completed", "subject": {"reference": "Patient/p-1"},
                "sent": "2026-09-14T15:41:50.000Z", **fields}
    return normalize(resource, direction="inbound")


def race(calls):
    """Run every ``calls`` function at once from its own thread; their results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait(10)
        try:
            results[i] = call()
        except Exception as exc:  # the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.fixture
def grouped(settings):
    return Store(settings, group_commit=True)


def test_each_caller_gets_its_own_outcome_in_fewer_round_trips(grouped):
    records = [record() for _ in range(CALLERS)]
    deliveries = [Delivery(str(uuid.uuid4()), f"hash-{i}") for i in range(CALLERS)]
    results = race([lambda r=r, d=d: grouped.upsert([r], Via.WEBHOOK, delivery=d)
                    for r, d in zip(records, deliveries)])
    assert [r.outcomes for r in results] == [(Outcome.CREATED,)] * CALLERS
    commit = grouped._upsert_call
    assert commit.calls == CALLERS
    # every record, ledger entry and feed entry is there, once
    assert grouped.count(raw_keys(grouped).idx_all) == CALLERS
    assert raw_client(grouped).xlen(raw_keys(grouped).feed) == CALLERS
    assert all(grouped.get(r.id) is not None for r in records)
    # the same deliveries again: each caller is told its own delivery is a replay
    again = race([lambda r=r, d=d: grouped.upsert([r], Via.WEBHOOK, delivery=d)
                  for r, d in zip(records, deliveries)])
    assert [r.replay for r in again] == [True] * CALLERS
    assert raw_client(grouped).xlen(raw_keys(grouped).feed) == CALLERS


def test_calls_that_overlap_are_batched(grouped):
    """While one round trip is out, the calls that arrive go together in the next one."""
    for _ in range(5):
        race([lambda: grouped.upsert([record()], Via.WEBHOOK) for _ in range(CALLERS)])
    commit = grouped._upsert_call
    assert commit.calls == 5 * CALLERS
    assert commit.round_trips < commit.calls


def test_an_error_stays_with_its_own_caller(grouped):
    """A call the script refuses fails alone; the calls sent with it are stored."""
    good = [record() for _ in range(CALLERS - 1)]
    bad = record()
    bad = type(bad)(**{**bad.__dict__, "as_of": "not-a-number"})
    calls = [lambda r=r: grouped.upsert([r], Via.WEBHOOK) for r in good]
    calls.insert(CALLERS // 2, lambda: grouped.upsert([bad], Via.WEBHOOK))
    results = race(calls)
    failed = results.pop(CALLERS // 2)
    assert isinstance(failed, Exception) and "not a number" in str(failed)
    assert [r.outcomes for r in results] == [(Outcome.CREATED,)] * (CALLERS - 1)
    assert grouped.get(bad.id) is None


def test_a_flushed_script_is_loaded_again(grouped):
    grouped.upsert([record()], Via.WEBHOOK)
    raw_client(grouped).script_flush()
    results = race([lambda: grouped.upsert([record()], Via.WEBHOOK) for _ in range(CALLERS)])
    assert [r.outcomes for r in results] == [(Outcome.CREATED,)] * CALLERS


def test_redis_down_fails_every_caller_fast(settings):
    """Every caller of a batch gets StoreUnavailable when Redis cannot be reached."""
    down = settings.replace(redis_url="redis://127.0.0.1:1/0")
    store = Store(down, group_commit=True)
    results = race([lambda: store.upsert([record()], Via.WEBHOOK) for _ in range(8)])
    assert all(isinstance(r, StoreUnavailable) for r in results), results

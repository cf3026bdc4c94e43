"""Group commit: concurrent webhook upserts of one process share round trips, and nothing else.

Threads stand in for a gevent worker's greenlets (the same ``threading`` primitives, patched
there). Each caller must get its own outcome, its own error, and its own replay answer, exactly as
if it had called alone; a lost script (SCRIPT FLUSH) is loaded again.
"""

import signal
import threading
import time
import uuid

import pytest

from cli.dev.embedded import EmbeddedRedis
from conftest import raw_client
from conftest import raw_keys
from inbox.errors import StoreUnavailable
from inbox.normalize import normalize
from inbox.store import Delivery
from inbox.store import Outcome
from inbox.store import Store
from inbox.store import Via
from inbox.traffic import Traffic
from inbox.traffic import current_hour

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
    commit = grouped.batch
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
    commit = grouped.batch
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


def test_other_commands_ride_along_with_their_own_replies(grouped):
    """Counters queued with commands() share batches with upserts; each gets its own replies."""
    key = raw_keys(grouped).stats

    def count(i):
        return grouped.batch.commands(lambda pipe: (pipe.hincrby(key, f"ride:{i % 3}", 1),
                                                    pipe.hget(key, "nothing")))

    calls = [lambda i=i: count(i) for i in range(CALLERS)]
    calls += [lambda: grouped.upsert([record()], Via.WEBHOOK) for _ in range(CALLERS)]
    results = race(calls)
    counted, stored = results[:CALLERS], results[CALLERS:]
    assert all(len(reply) == 2 and reply[1] is None and reply[0] >= 1 for reply in counted)
    assert [r.outcomes for r in stored] == [(Outcome.CREATED,)] * CALLERS
    totals = grouped.stats()
    assert sum(totals[f"ride:{i}"] for i in range(3)) == CALLERS
    assert grouped.batch.round_trips < grouped.batch.calls


def test_commands_that_do_not_wait_are_sent_by_the_batch_under_way(grouped):
    """commands(wait=False) during a batch returns at once; the callers that do wait are
    answered only after those commands were sent too (none is stranded, none lost)."""
    key = raw_keys(grouped).stats

    def count():
        return grouped.batch.commands(lambda pipe: pipe.hincrby(key, "nowait", 1), wait=False)

    calls = [count for _ in range(CALLERS)]
    calls += [lambda: grouped.upsert([record()], Via.WEBHOOK) for _ in range(CALLERS)]
    results = race(calls)
    counted, stored = results[:CALLERS], results[CALLERS:]
    assert [r.outcomes for r in stored] == [(Outcome.CREATED,)] * CALLERS
    # a count that found no batch under way sent its own and got its reply; the others None
    assert all(reply is None or reply == [reply[0]] for reply in counted)
    assert any(reply is None for reply in counted)
    assert grouped.stats()["nowait"] == CALLERS
    assert grouped.batch._busy is False and grouped.batch._queue == []


def test_a_command_error_stays_with_its_caller(grouped):
    key = raw_keys(grouped).stats
    wrong = key + ":string"
    raw_client(grouped).set(wrong, "x")
    calls = [lambda: grouped.batch.commands(lambda pipe: pipe.hincrby(wrong, "f", 1))]
    calls += [lambda: grouped.batch.commands(lambda pipe: pipe.hincrby(key, "ok", 1))
              for _ in range(CALLERS - 1)]
    results = race(calls)
    assert isinstance(results[0], Exception) and "WRONGTYPE" in str(results[0])
    assert all(reply == [n] for reply, n in zip(sorted(results[1:]), range(1, CALLERS)))
    raw_client(grouped).delete(wrong)


def test_a_hung_redis_fails_the_queued_calls_with_the_batch_in_flight(settings):
    """Redis frozen: the callers that queued behind a batch fail with it, not a timeout later.

    Each caller must get its 503 within one round trip's timeouts (about 1.7 s), as it would
    alone; waiting out the timeouts once more per batch would take twice that.
    """
    with EmbeddedRedis() as server:
        store = Store(settings.replace(redis_url=server.url), group_commit=True)
        store.upsert([record()], Via.WEBHOOK)  # connected, script loaded
        server.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            results = race([lambda: store.upsert([record()], Via.WEBHOOK) for _ in range(8)])
            elapsed = time.monotonic() - started
        finally:
            server.process.send_signal(signal.SIGCONT)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert elapsed < 2.8


def test_hourly_counts_are_summed_into_batches_and_none_is_lost(grouped, settings):
    """Webhook answers counted without waiting (``Traffic.count(wait=False)``) while upserts are
    in flight are summed in the process and sent with a later batch: every count arrives."""
    traffic = Traffic(settings, grouped.client, batch=grouped.batch)

    def webhook():
        grouped.upsert([record()], Via.WEBHOOK)
        traffic.count("accepted", wait=False)

    results = race([webhook] * CALLERS)
    assert not [r for r in results if isinstance(r, Exception)]
    traffic.count("rejected:signature_missing", "rejected:signature_missing")  # waits: flushes all
    hour = raw_client(grouped).hgetall(raw_keys(grouped).webhooks_hour(current_hour()))
    assert hour == {b"accepted": str(CALLERS).encode(), b"rejected:signature_missing": b"1"}
    assert raw_client(grouped).hget(raw_keys(grouped).stats, "rejected:signature_missing") == b"1"


def test_an_hourly_count_with_no_batch_under_way_is_written_at_once(grouped, settings):
    """With nothing in flight a count that does not wait is sent by its caller, so it is in
    Redis when ``count`` returns (a quiet receiver's charts are never behind)."""
    traffic = Traffic(settings, grouped.client, batch=grouped.batch)
    traffic.count("accepted", wait=False)
    hour = raw_client(grouped).hgetall(raw_keys(grouped).webhooks_hour(current_hour()))
    assert hour == {b"accepted": b"1"}

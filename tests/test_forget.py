"""`metriport-inbox forget --patient`: every record, index entry and feed entry of one patient
goes, for good, audited with a count; nothing of anyone else changes."""

import collections
import os
import pathlib
import subprocess
import sys

import pytest

from inbox import audit
from inbox.feed import Consumer
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.store import Via
from receiver import create_app
from simulator import Simulator
from simulator.data import patient_of
from webhook_helpers import message
from worker.reconcile import run

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))


def reconcile_run(settings, mode):
    """One reconciliation run's record (``Run.as_dict``)."""
    return run(settings, mode=mode).as_dict()


@pytest.fixture
def sim():
    with Simulator(seed=9, messages=0) as simulator:
        simulator.mailbox.add(200)
        yield simulator


def _cli(args, settings, answer=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRIPORT_", "INBOX_"))}
    env.update(REDIS_URL=settings.redis_url, INBOX_NAMESPACE=settings.namespace)
    return subprocess.run([COMMAND, *args], env=env, input=answer, capture_output=True,
                          text=True, timeout=120)


def _entries(client, key):
    return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()})
            for i, f in client.xrange(key)]


def test_forget_patient_removes_everything_of_theirs_and_stays_forgotten(
        settings, sim, store, redis_client):
    keys = RedisKeys(settings.namespace)
    reconcile = settings.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=50)
    assert reconcile_run(reconcile, mode="full")["created"] == 200
    by_patient = collections.defaultdict(list)
    for message_id in sim.mailbox.ids():
        by_patient[patient_of(sim.mailbox.get(message_id))].append(message_id)
    patient, theirs = max(((p, ids) for p, ids in by_patient.items() if p), key=lambda x: len(x[1]))
    consumer = Consumer(settings, "billing", "b-1")
    entries = consumer.read(count=120)  # some of the patient's entries are pending
    assert any(e.patient == patient for e in entries)
    consumer.dead_letter(next(e for e in entries if e.patient == patient), "bad_input")
    others = store.count(store.index_key()) - len(theirs)

    done = _cli(["forget", "--patient", patient, "--yes"], settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"forgot patient {patient}: {len(theirs)} messages, {len(theirs)} feed entries, "
        "1 dead letters removed (200 records scanned)")

    assert store.get_many(theirs) == [None] * len(theirs)
    assert not redis_client.exists(keys.idx_patient(patient))
    assert store.count(store.index_key()) == others
    feed = _entries(redis_client, keys.feed)
    assert not [f for _, f in feed if f["patient"] == patient or f["id"] in theirs]
    assert len(feed) == 200 - len(theirs)
    assert _entries(redis_client, keys.deadletter) == []
    pending = {p["message_id"].decode()
               for p in redis_client.xpending_range(keys.feed, "billing", "-", "+", 1000)}
    assert pending <= {i for i, _ in feed}
    for message_id in theirs:  # nothing of the patient is left in any record
        assert redis_client.hgetall(keys.msg(message_id)) == {b"e": b"forgotten"}
    client = create_app(settings.replace(inbox_api_keys=("k",))).test_client()
    listing = client.get(f"/medical/v1/message?patientId={patient}", headers={"x-api-key": "k"})
    assert listing.get_json()["messages"] == []

    entry = next(e for e in audit.read(redis_client, keys) if e.action != "message.list")
    assert (entry.action, entry.count, entry.query) == (
        "forget.patient", len(theirs), {"patientId": patient})

    again = reconcile_run(reconcile, mode="full")  # Metriport still lists them: they stay forgotten
    assert (again["created"], again["updated"]) == (0, 0)
    assert store.get_many(theirs) == [None] * len(theirs)
    assert store.stats()["forgotten"] == len(theirs)
    assert len(_entries(redis_client, keys.feed)) == 200 - len(theirs)


def test_forget_refuses_a_malformed_patient_id(settings):
    done = _cli(["forget", "--patient", "a b", "--yes"], settings)
    assert done.returncode == 2 and "patient id is 1-128" in done.stderr


@pytest.mark.parametrize("answer", ["n\n", ""])
def test_forget_without_yes_removes_nothing_unless_confirmed(settings, store, answer):
    """Declined, or no answer at all (a script without --yes): one documented error line and
    nothing removed, never click's bare "Aborted!"."""
    store.upsert([normalize(message("kept-1", patientId="p-kept"))], via=Via.WEBHOOK)
    done = _cli(["forget", "--patient", "p-kept"], settings, answer)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(  # the prompt's line: an answer from a pipe is not echoed
        "error: not_confirmed: Nothing was removed: not confirmed (answer y, or pass --yes).")
    assert "Aborted" not in done.stderr and done.stdout == ""
    assert store.get("kept-1") is not None

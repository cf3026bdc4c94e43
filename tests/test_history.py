"""A message's history: written by the store's scripts in the same call as the change it records."""

import pytest

from conftest import raw_client
from conftest import raw_keys
from inbox import audit
from inbox import history
from inbox.crypto import fingerprint
from inbox.store import Delivery
from inbox.normalize import normalize

T0 = "2024-05-01T10:00:00Z"


def communication(status="in-progress", text="CANARY-history", sent=T0):
    return {"resourceType": "Communication", "id": "m-hist-1", "status": status, "sent": sent,
            "topic": {"text": text}}


def test_webhook_replay_reconcile_and_status_are_each_one_event(settings, store):
    """Created by webhook, replayed, updated by reconcile, a repeated status: four events in order."""
    store.upsert([normalize(communication(), "inbound")], "webhook", delivery=Delivery("d-1", "h"))
    store.upsert([normalize(communication(), "inbound")], "webhook", delivery=Delivery("d-1", "h"))
    store.upsert([normalize(communication("completed", "changed"), "inbound")], "reconcile")
    store.apply_status("m-hist-1", "completed", 0)
    trace = history.trace(settings, raw_client(store), "m-hist-1")
    assert [(e.event, e.via, e.version, e.status) for e in trace.events] == [
        ("created", "webhook", 1, "in-progress"),
        ("replay", "webhook", 1, "in-progress"),
        ("updated", "reconcile", 2, "completed"),
        ("status-duplicate", "webhook", 2, "completed"),
    ]
    assert [e.digest_changed for e in trace.events] == [False, False, True, False]
    assert [e.delivery for e in trace.deliveries] == ["d-1", "d-1"]
    assert [(f["event"], f["version"], f["present"]) for f in trace.feed] == [
        ("created", "1", True), ("updated", "2", True)]
    assert "CANARY" not in repr(trace.as_dict())


def test_reconcile_duplicates_are_not_written_but_fetches_are(settings, store):
    """A walk seeing a message again leaves no event; a fetch that brings nothing new does."""
    store.upsert([normalize(communication(), "inbound")], "reconcile")
    store.upsert([normalize(communication(), "inbound")], "reconcile")
    store.upsert([normalize(communication(), "inbound")], "fetch")
    trace = history.trace(settings, raw_client(store), "m-hist-1")
    assert [(e.event, e.via) for e in trace.events] == [("created", "reconcile"), ("duplicate", "fetch")]
    assert len(trace.fetches) == 1


def test_history_is_capped(settings, store):
    """Past the cap the oldest events go; the newest stay."""
    store.upsert([normalize(communication(), "inbound")], "webhook")
    for _ in range(40):
        store.upsert([normalize(communication(), "inbound")], "webhook")
    events = history.trace(settings, raw_client(store), "m-hist-1").events
    assert len(events) == 32 and all(e.event == "duplicate" for e in events)


def test_audit_reads_and_unknown_ids(settings, store):
    """Reads naming the id are listed; an unknown id has an empty history; a bad id is refused."""
    store.upsert([normalize(communication(), "inbound")], "webhook")
    who = fingerprint("reader-key")
    audit.record(raw_client(store), raw_keys(store), who, "mirror.get", ids=["m-hist-1"])
    audit.record(raw_client(store), raw_keys(store), who, "mirror.get", ids=["other"])
    trace = history.trace(settings, raw_client(store), "m-hist-1")
    assert [(r.who, r.action) for r in trace.reads] == [(who, "mirror.get")]
    unknown = history.trace(settings, raw_client(store), "nobody")
    assert (unknown.exists, unknown.events, unknown.reads) == (False, (), ())
    with pytest.raises(ValueError):
        history.trace(settings, raw_client(store), "not an id")

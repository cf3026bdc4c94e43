"""First checks of the store against a real Redis: the fixtures go in once each."""

from conftest import fixture_json
from conftest import raw_client
from conftest import raw_keys
from inbox.normalize import normalize
from inbox.store import Outcome


def test_page_fixture_is_created_then_duplicate(store):
    """A list page stored twice: created the first time, duplicate the second, one feed entry each."""
    page = fixture_json("list-messages-page-1.json")
    records = [normalize(m, direction="inbound") for m in page["messages"]]
    first = store.upsert(records, "reconcile")
    second = store.upsert(records, "reconcile")
    assert first.outcomes == (Outcome.CREATED, Outcome.CREATED)
    assert second.outcomes == (Outcome.DUPLICATE, Outcome.DUPLICATE)
    assert raw_client(store).xlen(raw_keys(store).feed) == 2
    stored = store.get(records[0].id)
    assert stored.resource == page["messages"][0]
    assert stored.patient == "0195c3d1-2f4a-7e81-b9c2-5a7d3e6f8b10"
    assert store.ids(store.index_key(direction="inbound")) == sorted(
        (r.id for r in records), reverse=True
    )


def test_status_applies_to_a_stored_message_once(store):
    """A failed status updates a processing message once; the same status again is a duplicate."""
    record = normalize({"id": "m-1", "status": "processing", "updatedAt": "2026-01-01T00:00:00Z"},
                       direction="outbound")
    store.upsert([record], "reconcile")
    assert store.apply_status("m-1", "failed", record.as_of + 1000) == Outcome.UPDATED
    assert store.apply_status("m-1", "failed", record.as_of + 2000) == Outcome.DUPLICATE
    assert store.apply_status("m-2", "failed", 1) is None
    stored = store.get("m-1")
    assert (stored.status, stored.version) == ("failed", 2)
    assert raw_client(store).xlen(raw_keys(store).feed) == 2

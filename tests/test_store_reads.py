"""Read helpers on a few hundred messages: id cursors by index, counts and counters."""

import pytest

from inbox.normalize import normalize
from inbox.store import Store

COUNT = 300


def _message_id(i):
    return f"019a{i:04x}-0000-7000-8000-000000000000"


@pytest.fixture
def filled(store):
    """300 messages: even ones inbound, odd ones outbound, patients p-0..p-4, every 10th without."""
    records = []
    for i in range(COUNT):
        message = {"id": _message_id(i), "status": "completed", "sentAt": "2026-01-01T00:00:00Z"}
        if i % 10:
            message["patientId"] = f"p-{i % 5}"
        records.append(normalize(message, direction="inbound" if i % 2 == 0 else "outbound"))
    store.upsert(records, "reconcile")
    return store


def _walk(store, index_key, count, descending):
    """Every id of an index, page by page, resuming each page from the id after the last one."""
    seen, start = [], None
    while True:
        page = store.ids(index_key, start=start, count=count + 1, descending=descending)
        seen.extend(page[:count])
        if len(page) <= count:
            return seen
        start = page[count]


def test_descending_walk_lists_every_id_newest_first(filled):
    """A walk of ``all`` with an inclusive cursor returns every id once, in descending id order."""
    ids = _walk(filled, filled.index_key(), 47, descending=True)
    assert ids == sorted((_message_id(i) for i in range(COUNT)), reverse=True)


def test_ascending_walk_lists_every_id_oldest_first(filled):
    """Ascending pages (what ``toItem`` needs) cover the index in id order."""
    ids = _walk(filled, filled.index_key(), 64, descending=False)
    assert ids == sorted(_message_id(i) for i in range(COUNT))


def test_start_is_inclusive_in_both_directions(filled):
    """The cursor id itself is the first id of the page, descending and ascending."""
    pivot = _message_id(150)
    down = filled.ids(filled.index_key(), start=pivot, count=3)
    up = filled.ids(filled.index_key(), start=pivot, count=3, descending=False)
    assert down == [_message_id(150), _message_id(149), _message_id(148)]
    assert up == [_message_id(150), _message_id(151), _message_id(152)]


def test_start_between_ids_begins_at_the_next_one(filled):
    """A cursor that is not a stored id starts at the nearest id on the walking side."""
    between = _message_id(150)[:-1] + "1"
    assert filled.ids(filled.index_key(), start=between, count=1) == [_message_id(150)]
    assert filled.ids(filled.index_key(), start=between, count=1, descending=False) == [
        _message_id(151)]


def test_direction_filter_lists_only_that_direction(filled):
    """The direction index holds exactly the messages stored with that direction."""
    inbound = _walk(filled, filled.index_key(direction="inbound"), 40, descending=True)
    assert inbound == sorted((_message_id(i) for i in range(0, COUNT, 2)), reverse=True)
    assert filled.count(filled.index_key(direction="outbound")) == COUNT // 2


def test_patient_filter_lists_only_that_patient(filled):
    """The patient index holds that patient's ids, and a patient filter wins over direction."""
    expected = sorted((_message_id(i) for i in range(COUNT) if i % 5 == 2 and i % 10),
                      reverse=True)
    assert _walk(filled, filled.index_key(patient="p-2"), 10, descending=True) == expected
    assert filled.index_key(direction="inbound", patient="p-2") == filled.index_key(patient="p-2")
    assert filled.count(filled.index_key(patient="p-9")) == 0


def test_inserts_during_a_walk_do_not_shift_it(filled):
    """Ids added above the cursor mid-walk never repeat or skip ids below it."""
    first = filled.ids(filled.index_key(), count=101)
    filled.upsert([normalize({"id": "019affff-new"}, direction="inbound")], "webhook")
    rest = _walk_from(filled, first[100])
    assert first[:100] + rest == sorted((_message_id(i) for i in range(COUNT)), reverse=True)


def _walk_from(store, start):
    return store.ids(store.index_key(), start=start, count=1000)


def test_counters_and_empty_index(settings, filled):
    """stats() sums the page's outcomes per channel; an empty index lists nothing."""
    assert filled.stats() == {"created": COUNT, "created:reconcile": COUNT}
    empty = Store(settings.replace(namespace=settings.namespace + "-empty"))
    assert empty.ids(empty.index_key()) == [] and empty.count(empty.index_key()) == 0
    assert empty.stats() == {}

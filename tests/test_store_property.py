"""Property: the order and channel in which versions of a message arrive never change the end state."""

import datetime
import itertools
import uuid

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conftest import raw_client
from conftest import raw_keys
from inbox.normalize import TERMINAL_STATUSES
from inbox.normalize import normalize
from inbox.store import Outcome
from inbox.store import Store

TERMINAL = sorted(TERMINAL_STATUSES)
OPEN = ("in-progress", "processing", "preparation")
PATIENTS = ("p-a", "p-b", "p-c")
BASE = datetime.datetime(2026, 9, 14, tzinfo=datetime.timezone.utc)


def _iso(offset_seconds):
    return (BASE + datetime.timedelta(seconds=offset_seconds)).isoformat().replace("+00:00", "Z")


@st.composite
def histories(draw):
    """Versions of one message with distinct (terminal, as-of) ranks, and an arrival schedule."""
    ranks = draw(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=5,
                          unique=True))
    versions = []
    for terminal, offset in ranks:
        versions.append(dict(
            terminal=terminal,
            offset=offset,
            status=draw(st.sampled_from(TERMINAL if terminal else OPEN)),
            shape=draw(st.sampled_from(("communication", "wrapped", "dto"))),
            patient=draw(st.sampled_from(PATIENTS + (None,))),
        ))
    order = draw(st.permutations(range(len(versions))))
    repeats = draw(st.lists(st.integers(0, len(versions) - 1), max_size=4))
    arrivals = draw(st.permutations(list(order) + repeats))
    vias = draw(st.lists(st.sampled_from(("webhook", "reconcile", "fetch")),
                         min_size=len(arrivals), max_size=len(arrivals)))
    batched = draw(st.booleans())
    return versions, list(zip(arrivals, vias)), batched


def _resource(message_id, version):
    """A version in its shape; ``updatedAt`` / ``meta.lastUpdated`` carry its as-of."""
    when = _iso(version["offset"])
    if version["shape"] == "dto":
        dto = {"id": message_id, "direction": "outbound", "status": version["status"],
               "sentAt": _iso(0), "updatedAt": when}
        if version["patient"]:
            dto["patientId"] = version["patient"]
        return dto
    resource = {"resourceType": "Communication", "id": message_id, "status": version["status"],
                "sent": _iso(0), "meta": {"lastUpdated": when}}
    if version["patient"]:
        resource["subject"] = {"reference": f"Patient/{version['patient']}"}
    return {"communication": resource} if version["shape"] == "wrapped" else resource


def _deliver(store, message_id, versions, arrivals, batched):
    """Upsert the arrivals one call each, or consecutive arrivals of one channel as one page."""
    groups = itertools.groupby(arrivals, key=lambda arrival: arrival[1]) if batched else (
        (via, [(index, via)]) for index, via in arrivals)
    outcomes = []
    for via, group in groups:
        records = [normalize(_resource(message_id, versions[i]), direction="outbound")
                   for i, _ in group]
        outcomes.extend(store.upsert(records, via).outcomes)
    return outcomes


@hypothesis_settings(max_examples=50, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_any_interleaving_ends_in_the_highest_ranked_version(settings, history):
    """Whatever the order and channel, the record is the top-ranked version, created exactly once."""
    versions, arrivals, batched = history
    store = Store(settings)
    message_id = f"m-{uuid.uuid4().hex}"
    outcomes = _deliver(store, message_id, versions, arrivals, batched)

    winner = max(versions, key=lambda v: (v["terminal"], v["offset"]))
    expected = _resource(message_id, winner)
    stored = store.get(message_id)
    assert stored.resource == expected.get("communication", expected)
    assert (stored.status, stored.patient) == (winner["status"], winner["patient"])
    assert stored.as_of == normalize(expected).as_of

    assert outcomes.count(Outcome.CREATED) == 1
    entries = [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in raw_client(store).xrange(raw_keys(store).feed)
        if fields[b"id"] == message_id.encode()
    ]
    assert [e["event"] for e in entries].count("created") == 1
    assert [int(e["version"]) for e in entries] == list(range(1, len(entries) + 1))
    assert stored.version == len(entries)
    assert entries[-1]["status"] == winner["status"]
    for patient in PATIENTS:
        listed = message_id in store.ids(store.index_key(patient=patient), count=1000)
        assert listed == (patient == winner["patient"])

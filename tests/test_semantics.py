"""Same message, same record: equality by meaning, whatever the key ring and the shape.

Real parts only: the simulator (HTTP on 127.0.0.1), the receiver app served by a real WSGI
server in a thread, the real reconciler and a real Redis. Each test ends by comparing the store
and the feed with the simulator: every message once, no `updated` entry that nothing caused.
"""

import collections

import pytest

from conftest import TEST_WEBHOOK_KEY
from conftest import raw_client
from conftest import raw_keys
from conftest import reconcile_summary as run
from inbox.crypto import Vault
from inbox.rekey import rekey
from inbox.store import Store
from receiver import create_app
from servers import serving
from simulator import Simulator


K1 = ("k1", b"\x01" * 32)
K2 = ("k2", b"\x02" * 32)
PAGE = 100


def feed(store):
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in raw_client(store).xrange(raw_keys(store).feed)]


def reconcile(settings, sim, mode="full"):
    configured = settings.replace(api_key=sim.api_key, api_url=sim.url, reconcile_page_size=PAGE)
    summary = run(configured, mode=mode)
    assert summary["outcome"] == "completed", summary
    return summary


def assert_store_equals_simulator(store, sim):
    """Every simulator message stored once, as the simulator has it now."""
    ids = sim.mailbox.ids()
    assert store.count(store.index_key()) == len(ids)
    for stored in store.get_many(ids):
        assert stored.resource == sim.mailbox.get(stored.id)


def versions(store, ids):
    return collections.Counter(stored.version for stored in store.get_many(ids))


@pytest.fixture
def receiver(settings):
    """The receiver app on a real WSGI server on 127.0.0.1, stopped after the test."""
    with serving(create_app(settings)) as url:
        yield url


def test_switching_encryption_on_rotating_and_retiring_keys_announces_nothing(settings):
    """A store written in clear, then walked with a key ring, rotated and the old key retired:
    0 feed entries and no version bumps; records end sealed under the newest key; rekey works."""
    with Simulator(seed=21, messages=600) as sim:
        clear = Store(settings)
        first = reconcile(settings, sim)
        assert first["created"] == 600 and len(feed(clear)) == 600
        ids = sim.mailbox.ids()

        ring1 = settings.replace(encryption_keys=(K1,))
        on = reconcile(ring1, sim)
        assert (on["created"], on["updated"], on["duplicates"]) == (0, 0, 600)
        store1 = Store(ring1)
        assert len(feed(store1)) == 600 and versions(store1, ids) == {1: 600}
        # the walk resealed what it read: nothing left in clear for rekey
        blobs = [raw_client(store1).hget(raw_keys(store1).msg(i), "r") for i in ids]
        assert {Vault.kid_of(blob) for blob in blobs} == {"k1"}
        assert rekey(store1).resealed == 0

        rotated = settings.replace(encryption_keys=(K2, K1))
        assert reconcile(rotated, sim)["updated"] == 0
        store2 = Store(rotated)
        assert len(feed(store2)) == 600 and versions(store2, ids) == {1: 600}
        assert rekey(store2).failed == []

        retired = settings.replace(encryption_keys=(K2,))
        assert reconcile(retired, sim)["updated"] == 0
        store3 = Store(retired)
        assert len(feed(store3)) == 600 and versions(store3, ids) == {1: 600}
        assert_store_equals_simulator(store3, sim)

        # a real change is still an update, announced once
        changed = sim.mailbox.update(count=5)
        assert len(changed) == 5
        assert reconcile(retired, sim)["updated"] == 5
        assert len(feed(store3)) == 605
        assert_store_equals_simulator(store3, sim)


def test_keys_switched_on_before_rekey_with_records_never_walked_since(settings):
    """Keys on while records are still in clear; rekey first, then the walk: still 0 entries."""
    with Simulator(seed=22, messages=200) as sim:
        reconcile(settings, sim)
        ring = settings.replace(encryption_keys=(K1,))
        store = Store(ring)
        progress = rekey(store)
        assert progress.resealed == 200 and progress.failed == []
        assert reconcile(ring, sim)["updated"] == 0
        assert len(feed(store)) == 200 and versions(store, sim.mailbox.ids()) == {1: 200}


def test_records_from_before_tagged_digests_are_compared_by_meaning(settings):
    """Records whose digest predates tags (an upgraded store) are compared by their opened
    resources: no update, and the walk rewrites their digests in the tagged form."""
    with Simulator(seed=23, messages=150) as sim:
        reconcile(settings, sim)
        store = Store(settings)
        for message_id in sim.mailbox.ids():
            raw_client(store).hset(raw_keys(store).msg(message_id), "h", "0123456789abcdef" * 2)
        summary = reconcile(settings, sim)
        assert (summary["updated"], summary["duplicates"]) == (0, 150)
        assert len(feed(store)) == 150
        digests = {raw_client(store).hget(raw_keys(store).msg(i), "h")[:3] for i in sim.mailbox.ids()}
        assert digests == {b"3m1"}


def test_flat_object_by_webhook_then_communication_by_reconcile_is_one_entry(settings, receiver):
    """Inbound messages delivered as the SDK's flat object, then read as Communications by a full
    walk: exactly one feed entry each (created, via webhook), and the Communication is stored."""
    with Simulator(seed=24, messages=0, webhook_url=receiver,
                   webhook_key=TEST_WEBHOOK_KEY) as sim:
        inbound = sim.mailbox.add(120, "inbound")
        sim.mailbox.add(40, "outbound", pending=False)
        report = sim.deliver_webhooks(inbound, shape="dto")
        assert report.succeeded == 120
        store = Store(settings)
        assert {s.resource.get("resourceType") for s in store.get_many(inbound)} == {None}

        summary = reconcile(settings, sim)
        assert (summary["created"], summary["updated"]) == (40, 0)
        entries = feed(store)
        per_id = collections.Counter(e["id"] for e in entries)
        assert set(per_id.values()) == {1} and len(per_id) == 160
        assert {e["event"] for e in entries} == {"created"}
        assert {e["via"] for e in entries if e["id"] in set(inbound)} == {"webhook"}
        assert versions(store, inbound) == {1: 120}
        assert_store_equals_simulator(store, sim)
        assert reconcile(settings, sim)["updated"] == 0 and len(feed(store)) == 160


def test_status_webhook_then_reconcile_announces_the_status_once(settings, receiver):
    """An outbound message walked in progress, its message.status webhook (updated, once), then a
    walk that reads the completed Communication: no second entry, and the mirror copy follows."""
    with Simulator(seed=25, messages=0, webhook_url=receiver,
                   webhook_key=TEST_WEBHOOK_KEY) as sim:
        pending = sim.mailbox.add(30, "outbound", pending=True)
        reconcile(settings, sim)
        done = sim.mailbox.update(message_ids=pending)
        assert sim.deliver_webhooks(done).succeeded == 30
        store = Store(settings)
        assert len(feed(store)) == 60
        summary = reconcile(settings, sim)
        assert summary["updated"] == 0
        assert len(feed(store)) == 60 and versions(store, pending) == {2: 30}
        assert_store_equals_simulator(store, sim)

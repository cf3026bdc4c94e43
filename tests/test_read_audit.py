"""Reads through the mirror and feed HTTP APIs leave an audit entry; unreadable records fail cleanly."""

from conftest import raw_client
from conftest import raw_keys
from inbox import audit
from inbox.crypto import fingerprint
from inbox.crypto import keygen
from inbox.normalize import normalize
from inbox.settings import Settings
from inbox.store import Store
from receiver import create_app

KEY = {"x-api-key": "test-reader-key"}


def stored(settings, *ids):
    store = Store(settings)
    store.upsert([normalize({"id": i, "status": "completed"}, "inbound") for i in ids], "reconcile")
    return store


def test_mirror_and_feed_reads_are_audited_by_key_fingerprint(settings, client):
    """A list, a get and a feed poll each leave one entry naming the key's fingerprint and the ids."""
    store = stored(settings, "m-1", "m-2")
    assert client.get("/medical/v1/message?direction=inbound", headers=KEY).status_code == 200
    assert client.get("/medical/v1/message/m-1", headers=KEY).status_code == 200
    assert client.get("/feed?limit=10", headers=KEY).status_code == 200
    entries = audit.read(raw_client(store), raw_keys(store), 10)
    assert [(e.action, sorted(e.ids)) for e in reversed(entries)] == [
        ("message.list", ["m-1", "m-2"]),
        ("message.get", ["m-1"]),
        ("feed.read", ["m-1", "m-2"]),
    ]
    assert {e.who for e in entries} == {fingerprint("test-reader-key")}
    assert entries[-1].query == {"direction": "inbound"}


def test_a_record_sealed_under_an_unknown_key_is_a_json_500_naming_only_the_id(settings):
    """Reading a record the ring cannot open answers a coded JSON error, not a traceback."""
    old = Settings.from_env({"INBOX_ENCRYPTION_KEYS": keygen("old")}).encryption_keys
    new = Settings.from_env({"INBOX_ENCRYPTION_KEYS": keygen("new")}).encryption_keys
    stored(settings.replace(encryption_keys=old), "m-9")
    client = create_app(settings.replace(encryption_keys=new)).test_client()
    response = client.get("/medical/v1/message/m-9", headers=KEY)
    assert response.status_code == 500
    assert response.get_json()["error"].startswith("decrypt_")
    assert "m-9" in response.get_json()["detail"]

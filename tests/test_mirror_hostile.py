"""The mirror under the encryption and filter cases of issue #14, against a real Redis.

- a record sealed under a key no longer in the ring fails alone: the page is served without it,
  ``X-Inbox-Unreadable`` says how many were left out, counters and metrics count them;
- an unsealed blob is served only when the record says it was written unencrypted, until rekey;
- every filter the SDK sends (status, destination, direction, patientId) is honoured, carried in
  the page links, and a value outside its domain is a 400 in Metriport's shape.
"""

import pytest

from conftest import raw_client
from conftest import raw_keys
from inbox.crypto import Vault
from inbox.crypto import keygen
from inbox.normalize import normalize
from inbox.rekey import rekey
from inbox.settings import Settings
from inbox.store import Store
from receiver import create_app
from receiver.mirror import UNREADABLE_HEADER

KEY = {"x-api-key": "test-reader-key"}
OLD = Settings.from_env({"INBOX_ENCRYPTION_KEYS": keygen("old")}).encryption_keys
NEW = Settings.from_env({"INBOX_ENCRYPTION_KEYS": keygen("new")}).encryption_keys


def communication(n, status="completed", patient="p-1", destination="dr.who@direct.example.org"):
    return {"resourceType": "Communication", "id": f"m-{n:02d}", "status": status,
            "subject": {"reference": f"Patient/{patient}"},
            "recipient": [{"type": "Organization", "display": destination},
                          {"type": "Practitioner", "display": "1234567893"}],
            "sent": f"2026-09-14T15:{n:02d}:00Z"}


def dto(n, status="processing", patient="p-2", destination="1.2.840.114350"):
    return {"id": f"m-{n:02d}", "patientId": patient, "direction": "outbound", "status": status,
            "destination": destination, "subject": "s", "sentAt": f"2026-09-14T15:{n:02d}:00Z"}


def put(settings, direction, *resources):
    Store(settings).upsert([normalize(r, direction) for r in resources], "reconcile")


def listed(client, query=""):
    response = client.get(f"/medical/v1/message?{query}", headers=KEY)
    assert response.status_code == 200, response.get_json()
    return response


def ids_of(response):
    return [m["id"] for m in response.get_json()["messages"]]


def test_a_record_under_a_key_gone_from_the_ring_fails_alone(settings):
    """Before: every list page holding it was a 500. Now: the rest of the page, and a count."""
    put(settings.replace(encryption_keys=OLD), "inbound", communication(3))
    put(settings.replace(encryption_keys=NEW), "inbound", *(communication(n) for n in (1, 2, 4, 5)))
    app = create_app(settings.replace(encryption_keys=NEW))
    client = app.test_client()

    response = listed(client, "count=3")
    assert ids_of(response) == ["m-05", "m-04", "m-02"]
    assert response.headers[UNREADABLE_HEADER] == "1"
    nxt = response.get_json()["meta"]["nextPage"]
    second = listed(client, nxt.split("?", 1)[1])
    assert ids_of(second) == ["m-01"] and UNREADABLE_HEADER not in second.headers

    single = client.get("/medical/v1/message/m-03", headers=KEY)
    assert single.status_code == 500 and single.get_json()["error"] == "decrypt_unknown_key"
    assert single.headers[UNREADABLE_HEADER] == "1"

    counters = Store(settings).stats()
    assert counters["unreadable:decrypt_unknown_key"] == 2
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'metriport_inbox_records_unreadable_total{reason="decrypt_unknown_key"} 2.0' in metrics


def test_an_unsealed_blob_is_served_only_when_written_unencrypted_and_rekey_ends_it(settings):
    """Marked plain (written with no keys): served until rekey seals it. Unmarked plain: refused."""
    put(settings, "inbound", communication(1), communication(2))  # no keys: marked unencrypted
    encrypted = settings.replace(encryption_keys=NEW)
    store = Store(encrypted)
    raw_client(store).hset(raw_keys(store).msg("m-02"), "r",
                      b'{"resourceType":"Communication","id":"m-02","status":"completed","note":"forged"}')
    client = create_app(encrypted).test_client()

    response = listed(client)
    assert ids_of(response) == ["m-01"]
    assert response.headers[UNREADABLE_HEADER] == "1"
    forged = client.get("/medical/v1/message/m-02", headers=KEY)
    assert (forged.status_code, forged.get_json()["error"]) == (500, "decrypt_unsealed")

    progress = rekey(store)
    assert progress.resealed == 1 and progress.failed == [("m-02", "decrypt_unsealed")]
    assert Vault.kid_of(raw_client(store).hget(raw_keys(store).msg("m-01"), "r")) == "new"  # sealed now
    assert client.get("/medical/v1/message/m-01", headers=KEY).get_json()["communication"]["id"] == "m-01"


def test_every_sdk_filter_is_honoured_and_carried_in_the_links(settings, client):
    put(settings, "inbound", communication(1), communication(2, status="in-progress"),
        communication(3, destination="other@direct.example.org"), communication(4, patient="p-9"))
    put(settings, "outbound", dto(5), dto(6, status="failed"), dto(7, status="completed"),
        dto(8, destination="other@direct.example.org"))

    assert ids_of(listed(client, "status=completed")) == ["m-07", "m-04", "m-03", "m-01"]
    assert ids_of(listed(client, "status=processing")) == ["m-08", "m-05", "m-02"]
    assert ids_of(listed(client, "status=failed")) == ["m-06"]
    assert ids_of(listed(client, "destination=other@direct.example.org")) == ["m-08", "m-03"]
    assert ids_of(listed(client, "destination=1.2.840.114350&direction=outbound")) == ["m-07", "m-06", "m-05"]
    assert ids_of(listed(client, "status=completed&patientId=p-1&direction=inbound")) == ["m-03", "m-01"]
    assert ids_of(listed(client, "destination=nobody@nowhere.example")) == []

    first = listed(client, "status=processing&destination=1.2.840.114350&count=1").get_json()
    assert first["meta"]["itemsInTotal"] == 1
    assert first["messages"][0]["id"] == "m-05"

    page = listed(client, "status=completed&direction=inbound&patientId=p-1&count=1")
    meta = page.get_json()["meta"]
    assert (ids_of(page), meta["itemsInTotal"]) == (["m-03"], 2)
    link = meta["nextPage"]
    for part in ("status=completed", "direction=inbound", "patientId=p-1", "fromItem=m-01", "count=1"):
        assert part in link
    following = listed(client, link.split("?", 1)[1]).get_json()
    assert [m["id"] for m in following["messages"]] == ["m-01"]
    assert "status=completed" in following["meta"]["prevPage"]

    page = listed(client, "destination=other@direct.example.org&count=1")
    link = page.get_json()["meta"]["nextPage"]
    assert "destination=other%40direct.example.org" in link and "fromItem=m-03" in link
    assert ids_of(listed(client, link.split("?", 1)[1])) == ["m-03"]


@pytest.mark.parametrize("query,detail", [
    ("status=in-progress", "status must be one of processing, completed, failed."),
    ("status=completed%0A", "status must be one of processing, completed, failed."),
    ("status=done", "status must be one of processing, completed, failed."),
    ("direction=sideways", "direction must be one of inbound, outbound."),
    ("patientId=p-1%0A", "patientId must be 1-128 characters of A-Z a-z 0-9 . _ : -."),
    ("destination=" + "d" * 256, "destination must be 1-255 printable characters."),
    ("destination=a%0Ab", "destination must be 1-255 printable characters."),
    ("fromItem=m-1%0A", "fromItem must be a message id."),
])
def test_a_filter_value_outside_its_domain_is_a_metriport_400(query, detail, client):
    response = client.get(f"/medical/v1/message?{query}", headers=KEY)
    assert response.status_code == 400
    assert response.get_json() == {"status": 400, "name": "BAD_REQUEST",
                                   "title": "Missing or invalid parameters", "detail": detail}

"""``GET /feed``: polling the feed over HTTP by position."""

import pytest

from inbox.normalize import normalize

KEY = {"x-api-key": "test-reader-key"}


def communication(n):
    return {
        "resourceType": "Communication",
        "id": f"m-{n:05d}",
        "status": "in-progress" if n % 2 else "completed",
        "subject": {"reference": f"Patient/p-{n % 3}"},
        "topic": {"text": f"subject line {n}"},
    }


def test_poll_returns_every_entry_once_across_calls(store, client):
    """Following ``next`` returns each entry exactly once, also with entries added mid-walk."""
    store.upsert([normalize(communication(n), "inbound") for n in range(150)], "webhook")
    seen, position, polls = [], None, 0
    while True:
        query = f"?limit=40&after={position}" if position else "?limit=40"
        body = client.get(f"/feed{query}", headers=KEY).get_json()
        polls += 1
        if polls == 2:  # 30 new messages and 10 updates arrive between two polls
            store.upsert([normalize(communication(n), "inbound") for n in range(150, 180)], "webhook")
            changed = [{**communication(n), "status": "completed"} for n in range(1, 21, 2)]
            store.upsert([normalize(c, "inbound") for c in changed], "reconcile")
        if not body["entries"]:
            assert body["next"] == position
            break
        seen += body["entries"]
        position = body["next"]
        assert position == body["entries"][-1]["id"]
    assert len(seen) == 190 and len({e["id"] for e in seen}) == 190
    assert [e["event"] for e in seen].count("updated") == 10
    assert {e["messageId"] for e in seen} == {f"m-{n:05d}" for n in range(180)}


def test_poll_holds_routing_fields_only(store, client):
    """An entry carries ids and routing fields, never the subject or body."""
    store.upsert([normalize(communication(4), "inbound")], "webhook")
    body = client.get("/feed", headers=KEY).get_json()
    (entry,) = body["entries"]
    assert set(entry) == {"id", "event", "messageId", "via", "version", "direction", "patientId", "status"}
    assert (entry["messageId"], entry["patientId"], entry["via"]) == ("m-00004", "p-1", "webhook")
    assert "subject line" not in str(body)


def test_default_limit_is_100(store, client):
    """Without ``limit`` a poll returns at most 100 entries."""
    store.upsert([normalize(communication(n), "inbound") for n in range(120)], "webhook")
    body = client.get("/feed", headers=KEY).get_json()
    assert len(body["entries"]) == 100


@pytest.mark.parametrize("query,code", [
    ("limit=0", "invalid_limit"),
    ("limit=1001", "invalid_limit"),
    ("limit=ten", "invalid_limit"),
    ("after=yesterday", "invalid_position"),
    ("after=1-2-3", "invalid_position"),
])
def test_bad_poll_parameters_are_400(query, code, client):
    """A bad position or limit is refused with a reason code, not a Redis error."""
    response = client.get(f"/feed?{query}", headers=KEY)
    assert response.status_code == 400
    assert response.get_json()["error"] == code

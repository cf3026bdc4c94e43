"""The mirror API: Metriport's List/Get Message shape, pagination, filters and auth, from the store."""

import json
import random
import uuid
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from conftest import raw_keys
from inbox.connection import Connections
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Store
from receiver import create_app

KEY = {"x-api-key": "test-reader-key"}
ORIGIN = "https://inbox.example.org"
PATIENTS = [f"0195c3d1-2f4a-7e81-b9c2-{p:012d}" for p in range(7)]


def message(n, rng):
    """A Communication with a random, time-ordered-looking id; every 11th has no patient."""
    resource = {
        "resourceType": "Communication",
        "id": f"019a{rng.getrandbits(28):07x}-{rng.getrandbits(16):04x}-7{n:03x}-8000-{n:012d}",
        "status": "completed",
        "topic": {"text": f"subject {n}"},
        "sent": "2026-09-14T15:41:50.000Z",
    }
    if n % 11:
        resource["subject"] = {"reference": f"Patient/{PATIENTS[n % 7]}"}
    return resource, ("outbound" if n % 3 == 0 else "inbound")


@pytest.fixture(scope="module")
def big(redis_url):
    """1,234 messages stored in shuffled order; yields (app client, {id: (direction, patient)})."""
    settings = Settings(
        redis_url=redis_url, namespace=f"test-{uuid.uuid4().hex[:12]}",
        webhook_keys=("k",), inbox_api_keys=("test-reader-key",),
    )
    rng = random.Random(7)
    messages = [message(n, rng) for n in range(1234)]
    rng.shuffle(messages)
    store = Store(settings)
    records = [normalize(resource, direction) for resource, direction in messages]
    for start in range(0, len(records), 500):
        store.upsert(records[start:start + 500], "reconcile")
    catalog = {r.id: (r.direction, r.patient) for r in records}
    yield create_app(settings).test_client(), catalog
    client = Connections(settings).store
    for key in client.scan_iter(match=RedisKeys(settings.namespace).pattern(), count=1000):
        client.delete(key)


def get(client, url):
    """GET an absolute or relative URL through the test client, as if on ``ORIGIN``."""
    parts = urlsplit(url)
    if parts.scheme:
        assert f"{parts.scheme}://{parts.netloc}" == ORIGIN
    return client.get(f"{parts.path}?{parts.query}", base_url=ORIGIN, headers=KEY)


def walk(client, url, link):
    """Follow ``link`` (nextPage or prevPage) from ``url``; the pages in the order visited."""
    pages = []
    while url:
        response = get(client, url)
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        assert page["meta"]["itemsOnPage"] == len(page["messages"])
        pages.append(page)
        url = page["meta"].get(link)
    return pages


def expected(catalog, direction=None, patient=None):
    return sorted(
        (i for i, (d, p) in catalog.items()
         if (direction is None or d == direction) and (patient is None or p == patient)),
        reverse=True,
    )


CASES = [
    (1, {}),
    (50, {}),
    (500, {}),
    (50, {"direction": "outbound"}),
    (13, {"patientId": PATIENTS[3]}),
    (1, {"direction": "inbound", "patientId": PATIENTS[5]}),
]


@pytest.mark.parametrize("count,filters", CASES)
def test_pages_forward_and_backward_list_each_message_once(big, count, filters):
    """Forward by nextPage and back by prevPage: every match exactly once, id-descending."""
    client, catalog = big
    want = expected(catalog, filters.get("direction"), filters.get("patientId"))
    query = "&".join(f"{k}={v}" for k, v in {"count": count, **filters}.items())
    forward = walk(client, f"/medical/v1/message?{query}", "nextPage")
    ids = [m["id"] for page in forward for m in page["messages"]]
    assert ids == want
    assert forward[0]["meta"]["itemsInTotal"] == len(want)
    assert all("itemsInTotal" not in page["meta"] for page in forward[1:])
    assert all(len(page["messages"]) == count for page in forward[:-1])
    for page in forward:
        for url in filter(None, (page["meta"].get("nextPage"), page["meta"].get("prevPage"))):
            query = parse_qs(urlsplit(url).query)
            assert query["count"] == [str(count)]
            assert {k: v[0] for k, v in query.items() if k in filters} == filters
    last_page_url = forward[-1]["meta"].get("prevPage")
    if last_page_url is None:
        return
    backward = walk(client, last_page_url, "prevPage")
    back_ids = [m["id"] for page in reversed(backward) for m in page["messages"]]
    last_ids = [m["id"] for m in forward[-1]["messages"]]
    assert back_ids + last_ids == want
    assert "itemsInTotal" in backward[-1]["meta"] and "prevPage" not in backward[-1]["meta"]


def test_to_item_page_links_forward_again(big):
    """A toItem page's nextPage continues right after it, like Metriport's backward pages."""
    client, catalog = big
    want = expected(catalog)
    page = get(client, f"/medical/v1/message?toItem={want[100]}&count=10").get_json()
    assert [m["id"] for m in page["messages"]] == want[91:101]
    following = get(client, page["meta"]["nextPage"]).get_json()
    assert [m["id"] for m in following["messages"]] == want[101:111]
    assert parse_qs(urlsplit(page["meta"]["prevPage"]).query)["toItem"] == [want[90]]


def test_first_page_meta_matches_metriport_fixture_shape(big):
    """Default count is 50; the first page has nextPage, itemsOnPage and itemsInTotal only."""
    client, catalog = big
    meta = get(client, "/medical/v1/message?direction=inbound").get_json()["meta"]
    want = expected(catalog, "inbound")
    assert list(meta) == ["nextPage", "itemsOnPage", "itemsInTotal"]
    assert meta["nextPage"] == (
        f"{ORIGIN}/medical/v1/message?fromItem={want[50]}&count=50&direction=inbound"
    )


@pytest.mark.parametrize("query,detail", [
    ("count=501", "Count has to be less than or equal to 500"),
    ("count=-1", "Count has to be greater than or equal to 0"),
    ("count=many", "Count has to be a number."),
    ("fromItem=a&toItem=b", "Either fromItem or toItem can be provided, but not both"),
    ("direction=sideways", "direction must be one of inbound, outbound."),
])
def test_bad_parameters_answer_400_in_metriport_shape(big, query, detail):
    """Parameters Metriport refuses get its error shape with a 400."""
    client, _ = big
    response = get(client, f"/medical/v1/message?{query}")
    assert response.status_code == 400
    assert response.get_json() == {
        "status": 400, "name": "BAD_REQUEST", "title": "Missing or invalid parameters", "detail": detail,
    }


def test_get_message_serves_the_stored_bytes(store, client):
    """``/<id>`` wraps the resource as received, byte for byte, in ``communication``."""
    raw = b'{"resourceType":"Communication","zeta":1,"id":"m-1","alpha":"\xc3\xa9"}'
    record = normalize(json.loads(raw), "inbound")
    store.upsert([record], "webhook")
    response = client.get("/medical/v1/message/m-1", headers=KEY)
    assert response.status_code == 200
    assert response.data == b'{"communication":' + raw + b"}"
    listed = client.get("/medical/v1/message", headers=KEY)
    assert raw in listed.data


def test_unknown_message_is_404_in_metriport_shape(client):
    """An unknown id answers Metriport's NotFoundError shape."""
    response = client.get("/medical/v1/message/nope", headers=KEY)
    assert response.status_code == 404
    body = response.get_json()
    assert (body["status"], body["name"], body["title"]) == (404, "NOT_FOUND", "NotFoundError")


def test_patient_filter_checks_the_record(store, redis_client, client):
    """An id left in a patient's index after its record moved is not listed for that patient."""
    store.upsert([normalize(message(1, random.Random(1))[0], "inbound")], "webhook")
    moved = normalize(message(2, random.Random(2))[0], "inbound")
    store.upsert([moved], "webhook")
    redis_client.zadd(raw_keys(store).idx_patient(PATIENTS[1]), {moved.id: 0})
    page = client.get(f"/medical/v1/message?patientId={PATIENTS[1]}", headers=KEY).get_json()
    assert [m["id"] for m in page["messages"]] != [] and moved.id not in str(page)
    assert page["meta"]["itemsInTotal"] == 1


@pytest.mark.parametrize("path", ["/medical/v1/message", "/medical/v1/message/x", "/feed"])
@pytest.mark.parametrize("headers,code", [
    ({}, "api_key_missing"),
    ({"x-api-key": "wrong"}, "api_key_invalid"),
    ({"x-api-key": "test-reader-key-but-longer"}, "api_key_invalid"),
])
def test_401_without_or_with_a_wrong_key(path, headers, code, client):
    """Without an accepted key the downstream API answers 401 in the service's error shape."""
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == code and response.get_json()["detail"]


def test_no_keys_configured_refuses_everyone(settings):
    """With INBOX_API_KEYS unset even a plausible key is refused."""
    app = create_app(settings.replace(inbox_api_keys=()))
    response = app.test_client().get("/medical/v1/message", headers={"x-api-key": ""})
    assert response.status_code == 401
    assert response.get_json()["error"] == "api_keys_not_configured"


def test_any_configured_key_is_accepted(settings):
    """Every key of the comma-separated list is accepted (rotation)."""
    app = create_app(settings.replace(inbox_api_keys=("old", "new")))
    for key in ("old", "new"):
        assert app.test_client().get("/medical/v1/message", headers={"x-api-key": key}).status_code == 200

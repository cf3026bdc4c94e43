"""Metriport's list semantics pointed at the simulator over real HTTP on 127.0.0.1."""

import urllib.parse

import pytest
import requests

from simulator import Simulator

MESSAGES = 620
LIST = "/medical/v1/message"


@pytest.fixture(scope="module")
def sim():
    """One simulator for the module: 620 seeded messages, no faults."""
    with Simulator(seed=11, messages=MESSAGES) as running:
        yield running


def get(sim, url, **params):
    return requests.get(url, params=params or None, headers={"x-api-key": sim.api_key}, timeout=5)


def walk_forward(sim, **params):
    """Follow nextPage from the first page; every page's body, in order."""
    pages = []
    response = get(sim, sim.url + LIST, **params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        next_page = pages[-1]["meta"].get("nextPage")
        if not next_page:
            return pages
        response = get(sim, next_page)


def ids_of(pages):
    return [message["id"] for page in pages for message in page["messages"]]


def expected_ids(sim, direction=None, patient=None):
    return sorted(sim.mailbox.ids(direction, patient), reverse=True)


@pytest.mark.parametrize("count", [1, 7, 50, 500])
@pytest.mark.parametrize("direction", [None, "inbound", "outbound"])
def test_forward_walk_returns_each_message_once_newest_first(sim, count, direction):
    """Following nextPage yields every message of the filter exactly once, id-descending."""
    params = {"count": count}
    if direction:
        params["direction"] = direction
    pages = walk_forward(sim, **params)
    ids = ids_of(pages)
    assert ids == expected_ids(sim, direction)
    assert len(set(ids)) == len(ids)
    assert pages[0]["meta"]["itemsInTotal"] == len(ids)
    assert all("itemsInTotal" not in page["meta"] for page in pages[1:])
    assert all(page["meta"]["itemsOnPage"] == len(page["messages"]) for page in pages)
    assert all(len(page["messages"]) == count for page in pages[:-1])
    assert "prevPage" not in pages[0]["meta"] and "nextPage" not in pages[-1]["meta"]


@pytest.mark.parametrize("count", [1, 7, 50, 500])
def test_backward_walk_from_last_page_returns_each_message_once(sim, count):
    """Following prevPage back from the last page yields every message exactly once."""
    last = walk_forward(sim, count=count, direction="outbound")[-1]
    pages = [last]
    while pages[-1]["meta"].get("prevPage"):
        response = get(sim, pages[-1]["meta"]["prevPage"])
        assert response.status_code == 200
        pages.append(response.json())
    ids = ids_of(reversed(pages))
    assert ids == expected_ids(sim, "outbound")
    assert all("itemsInTotal" not in page["meta"] for page in pages[1:] if page is not pages[-1])


def test_next_and_prev_pages_round_trip(sim):
    """nextPage then prevPage lands on the same page, with the filters carried along."""
    first = get(sim, sim.url + LIST, count=7, direction="inbound").json()
    second = get(sim, first["meta"]["nextPage"]).json()
    back = get(sim, second["meta"]["prevPage"]).json()
    assert [m["id"] for m in back["messages"]] == [m["id"] for m in first["messages"]]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(second["meta"]["prevPage"]).query)
    assert query == {"toItem": [first["messages"][-1]["id"]], "count": ["7"], "direction": ["inbound"]}
    assert second["meta"]["nextPage"].startswith(sim.url + LIST + "?fromItem=")
    assert "direction=inbound" in second["meta"]["nextPage"]


def test_from_item_and_to_item_are_inclusive_cursors(sim):
    """fromItem starts a page at that id; toItem ends a page at that id."""
    ids = expected_ids(sim)
    start = get(sim, sim.url + LIST, count=5, fromItem=ids[10]).json()
    assert [m["id"] for m in start["messages"]] == ids[10:15]
    assert "itemsInTotal" not in start["meta"]
    end = get(sim, sim.url + LIST, count=5, toItem=ids[10]).json()
    assert [m["id"] for m in end["messages"]] == ids[6:11]
    assert "itemsInTotal" not in end["meta"]


def test_patient_filter_walks_only_that_patients_messages(sim):
    """patientId narrows the walk to one patient, and the filter rides along in nextPage."""
    patient = sim.mailbox.generator.patients[0]
    pages = walk_forward(sim, count=3, patientId=patient)
    ids = ids_of(pages)
    assert ids and ids == expected_ids(sim, patient=patient)
    assert all(m["subject"]["reference"] == f"Patient/{patient}" for p in pages for m in p["messages"])
    assert len(pages) == 1 or f"patientId={patient}" in pages[0]["meta"]["nextPage"]


def test_default_count_is_fifty(sim):
    """Without count (or with 0) a page holds 50 messages and nextPage says count=50."""
    for params in ({}, {"count": 0}):
        page = get(sim, sim.url + LIST, **params).json()
        assert page["meta"]["itemsOnPage"] == 50
        assert "count=50" in page["meta"]["nextPage"]


def test_missing_or_wrong_api_key_is_forbidden(sim):
    """No x-api-key or a wrong one gets the gateway's 403 {"message": "Forbidden"}."""
    assert requests.get(sim.url + LIST, timeout=5).json() == {"message": "Forbidden"}
    wrong = requests.get(sim.url + LIST, headers={"x-api-key": "nope"}, timeout=5)
    assert wrong.status_code == 403


@pytest.mark.parametrize(
    "params, detail",
    [
        ({"count": 501}, "Number must be less than or equal to 500, on count"),
        ({"fromItem": "a", "toItem": "b"}, "Either fromItem or toItem can be provided, but not both"),
        ({"count": "many"}, "Expected number, received nan, on count"),
        ({"direction": "sideways"}, "Invalid enum value. Expected 'outbound' | 'inbound', on direction"),
    ],
)
def test_invalid_parameters_get_metriport_400(sim, params, detail):
    """Bad parameters answer 400 in Metriport's error shape."""
    response = get(sim, sim.url + LIST, **params)
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "name": "BAD_REQUEST",
        "title": "Missing or invalid parameters",
        "detail": detail,
    }


def test_get_by_id_and_404(sim):
    """GET by id wraps the resource as {"communication": ...}; an unknown id is a Metriport 404."""
    message_id = expected_ids(sim)[3]
    response = get(sim, f"{sim.url}{LIST}/{message_id}")
    assert response.json() == {"communication": sim.mailbox.get(message_id)}
    missing = get(sim, f"{sim.url}{LIST}/00000000-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["name"] == "NOT_FOUND" and missing.json()["title"] == "NotFoundError"


def test_requests_are_counted_per_route(sim):
    """The simulator counts list requests and their statuses, so tests can bound a client."""
    sim.reset_counts()
    walk_forward(sim, count=500)
    get(sim, sim.url + LIST, count=501)
    assert sim.requests["list"] == 3
    assert sim.requests["list 200"] == 2 and sim.requests["list 400"] == 1


def test_new_messages_appear_first_and_a_walk_in_progress_is_not_shifted(sim):
    """Messages added during a walk sort before page 1; the running walk neither skips nor repeats."""
    with Simulator(seed=5, messages=40) as fresh:
        first = get(fresh, fresh.url + LIST, count=10).json()
        added = fresh.mailbox.add(5)
        seen = [m["id"] for m in first["messages"]]
        next_page = first["meta"]["nextPage"]
        while next_page:
            page = get(fresh, next_page).json()
            seen += [m["id"] for m in page["messages"]]
            next_page = page["meta"].get("nextPage")
        assert len(seen) == 40 and len(set(seen)) == 40
        top = get(fresh, fresh.url + LIST, count=5).json()
        assert [m["id"] for m in top["messages"]] == sorted(added, reverse=True)
        assert top["meta"]["itemsInTotal"] == 45


def test_empty_filter_has_one_empty_first_page(sim):
    """A patient with no messages gets itemsOnPage 0, itemsInTotal 0 and no page links."""
    page = get(sim, sim.url + LIST, patientId="no-such-patient").json()
    assert page == {"meta": {"itemsOnPage": 0, "itemsInTotal": 0}, "messages": []}


def test_unknown_route_is_a_metriport_404(sim):
    """With a valid key, an unknown route answers Metriport's JSON 404, not an HTML page."""
    response = get(sim, sim.url + "/medical/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {
        "status": 404, "name": "NOT_FOUND", "title": "NotFoundError", "detail": "Route not found"
    }

"""Unit tests of single ``MetriportClient`` functions, with ``responses`` standing in for HTTP.

Whole runs against a real HTTP server (the simulator) are in ``test_reconcile*.py``.
"""

import email.utils
import time

import pytest
import requests
import responses

from inbox.errors import ConfigError
from inbox.errors import InvalidMessage
from inbox.errors import MetriportError
from inbox.settings import Settings
from worker.client import MetriportClient
from worker.client import origin

API = "https://api.example.test"
LIST = f"{API}/medical/v1/message"
SETTINGS = Settings(api_key="secret-key", api_url=API)


def _client(**options):
    options.setdefault("backoff_base", 0.001)
    return MetriportClient(SETTINGS, **options)


def _page(messages, next_page=None):
    meta = {"itemsOnPage": len(messages)}
    if next_page:
        meta["nextPage"] = next_page
    return {"meta": meta, "messages": messages}


def test_missing_api_key_is_a_config_error():
    """Without METRIPORT_API_KEY the client refuses to exist, naming the variable."""
    with pytest.raises(ConfigError, match="METRIPORT_API_KEY"):
        MetriportClient(Settings())


def test_list_url_always_sends_count_and_filters():
    """The first page URL carries count and the direction filter on the API's origin."""
    url = _client().list_url("inbound", 500)
    assert url == f"{LIST}?count=500&direction=inbound"


def test_origin_normalizes_default_ports_and_case():
    """https://HOST and https://host:443 are the same origin; another port is not."""
    assert origin("https://API.example.test/x") == origin("https://api.example.test:443/y")
    assert origin("https://api.example.test:8443/") != origin(API)


@responses.activate
def test_page_items_without_id_are_skipped_and_counted():
    """An item without an id (or not an object) is counted by reason and the rest are kept."""
    responses.get(LIST, json=_page([{"id": "m-2", "status": "completed"}, {"status": "x"}, "text",
                                    {"id": "m-1", "status": "completed"}]))
    records, invalid = _client().list_page(LIST).normalized("inbound")
    assert [r.id for r in records] == ["m-2", "m-1"]
    assert records[0].direction == "inbound"
    assert dict(invalid) == {"missing_id": 1, "not_an_object": 1}


@pytest.mark.parametrize("body", [[], {"messages": []}, {"meta": {}}, {"meta": {}, "messages": {}},
                                  {"meta": {"nextPage": 7}, "messages": []}])
@responses.activate
def test_page_without_meta_and_messages_list_is_invalid(body):
    """A page must be an object with a meta object and a messages list."""
    responses.get(LIST, json=body)
    with pytest.raises(MetriportError) as caught:
        _client().list_page(LIST)
    assert caught.value.code == "invalid_page"


@responses.activate
def test_foreign_next_page_is_refused_but_the_page_is_kept():
    """A nextPage on another origin ends the walk after this page; it is never requested."""
    responses.get(LIST, json=_page([{"id": "m-1"}], "https://evil.example.test/medical/v1/message?fromItem=x"))
    page = _client().list_page(LIST)
    assert page.next_url is None
    assert page.refused.code == "foreign_origin"
    assert [item["id"] for item in page.items] == ["m-1"]
    assert len(responses.calls) == 1


@responses.activate
def test_relative_next_page_is_made_absolute_on_the_origin():
    """A relative nextPage (the SDK allows them) resolves against METRIPORT_API_URL."""
    responses.get(LIST, json=_page([], "/medical/v1/message?fromItem=abc&count=2"))
    page = _client().list_page(LIST)
    assert page.next_url == f"{LIST}?fromItem=abc&count=2"


@responses.activate
def test_key_is_sent_and_redirects_are_not_followed():
    """The key goes to the origin; a redirect elsewhere fails the request without following it."""
    responses.get(LIST, status=302, headers={"location": "https://evil.example.test/steal"})
    with pytest.raises(MetriportError) as caught:
        _client().list_page(LIST)
    assert caught.value.code == "redirect_refused"
    assert len(responses.calls) == 1
    assert responses.calls[0].request.headers["x-api-key"] == "secret-key"


@responses.activate
def test_refusals_are_not_retried():
    """A 403 is the key's fault: one request, code unauthorized, no body in the message."""
    responses.get(LIST, status=403, json={"message": "Forbidden"})
    client = _client()
    with pytest.raises(MetriportError) as caught:
        client.list_page(LIST)
    assert caught.value.code == "unauthorized"
    assert client.requests == 1 and client.retries == 0


@responses.activate
def test_transient_failures_are_retried_until_success():
    """503, 502, a connection error and 500 in a row are retried; the fifth answer is used."""
    for status in (503, 502):
        responses.get(LIST, status=status)
    responses.get(LIST, body=requests.ConnectionError("reset"))
    responses.get(LIST, status=500)
    responses.get(LIST, json=_page([{"id": "m-1"}]))
    client = _client()
    page = client.list_page(LIST)
    assert [item["id"] for item in page.items] == ["m-1"]
    assert client.requests == 5 and client.retries == 4


@responses.activate
def test_retries_are_bounded_in_attempts():
    """A server that keeps failing gets max_attempts requests, then a clear error."""
    responses.get(LIST, status=504)
    client = _client(max_attempts=3)
    with pytest.raises(MetriportError) as caught:
        client.list_page(LIST)
    assert caught.value.code == "metriport_unavailable"
    assert len(responses.calls) == 3


@responses.activate
def test_retry_after_beyond_the_time_bound_gives_up_at_once():
    """A Retry-After longer than the retry allowance ends the request instead of stalling the job."""
    responses.get(LIST, status=429, headers={"Retry-After": "3600"})
    client = _client(max_retry_seconds=5)
    started = time.monotonic()
    with pytest.raises(MetriportError) as caught:
        client.list_page(LIST)
    assert caught.value.code == "rate_limited"
    assert len(responses.calls) == 1
    assert time.monotonic() - started < 5


@responses.activate
def test_retry_after_as_http_date_is_honoured():
    """Retry-After given as an HTTP date is waited for before the retry."""
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    responses.get(LIST, status=503, headers={"Retry-After": when})
    responses.get(LIST, json=_page([]))
    client = _client()
    started = time.monotonic()
    client.list_page(LIST)
    assert time.monotonic() - started >= 0.9  # an HTTP date has whole-second precision


@responses.activate
def test_request_budget_is_never_exceeded():
    """With a budget of 2 the third request is refused before it is sent."""
    responses.get(LIST, json=_page([]))
    client = _client(budget=2)
    client.list_page(LIST)
    client.list_page(LIST)
    with pytest.raises(MetriportError) as caught:
        client.list_page(LIST)
    assert caught.value.code == "budget_exhausted"
    assert len(responses.calls) == 2


@responses.activate
def test_client_side_rate_limit_spaces_requests():
    """METRIPORT_RATE_LIMIT=5 keeps at least 0.2 s between two requests."""
    responses.get(LIST, json=_page([]))
    client = MetriportClient(SETTINGS.replace(metriport_rate_limit=5.0))
    client.list_page(LIST)
    started = time.monotonic()
    client.list_page(LIST)
    assert time.monotonic() - started >= 0.19


@responses.activate
def test_get_message_quotes_the_id_and_rejects_odd_ones():
    """Get Message asks for /medical/v1/message/<id>; an id with a slash never reaches the URL."""
    responses.get(f"{LIST}/m-1", json={"communication": {"id": "m-1"}})
    assert _client().get_message("m-1") == {"communication": {"id": "m-1"}}
    with pytest.raises(InvalidMessage):
        _client().get_message("../settings")


@responses.activate
def test_webhook_status_and_retry():
    """GET /settings/webhook is read and POST /settings/webhook/retry is sent, both with the key."""
    responses.get(f"{API}/settings/webhook", json={"webhookEnabled": False, "webhookRequestsFailed": 3})
    responses.post(f"{API}/settings/webhook/retry", status=200)
    client = _client()
    assert client.webhook_status()["webhookRequestsFailed"] == 3
    client.retry_webhooks()
    assert [c.request.method for c in responses.calls] == ["GET", "POST"]
    assert all(c.request.headers["x-api-key"] == "secret-key" for c in responses.calls)

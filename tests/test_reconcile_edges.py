"""Pages the simulator does not serve: items without an id, a nextPage or a redirect to another
origin. A tiny scripted HTTP server on 127.0.0.1 plays Metriport, a second one plays the foreign
origin and records every request it gets, so the test can assert the key never reached it.
"""

import http.server
import json
import threading

import pytest

from conftest import reconcile_summary as run
from inbox.rediskeys import RedisKeys

LIST = "/medical/v1/message"
KEY = "edge-api-key"



class Origin:
    """A scripted HTTP server: ``routes[path_with_query] = (status, headers, body)``."""

    def __init__(self):
        self.routes = {}
        self.seen = []
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                origin.seen.append((self.path, dict(self.headers)))
                status, headers, body = origin.routes.get(self.path, (404, {}, {"detail": "no route"}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def metriport():
    with Origin() as origin:
        yield origin


@pytest.fixture
def foreign():
    with Origin() as origin:
        yield origin


def _message(message_id, status="completed"):
    return {"resourceType": "Communication", "id": message_id, "status": status,
            "sent": "2026-09-14T15:41:50.000Z"}


def _configured(settings, metriport):
    return settings.replace(api_key=KEY, api_url=metriport.url, reconcile_page_size=3,
                            reconcile_directions=("inbound",))


def test_item_without_id_is_skipped_and_counted(settings, metriport, store):
    """A page item without an id is skipped with reason missing_id; the others are stored."""
    metriport.routes[f"{LIST}?count=3&direction=inbound"] = (200, {}, {
        "meta": {"itemsOnPage": 3, "itemsInTotal": 3},
        "messages": [_message("m-3"), {"resourceType": "Communication", "status": "completed"},
                     _message("m-1")],
    })
    summary = run(_configured(settings, metriport))
    assert summary["outcome"] == "completed"
    assert (summary["seen"], summary["created"], summary["invalid"]) == (3, 2, 1)
    assert store.ids(store.index_key(direction="inbound")) == ["m-3", "m-1"]
    assert store.stats()["invalid:reconcile:missing_id"] == 1


def test_foreign_next_page_stops_the_run_and_the_key_never_goes_there(
        settings, metriport, foreign, store, redis_client):
    """A nextPage on another origin: the page is stored, the run fails clearly, no key leaks."""
    metriport.routes[f"{LIST}?count=3&direction=inbound"] = (200, {}, {
        "meta": {"itemsOnPage": 1, "nextPage": f"{foreign.url}{LIST}?fromItem=m-0&count=3"},
        "messages": [_message("m-1")],
    })
    foreign.routes[f"{LIST}?fromItem=m-0&count=3"] = (200, {}, {"meta": {}, "messages": []})
    summary = run(_configured(settings, metriport))
    assert summary["outcome"] == "failed"
    assert summary["error"]["code"] == "foreign_origin"
    assert store.get("m-1") is not None
    assert foreign.seen == []
    assert all(headers.get("x-api-key") == KEY for _, headers in metriport.seen)
    assert redis_client.get(RedisKeys(settings.namespace).reconcile_cursor("inbound")) is None


def test_redirect_to_another_origin_is_not_followed(settings, metriport, foreign):
    """A 302 to another origin fails the run without a request to that origin."""
    metriport.routes[f"{LIST}?count=3&direction=inbound"] = (
        302, {"location": f"{foreign.url}{LIST}"}, {})
    summary = run(_configured(settings, metriport))
    assert (summary["outcome"], summary["error"]["code"]) == ("failed", "redirect_refused")
    assert foreign.seen == []


def test_checkpoint_on_another_origin_is_ignored(settings, metriport, foreign, redis_client):
    """A checkpoint outside METRIPORT_API_URL (say the URL changed) restarts the walk at the top."""
    cursor = RedisKeys(settings.namespace).reconcile_cursor("inbound")
    redis_client.set(cursor, json.dumps({"url": f"{foreign.url}{LIST}?fromItem=m-0", "saved": 0}))
    metriport.routes[f"{LIST}?count=3&direction=inbound"] = (200, {}, {
        "meta": {"itemsOnPage": 1}, "messages": [_message("m-1")]})
    summary = run(_configured(settings, metriport))
    assert summary["outcome"] == "completed"
    assert summary["directions"]["inbound"]["resumed"] is False
    assert foreign.seen == []

"""A Redis at maxmemory (policy noeviction): 503 ``store_full``, not ready, nothing 2xx lost.

Runs on a redis-server of its own with a small ``maxmemory``, filled with ballast until it
refuses writes; the shared test server is never filled.
"""

import uuid

import pytest
import redis

from cli.dev.embedded import EmbeddedRedis
from conftest import TEST_WEBHOOK_KEY
from inbox.settings import Settings
from inbox.store import Store
from receiver import create_app
from webhook_helpers import event_body
from webhook_helpers import headers_for
from webhook_helpers import message


@pytest.fixture
def full_redis():
    """A private redis-server past maxmemory, and a function that lifts the limit again.

    The limit is set below the memory in use (a server filled exactly to its limit dips under
    it again as soon as a refused request's buffers are freed).
    """
    with EmbeddedRedis(extra_args=("--maxmemory-policy", "noeviction")) as server:
        client = redis.Redis.from_url(server.url)
        for _ in range(32):  # in pieces: a 2 MB SET leaves a query buffer Redis frees later
            client.append("ballast", b"x" * 65_536)
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 1_000_000)
        yield server, lambda: client.config_set("maxmemory", 0)


def _post(client, body):
    return client.post("/webhook", data=body, headers=headers_for(body))


def test_full_redis_is_503_store_full_and_not_ready_then_recovers(full_redis):
    server, free = full_redis
    settings = Settings(redis_url=server.url, namespace=f"full-{uuid.uuid4().hex[:8]}",
                        webhook_keys=(TEST_WEBHOOK_KEY,))
    client = create_app(settings).test_client()
    store = Store(settings)
    refused = message()
    response = _post(client, event_body("message.received", payload=refused))
    assert response.status_code == 503
    assert response.get_json()["error"] == "store_full"
    # the rejection counter on a bad signature must not turn a 401 into an HTML 500
    bad = client.post("/webhook", data=b"{}", headers={"x-metriport-signature": "0" * 64,
                                                      "Content-Type": "application/json"})
    assert (bad.status_code, bad.get_json()["error"]) == (401, "signature_mismatch")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"] == "full"
    assert store.get(refused["id"]) is None  # refused means nothing half-written

    free()
    assert client.get("/readyz").status_code == 200
    accepted = message()
    assert _post(client, event_body("message.received", payload=accepted)).status_code == 200
    assert store.get(accepted["id"]) is not None

"""Redis down or hung: store calls fail fast with StoreUnavailable, and recover by themselves."""

import socket
import threading
import time

import pytest

from cli.dev.embedded import EmbeddedRedis
from cli.dev.embedded import free_port
from inbox.connection import Connections
from inbox.errors import StoreUnavailable
from inbox.normalize import normalize
from inbox.store import Outcome
from inbox.store import Store

#: the promise of inbox.connection: a request path fails within this many seconds
FAIL_WITHIN = 2.0


def _record(message_id):
    return normalize({"id": message_id, "status": "completed", "sent": "2026-01-01T00:00:00Z"},
                     direction="inbound")


def _timed_failure(call):
    """Seconds ``call`` took to raise StoreUnavailable (fails the test if it returned)."""
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        call()
    assert caught.value.code == "store_unavailable"
    return time.monotonic() - began


@pytest.fixture
def own_redis():
    """A redis-server of this test alone, so it may be killed and restarted."""
    with EmbeddedRedis(appendonly=True) as server:
        yield server


@pytest.fixture
def hung_listener():
    """A loopback TCP port that accepts connections and never answers a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted, stop = [], threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.chaos
def test_killed_redis_fails_fast_then_recovers_with_the_same_client(settings, own_redis):
    """With the server killed a store call fails within 2 s; restarted, the same Store works."""
    store = Store(settings.replace(redis_url=own_redis.url))
    client = store.client
    assert store.upsert([_record("m-1")], "reconcile").outcomes == (Outcome.CREATED,)

    own_redis.process.kill()
    own_redis.process.wait()
    assert _timed_failure(lambda: store.upsert([_record("m-2")], "reconcile")) < FAIL_WITHIN
    assert _timed_failure(lambda: store.get("m-1")) < FAIL_WITHIN
    assert _timed_failure(lambda: store.ids(store.index_key())) < FAIL_WITHIN

    own_redis.process = None
    own_redis.start()
    assert store.client is client
    # the script cache is empty after a restart: the store reloads its scripts by itself
    assert store.upsert([_record("m-2")], "reconcile").outcomes == (Outcome.CREATED,)
    assert store.get("m-1").id == "m-1"
    assert store.ids(store.index_key()) == ["m-2", "m-1"]


@pytest.mark.chaos
def test_refused_connection_fails_fast(settings):
    """A port nobody listens on fails a store call within 2 s."""
    store = Store(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    assert _timed_failure(lambda: store.upsert([_record("m-1")], "reconcile")) < FAIL_WITHIN


@pytest.mark.chaos
def test_hung_redis_fails_fast(settings, hung_listener):
    """A server that accepts and never answers fails store calls within 2 s, not a minute."""
    store = Store(settings.replace(redis_url=f"redis://127.0.0.1:{hung_listener}/0"))
    assert _timed_failure(lambda: store.upsert([_record("m-1")], "reconcile")) < FAIL_WITHIN
    assert _timed_failure(lambda: store.get("m-1")) < FAIL_WITHIN
    assert _timed_failure(lambda: store.stats()) < FAIL_WITHIN


def test_blocking_client_waits_longer_than_its_block(settings):
    """The feed consumers' client has a read timeout above the block time it is built for."""
    client = Connections(settings).blocking(block_seconds=5)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] > 5
    assert options["socket_connect_timeout"] <= 0.5

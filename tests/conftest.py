"""Shared fixtures: a real Redis server, a clean namespace per test, and the signed fixtures.

With ``REDIS_URL`` set the suite uses that server (each test in its own namespace, deleting only
its own keys); without it the suite starts a private embedded redis-server for the session.
"""

import functools
import json
import os
import pathlib
import time
import uuid

import pytest

from cli.dev.embedded import EmbeddedRedis
from inbox.connection import Connections
from inbox.rediskeys import RedisKeys
from inbox.runs import Mode
from inbox.runs import Run
from inbox.runs import RunOutcome
from inbox.runs import Tally
from inbox.runs import Walk
from inbox.runs import iso
from inbox.settings import Settings
from inbox.signing import HEADER
from inbox.signing import sign
from inbox.store import Store
from receiver import create_app
from worker.reconcile import run as reconcile

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SIGNATURES = json.loads((FIXTURES / "webhook-signatures.json").read_text())
TEST_WEBHOOK_KEY = SIGNATURES["testWebhookKey"]


def fixture_bytes(name):
    """The exact wire bytes of a fixture file."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name):
    return json.loads(fixture_bytes(name))


@pytest.fixture(scope="session")
def redis_url():
    """The URL of a live Redis server for the whole session."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def settings(redis_url):
    """Settings on a fresh namespace; every key of it is deleted after the test."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        redis_url=redis_url,
        namespace=namespace,
        webhook_keys=(TEST_WEBHOOK_KEY,),
        inbox_api_keys=("test-reader-key",),
    )
    yield settings
    client = Connections(settings).store
    for key in client.scan_iter(match=RedisKeys(namespace).pattern(), count=1000):
        client.delete(key)
    _delete_queue(settings)


def _delete_queue(settings):
    from worker.queue import purge

    purge(settings.queue_name, Connections(settings).queue)


@functools.lru_cache(maxsize=8)
def _client_of(settings):
    return Connections(settings).store


def raw_client(store):
    """A client of the test's own on ``store``'s Redis, to inspect or tamper with raw keys.

    Tests never go through the store's client: what they check is what Redis holds.
    """
    return _client_of(store.settings)


def raw_keys(store):
    """The Redis key names of ``store``'s namespace."""
    return RedisKeys(store.settings.namespace)


@pytest.fixture
def app(settings):
    """The receiver app on the test's settings (its namespace, webhook key and reader key)."""
    return create_app(settings)


@pytest.fixture
def client(app):
    """A Flask test client of ``app``."""
    return app.test_client()


@pytest.fixture
def signed_post(client):
    """``signed_post(body, key=TEST_WEBHOOK_KEY, headers=None)``: POST /webhook signed with ``key``."""

    def post(body, key=TEST_WEBHOOK_KEY, headers=None):
        signed = {HEADER: sign(key, body), "Content-Type": "application/json", **(headers or {})}
        return client.post("/webhook", data=body, headers=signed)

    return post


@pytest.fixture
def redis_client(settings):
    return Connections(settings).store


@pytest.fixture
def store(settings):
    return Store(settings)


def finished_run(outcome="completed", ended_at=None, created=0):
    """A ``Run`` as the reconciler builds it (one inbound page), ended at ``ended_at`` (epoch s)."""
    ended_at = time.time() if ended_at is None else ended_at
    walk = Walk(Mode.FULL, resumed=False, complete=True, tally=Tally(pages=1, seen=created,
                                                                   created=created))
    return Run(outcome=RunOutcome(outcome), mode=Mode.FULL, started=iso(ended_at - 1),
               ended=iso(ended_at), seconds=1.0, walks={"inbound": walk}, requests=1, retries=0,
               round_trips=3)


def reconcile_summary(*args, **kwargs):
    """A reconciliation run (``worker.reconcile.run``) as its JSON record, as the CLI prints it."""
    return reconcile(*args, **kwargs).as_dict()

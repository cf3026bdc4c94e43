"""The memory budget: `stats`, `/metrics` and `/readyz` report Redis memory against maxmemory and
warn at INBOX_MEMORY_WARN_PERCENT, before writes start failing.

Each test runs its own redis-server: it changes maxmemory, which must never touch a shared one.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from cli.dev.embedded import EmbeddedRedis
from inbox.connection import Connections
from receiver import create_app

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))


@pytest.fixture
def own(settings):
    with EmbeddedRedis() as server:
        yield settings.replace(redis_url=server.url)


def _limit(settings, share):
    """Set maxmemory so that what Redis uses now is ``share`` of it."""
    client = Connections(settings).store
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", int(used / share))
    client.config_set("maxmemory-policy", "noeviction")


def _stats(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_")}
    env.update(REDIS_URL=settings.redis_url, INBOX_NAMESPACE=settings.namespace,
               INBOX_MEMORY_WARN_PERCENT=str(settings.memory_warn_percent))
    text = subprocess.run([COMMAND, "stats"], env=env, capture_output=True, text=True, timeout=60)
    data = subprocess.run([COMMAND, "stats", "--json"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert text.returncode == data.returncode == 0, text.stderr + data.stderr
    return text.stdout, json.loads(data.stdout)["memory"]


def _metric(body, name):
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_below_the_threshold_no_warning(own):
    _limit(own, 0.10)
    text, memory = _stats(own)
    assert 5 <= memory["percent"] <= 20 and memory["warning"] is False
    assert memory["warnPercent"] == 80 and memory["policy"] == "noeviction"
    assert "maxmemory (" in text and "WARNING" not in text
    client = create_app(own).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "warnings" not in ready.get_json()
    assert ready.get_json()["checks"]["memory"]["max"] == memory["max"]
    body = client.get("/metrics").get_data(as_text=True)
    assert _metric(body, "metriport_inbox_redis_memory_warning") == 0
    assert _metric(body, "metriport_inbox_redis_memory_max_bytes") == memory["max"]
    assert _metric(body, "metriport_inbox_redis_memory_used_bytes") > 0
    assert _metric(body, "metriport_inbox_redis_memory_warn_ratio") == 0.8


def test_past_the_threshold_every_report_warns_and_stays_ready(own):
    configured = own.replace(memory_warn_percent=60)
    _limit(configured, 0.70)
    text, memory = _stats(configured)
    assert memory["warning"] is True and memory["percent"] >= 60
    assert "WARNING above 60%" in text
    client = create_app(configured).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert [w["code"] for w in ready.get_json()["warnings"]] == ["memory_high"]
    body = client.get("/metrics").get_data(as_text=True)
    assert _metric(body, "metriport_inbox_redis_memory_warning") == 1


def test_without_maxmemory_the_share_is_unknown(own):
    Connections(own).store.config_set("maxmemory", 0)
    text, memory = _stats(own)
    assert (memory["max"], memory["percent"], memory["warning"]) == (0, None, False)
    assert "no maxmemory set" in text

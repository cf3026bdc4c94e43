"""Settings and URLs for scaling out: a cluster store needs its own queue Redis; RQ on Sentinel."""

import os
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import redis
import rq

from cli.dev.embedded import EmbeddedRedis
from cli.dev.embedded import find_redis_server
from cli.dev.embedded import free_port
from inbox.connection import Connections
from inbox.connection import connect
from inbox.connection import translate_errors
from inbox.errors import ConfigError
from inbox.errors import StoreUnavailable
from inbox.settings import Settings

pytestmark = pytest.mark.cluster

CLUSTER_URL = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"
COMMAND = pathlib.Path(sys.executable).with_name("metriport-inbox")


def test_cluster_store_without_queue_url_is_a_config_error():
    """A cluster REDIS_URL without RQ_REDIS_URL is refused, naming both variables."""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"REDIS_URL": CLUSTER_URL})
    assert "REDIS_URL" in raised.value.detail and "RQ_REDIS_URL" in raised.value.detail
    assert raised.value.exit_code == 2


def test_cluster_queue_url_is_a_config_error():
    """RQ_REDIS_URL may not name a cluster, whatever REDIS_URL is."""
    with pytest.raises(ConfigError, match="RQ_REDIS_URL"):
        Settings.from_env({"REDIS_URL": CLUSTER_URL, "RQ_REDIS_URL": CLUSTER_URL})
    with pytest.raises(ConfigError, match="RQ_REDIS_URL"):
        Settings.from_env({"RQ_REDIS_URL": CLUSTER_URL})


def test_cluster_store_with_a_standalone_queue_is_accepted():
    """A cluster store with a standalone or Sentinel queue loads, the queue URL kept apart."""
    for queue in ("redis://queue:6379/0", "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/1"):
        settings = Settings.from_env({"REDIS_URL": CLUSTER_URL, "RQ_REDIS_URL": queue})
        assert (settings.redis_url, settings.queue_redis_url) == (CLUSTER_URL, queue)


def test_queue_client_refuses_a_cluster_from_code():
    """Settings built in code with a cluster and no queue URL get a ConfigError for RQ's client."""
    with pytest.raises(ConfigError, match="RQ_REDIS_URL"):
        Connections(Settings(redis_url=CLUSTER_URL)).queue


@pytest.mark.parametrize("url", [
    "redis+cluster://127.0.0.1/",
    "redis+cluster://127.0.0.1:notaport/",
    "redis+cluster://127.0.0.1:7000/3",
    "redis+sentinel://127.0.0.1:26379/",
    "redis+sentinel://127.0.0.1:26379/mymaster/x",
])
def test_malformed_multi_node_urls_are_config_errors(url):
    """A node without a port, a cluster db or a Sentinel URL without master name is a ConfigError."""
    with pytest.raises(ConfigError):
        connect(url)


def test_unreachable_cluster_or_sentinel_is_store_unavailable():
    """Nothing listening behind a cluster or Sentinel URL is StoreUnavailable, no redis-py error."""
    with pytest.raises(StoreUnavailable):
        connect(f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/")
    client = connect(f"redis+sentinel://127.0.0.1:{free_port()}/mymaster")
    with pytest.raises(StoreUnavailable), translate_errors("ping"):
        client.ping()


def test_selfcheck_exits_2_for_a_cluster_without_queue_url():
    """`metriport-inbox selfcheck` ends with exit 2 and one line naming both variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("RQ_REDIS_URL",)}
    env["REDIS_URL"] = CLUSTER_URL
    done = subprocess.run([str(COMMAND), "selfcheck"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("error: config_invalid: ")
    assert "REDIS_URL" in done.stderr and "RQ_REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def sentinel():
    """A primary and one Sentinel watching it as ``mymaster``; yields the redis+sentinel URL."""
    with EmbeddedRedis() as primary, tempfile.TemporaryDirectory(prefix="inbox-sentinel-") as tmp:
        port = free_port()
        config = pathlib.Path(tmp) / "sentinel.conf"
        config.write_text(
            f"bind 127.0.0.1\nport {port}\ndir {tmp}\n"
            f"sentinel monitor mymaster 127.0.0.1 {primary.port} 1\n"
        )
        process = subprocess.Popen([find_redis_server(), str(config), "--sentinel"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            probe = connect(f"redis://127.0.0.1:{port}/0")
            for _ in range(100):
                try:
                    probe.ping()
                    break
                except redis.ConnectionError:
                    if process.poll() is not None:
                        pytest.fail("redis-server --sentinel exited at start")
                    time.sleep(0.05)
            yield f"redis+sentinel://127.0.0.1:{port}/mymaster/2", primary
        finally:
            process.terminate()
            process.wait(timeout=5)


def test_rq_runs_on_a_sentinel_managed_redis(sentinel, tmp_path):
    """RQ enqueues and a burst worker runs a job through a redis+sentinel:// queue URL."""
    url, primary = sentinel
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=primary.url, rq_redis_url=url, namespace=namespace)
    queue_client = Connections(settings).queue
    queue = rq.Queue("default", connection=queue_client)
    marker = tmp_path / "ran"
    job = queue.enqueue("pathlib.Path.touch", marker)
    assert connect(f"{primary.url[:-1]}2").llen("rq:queue:default") == 1  # on db 2 of the primary
    rq.Worker([queue], connection=queue_client).work(burst=True)
    assert marker.exists()
    assert job.get_status(refresh=True) == "finished"

"""The long-running processes across Redis outages: ``worker`` and ``worker --cron`` (the
Procfile's ``worker`` and ``clock``) started before Redis, across a restart, and with a refused
password. Each outage is one line lost and one line back, never a traceback, never an exit."""

import uuid

import pytest
import redis
from rq import Queue

from chaos.harness import BIN
from chaos.harness import environment
from chaos.harness import wait_until
from cli.dev.embedded import EmbeddedRedis
from conftest import TEST_WEBHOOK_KEY
from inbox.settings import Settings


@pytest.fixture
def server():
    """A private redis-server with AOF, not started: the test starts and stops it."""
    server = EmbeddedRedis(appendonly=True)
    try:
        yield server
    finally:
        server.close()


def _settings(url):
    return Settings(redis_url=url, namespace=f"sys-{uuid.uuid4().hex[:8]}",
                    webhook_keys=(TEST_WEBHOOK_KEY,), api_key="k", api_url="http://127.0.0.1:9")


def _lines(process, word):
    return [line for line in process.log().splitlines() if word in line]


@pytest.mark.parametrize("role", ["clock", "worker"])
def test_started_before_redis_then_across_a_restart(server, processes, role):
    """Started with Redis down: one 'lost' line, waits; Redis up: one 'back' line, works;
    Redis restarted: again one line each way, and it keeps working without a restart."""
    settings = _settings(server.url)
    env = environment(settings, RECONCILE_INTERVAL=1)
    args = [BIN / "metriport-inbox", "worker"] + (["--cron"] if role == "clock" else [])
    process = processes.start(role, args, env)
    wait_until(lambda: _lines(process, "lost"), timeout=20, what="the 'lost' line")
    assert process.running
    server.start()
    wait_until(lambda: _lines(process, "back after"), timeout=20, what="the 'back' line")
    client = redis.Redis.from_url(server.url)
    queue = Queue(settings.queue_name, connection=client)
    if role == "clock":  # its incremental run falls due every second
        wait_until(lambda: queue.count >= 2, timeout=20, what="the first enqueued runs")
    else:  # it takes a job
        job = queue.enqueue("os.getpid")
        wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=30, what="the job")

    server.stop()
    wait_until(lambda: len(_lines(process, "lost")) == 2, timeout=20, what="the second 'lost'")
    server.start()
    wait_until(lambda: len(_lines(process, "back after")) == 2, timeout=20, what="the second 'back'")
    if role == "clock":
        queue.empty()
        wait_until(lambda: queue.count >= 1, timeout=20, what="runs enqueued after the outage")
    else:
        job = queue.enqueue("os.getpid")
        wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=30, what="the job")
    process.stop()
    assert process.popen.returncode == 0, process.log()
    log = process.log()
    assert "Traceback" not in log, log
    assert (len(_lines(process, "lost")), len(_lines(process, "back after"))) == (2, 2), log


@pytest.mark.parametrize("role", ["clock", "worker"])
def test_refused_password_is_one_line_and_exit_2(server, processes, role):
    """A wrong password is a configuration error, not an outage: one line, exit 2, no wait."""
    server.start()
    redis.Redis.from_url(server.url).config_set("requirepass", "right")
    settings = _settings(server.url.replace("redis://", "redis://:wrong@"))
    args = [BIN / "metriport-inbox", "worker"] + (["--cron"] if role == "clock" else [])
    process = processes.start(role, args, environment(settings))
    assert process.wait(30) == 2
    log = process.log()
    assert "Traceback" not in log, log
    assert [line for line in log.splitlines() if "error" in line.lower()] == [
        "error: config_invalid: Redis refused the credentials in REDIS_URL: "
        "check the password (and user) in the URL."], log

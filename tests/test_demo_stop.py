"""``metriport-inbox demo`` stopped by a signal, on a Redis it shares: every process it started
is gone, and it leaves no key behind but RQ's own records that expire by themselves."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from chaos.harness import alive
from chaos.harness import descendants
from chaos.harness import wait_until
from cli.dev.embedded import EmbeddedRedis

DEMO = [sys.executable, "-c", "from cli import main; main()", "demo", "--messages", "3000"]


@pytest.fixture
def shared():
    with EmbeddedRedis() as server:
        yield server


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_demo_stops_every_child_and_leaves_no_keys(shared, tmp_path, signum):
    env = {**os.environ, "REDIS_URL": shared.url}
    env.pop("INBOX_NAMESPACE", None)
    err = open(tmp_path / "stderr", "w+")
    demo = subprocess.Popen(DEMO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        # the webhooks phase: simulator, gunicorn (master and workers) and the RQ worker run
        wait_until(lambda: "[3/5]" in (tmp_path / "stderr").read_text() or demo.poll() is not None,
                   timeout=60, what="the demo's webhook phase")
        # gunicorn master + 2 workers and the RQ worker; the receiver is ready as soon as one
        # worker answers, so on a loaded machine the second may still be forking
        wait_until(lambda: len(descendants(demo.pid)) >= 4, timeout=30, what="every child")
        children = descendants(demo.pid)
        demo.send_signal(signum)
        assert demo.wait(timeout=60) == 1
    finally:
        if demo.poll() is None:  # the test failed before the demo stopped: leave no orphan
            leftovers = descendants(demo.pid)
            demo.kill()
            demo.wait()
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == []
    output = (tmp_path / "stderr").read_text()
    assert "Traceback" not in output, output
    assert output.strip().splitlines()[-1].startswith(
        f"error: stopped: The demo was stopped by {signum.name}"), output
    client = redis.Redis.from_url(shared.url)
    lasting = [key for key in client.keys("*") if client.ttl(key) < 0]
    assert lasting == [], lasting
    assert [key for key in client.keys("*") if b"demo-" in key] == []

"""``metriport-inbox simulate`` as a subprocess: the way a demo or a user runs the simulator."""

import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

CLI = [sys.executable, "-c", "from cli import main; main()"]


@pytest.fixture
def simulate():
    """Start ``simulate --port 0`` and return (process, base URL, API key); stopped by pid after."""
    env = {k: v for k, v in os.environ.items() if k != "METRIPORT_WEBHOOK_KEY"}
    process = subprocess.Popen(
        [*CLI, "simulate", "--port", "0", "--seed", "5", "--messages", "120", "--api-key", "k-test",
         "--rate-limit", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        values = dict(line.strip().split("=", 1) for line in lines[1:])
        yield process, values["METRIPORT_API_URL"], values["METRIPORT_API_KEY"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_simulate_prints_its_url_and_key_and_serves_the_list(simulate):
    """The printed URL and key work; faults are on; SIGTERM stops it with exit 0."""
    process, url, key = simulate
    assert url.startswith("http://127.0.0.1:") and key == "k-test"
    statuses = [
        requests.get(f"{url}/medical/v1/message?count=500", headers={"x-api-key": key}, timeout=5)
        for _ in range(12)
    ]
    ok = [r for r in statuses if r.status_code == 200]
    assert ok and ok[0].json()["meta"]["itemsInTotal"] == 120
    assert any(r.status_code == 429 for r in statuses)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def test_control_api_seeds_settles_and_reads_back(simulate):
    """Through /_simulator a subprocess simulator can grow, settle statuses and list its ids."""
    _, url, key = simulate
    headers = {"x-api-key": key}
    added = requests.post(f"{url}/_simulator/messages", json={"count": 3, "direction": "outbound", "pending": True},
                          headers=headers, timeout=5).json()["ids"]
    ids = requests.get(f"{url}/_simulator/ids", headers=headers, timeout=5).json()["ids"]
    assert len(ids) == 123 and ids[:3] == sorted(added, reverse=True)
    settled = requests.post(f"{url}/_simulator/updates", json={}, headers=headers, timeout=5).json()
    state = requests.get(f"{url}/_simulator/state", headers=headers, timeout=5).json()
    assert set(added) <= set(settled["ids"]) and state["pending"] == 0 and state["messages"] == 123
    refused = requests.post(f"{url}/_simulator/messages", json={"count": -1}, headers=headers, timeout=5)
    assert refused.status_code == 400 and refused.json()["error"] == "bad_request"
    assert requests.get(f"{url}/_simulator/state", timeout=5).status_code == 403


def test_control_api_delivers_webhooks_and_changes_faults(simulate):
    """Webhooks to an unreachable URL are recorded failed; the fault plan can be switched off."""
    _, url, key = simulate
    headers = {"x-api-key": key}
    assert requests.put(f"{url}/_simulator/faults", json={}, headers=headers, timeout=5).ok
    report = requests.post(
        f"{url}/_simulator/webhooks",
        json={"url": "http://127.0.0.1:9/webhook", "key": "k", "ids": [], "ping": True, "drop": 0.0},
        headers=headers,
        timeout=10,
    ).json()
    assert report["events"] == 1 and report["failed"] == 1
    rows = requests.get(f"{url}/_simulator/deliveries", headers=headers, timeout=5).json()["deliveries"]
    assert [(r["type"], r["outcome"]) for r in rows] == [("ping", "failure")]
    statuses = {
        requests.get(f"{url}/medical/v1/message", headers=headers, timeout=5).status_code for _ in range(10)
    }
    assert statuses == {200}


def test_simulate_on_a_busy_port_is_a_clear_error():
    """A port already taken ends simulate with one error line and exit 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*CLI, "simulate", "--port", str(port), "--messages", "1"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"error: port_unavailable: Cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr

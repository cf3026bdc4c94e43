"""`metriport-inbox trace`, `jobs` and `--version` as users run them: real subprocesses."""

import json
import os
import pathlib
import subprocess
import sys

from rq import Queue

from inbox.connection import Connections
from inbox.normalize import normalize
from inbox.store import Delivery
from simulator import Simulator

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))


def _env(settings, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METRIPORT_", "RECONCILE_", "INBOX_"))}
    env.update(REDIS_URL=settings.redis_url, INBOX_NAMESPACE=settings.namespace, **extra)
    return env


def _cli(args, env):
    return subprocess.run([COMMAND, *args], env=env, capture_output=True, text=True, timeout=60)


def test_version():
    """--version prints the installed version and exits 0."""
    done = subprocess.run([COMMAND, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("metriport-inbox, version ")


def test_trace_prints_every_event_and_refuses_a_bad_id(settings, store):
    """Text and JSON forms name each version; a malformed id is one error line, exit 1."""
    resource = {"resourceType": "Communication", "id": "m-trace-1", "status": "in-progress",
                "sent": "2024-05-01T10:00:00Z", "topic": {"text": "CANARY-trace"}}
    store.upsert([normalize(resource, "inbound")], "webhook", delivery=Delivery("dl-9", "h"))
    store.upsert([normalize(dict(resource, status="completed", topic={"text": "CANARY-2"}), "inbound")],
                 "reconcile")
    text = _cli(["trace", "m-trace-1"], _env(settings))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "message m-trace-1"
    assert "created" in lines[1] and "webhook" in lines[1] and "dl-9" in lines[1]
    assert "updated" in lines[2] and "reconcile" in lines[2] and "changed" in lines[2]
    assert "CANARY" not in text.stdout
    as_json = json.loads(_cli(["trace", "m-trace-1", "--json"], _env(settings)).stdout)
    assert [e["event"] for e in as_json["events"]] == ["created", "updated"]
    bad = _cli(["trace", "not an id"], _env(settings))
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: invalid_id: A message id is 1-128 of A-Z a-z 0-9 . _ : -.")


def test_jobs_lists_a_failed_fetch_and_requeues_it(settings):
    """A fetch that failed in a real worker is listed with its error line, then requeued."""
    with Simulator(seed=3, messages=0) as sim:
        env = _env(settings, METRIPORT_API_KEY=sim.api_key, METRIPORT_API_URL=sim.url)
        queue = Queue(settings.queue_name, connection=Connections(settings).queue)
        job = queue.enqueue("worker.jobs.fetch_message", "missing-cli-1")
        worked = _cli(["worker", "--burst"], env)
        assert worked.returncode == 0, worked.stderr
    listed = json.loads(_cli(["jobs", "--json"], env).stdout)
    assert listed["depth"] == 0 and [j["id"] for j in listed["failed"]] == [job.id]
    failed = listed["failed"][0]
    assert failed["function"] == "fetch_message" and failed["args"] == ["missing-cli-1"]
    assert failed["error"].startswith("inbox.errors.MetriportError") and "404" in failed["error"]
    text = _cli(["jobs"], env).stdout
    assert "0 waiting, 1 failed" in text and job.id in text
    requeued = _cli(["jobs", "--requeue", job.id], env)
    assert requeued.returncode == 0 and f"{job.id}: requeued" in requeued.stdout
    assert "1 waiting, 0 failed" in _cli(["jobs"], env).stdout
    again = _cli(["jobs", "--requeue", job.id], env)
    assert again.returncode == 1 and "error: job_not_found:" in again.stderr

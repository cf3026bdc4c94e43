"""``metriport-inbox tail`` and ``stats`` as real subprocesses against the test Redis."""

import json
import os
import pathlib
import signal
import subprocess
import sys

from cli.dev.embedded import free_port
from conftest import finished_run
from inbox.feed import Consumer
from inbox.feed import Feed
from inbox.normalize import normalize
from inbox.runs import RunLog

COMMAND = str(pathlib.Path(sys.executable).parent / "metriport-inbox")


def communication(n):
    return {
        "resourceType": "Communication",
        "id": f"cli-{n:04d}",
        "status": "completed",
        "subject": {"reference": "Patient/p-9"},
        "topic": {"text": "Private subject"},
    }


def fill(store, numbers, via="webhook"):
    store.upsert([normalize(communication(n), "inbound") for n in numbers], via)


def environment(settings, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INBOX_", "REDIS_", "METRIPORT_"))}
    return {**env, "REDIS_URL": settings.redis_url, "INBOX_NAMESPACE": settings.namespace, **extra}


def run(settings, *args, **extra):
    return subprocess.run(
        [COMMAND, *args], env=environment(settings, **extra), capture_output=True, text=True,
        timeout=30,
    )


def test_tail_from_start_prints_routing_fields_as_json(settings, store):
    """``tail --from-start --json --limit`` prints the oldest entries, ids only, then stops."""
    fill(store, range(6))
    result = run(settings, "tail", "--from-start", "--json", "--limit", "4", "--timeout", "10")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["messageId"] for line in lines] == [f"cli-{n:04d}" for n in range(4)]
    assert "Private subject" not in result.stdout and "resource" not in lines[0]


def test_tail_with_content_prints_the_resource(settings, store):
    """``--with-content`` adds the stored resource to each entry."""
    fill(store, [1])
    result = run(settings, "tail", "--from-start", "--json", "--with-content", "--limit", "1",
                 "--timeout", "10")
    assert json.loads(result.stdout)["resource"] == communication(1)
    text = run(settings, "tail", "--from-start", "--with-content", "--limit", "1", "--timeout", "10")
    assert "cli-0001" in text.stdout and "Private subject" in text.stdout


def test_tail_without_from_start_shows_only_new_entries(settings, store):
    """By default ``tail`` starts at the end of the feed and waits for what comes next."""
    fill(store, range(3))
    process = subprocess.Popen(
        [COMMAND, "tail", "--json", "--limit", "1", "--timeout", "20"],
        env=environment(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        n = 100
        while process.poll() is None and n < 200:
            fill(store, [n])
            n += 1
            try:
                process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert json.loads(out)["messageId"] >= "cli-0100"


def test_tail_in_a_group_acks_what_it_printed(settings, store):
    """``tail --group`` consumes as a group member: printed entries are acked."""
    fill(store, range(5))
    result = run(settings, "tail", "--group", "ops", "--from-start", "--limit", "3", "--timeout", "10")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3 and "cli-0000" in result.stdout
    (group,) = Feed(settings).groups()
    assert (group.name, group.pending, group.lag) == ("ops", 0, 2)


def test_tail_stops_cleanly_on_ctrl_c(settings, store):
    """SIGINT ends ``tail`` with exit code 0 and no traceback."""
    fill(store, [1])
    process = subprocess.Popen(
        [COMMAND, "tail", "--from-start"], env=environment(settings),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert "cli-0001" in process.stdout.readline()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "Traceback" not in err


def test_stats_json_reports_counters_runs_groups_and_encryption(settings, store, redis_client):
    """``stats --json`` has the counters, the runs newest first, group lag and encryption."""
    fill(store, range(4), via="reconcile")
    store.count_event("rejected:signature_mismatch")
    Consumer(settings, "search", "c").read(count=1)
    for outcome in ("failed", "completed"):
        RunLog(store).append(finished_run(outcome, created=4))
    key = "k1:" + "A" * 43
    result = run(settings, "stats", "--json", INBOX_ENCRYPTION_KEYS=key)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["counters"]["created:reconcile"] == 4
    assert stats["counters"]["rejected:signature_mismatch"] == 1
    assert [r["outcome"] for r in stats["reconcileRuns"]] == ["completed", "failed"]
    assert stats["reconcileRuns"][0] == finished_run("completed", created=4).as_dict() | {
        "started": stats["reconcileRuns"][0]["started"], "ended": stats["reconcileRuns"][0]["ended"]}
    assert stats["groups"][0]["name"] == "search" and stats["groups"][0]["lag"] == 3
    assert stats["feed"] == {"length": 4, "deadLetters": 0}
    assert stats["encryption"] == "on"


def test_stats_table(settings, store):
    """The text form is a compact table ending with the encryption state."""
    fill(store, range(2))
    Consumer(settings, "search", "c").read(count=1)
    result = run(settings, "stats")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["created", "2", "0", "0", "2"]
    assert any(line.split()[:4] == ["search", "1", "1", "1"] for line in lines)
    assert lines[-1] == "encryption: off"


def test_stats_fails_fast_when_redis_is_down(settings):
    """An unreachable Redis ends ``stats`` with a one-line error and a non-zero exit."""
    result = run(settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"), "stats")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: store_unavailable:")
    assert "Traceback" not in result.stderr

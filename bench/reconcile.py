"""Benchmark: backfill from the simulator into an empty store, against a fetch-only baseline.

    .venv/bin/python bench/reconcile.py [--messages 100000] [--page-size 500] [--slice-pages 20]
                                        [--latency 0.05]

Starts a private redis-server and the simulator in its own process (so the server does not share
this process's GIL), both on 127.0.0.1; ``--latency`` makes the simulator answer like a server
across a network (each answer delayed by 0..2x that many seconds). Then, in this process:

1. backfill every direction into an empty namespace, in slices of ``--slice-pages`` pages: each
   slice is one full reconcile run stopped by its request budget (the next resumes from the
   checkpoint), timed next to a baseline that fetches and parses (validation and normalization
   included) the same pages with the same read-ahead but stores nothing; the order alternates
   so load drifting on a shared machine weighs on both sides alike;
2. a no-change incremental run: its list requests per direction.

Prints messages/s for both, their ratio, requests and Redis round trips per page (counted by
the runs, next to Redis's own command counter), and the import time of the ``reconcile --once``
path. Bounded: stops the simulator and Redis by pid when done or failing.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from inbox.connection import connect
from inbox.embedded import EmbeddedRedis
from inbox.embedded import free_port
from inbox.keys import Keys
from inbox.settings import Settings
from worker.client import MetriportClient
from worker.reconcile import run

SIM_KEY = "bench-api-key"
_SERVE = (
    "import sys; from simulator import Faults, Simulator; "
    "latency = float(sys.argv[4]); "
    "faults = Faults(slow=1.0, delay_max=2 * latency, seed=1) if latency else None; "
    "Simulator(seed=1, messages=int(sys.argv[1]), api_key=sys.argv[2], faults=faults)"
    ".serve_forever(port=int(sys.argv[3]))"
)


def start_simulator(messages, latency=0.0):
    """The simulator in its own process; ``latency``: mean seconds added to each API answer."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _SERVE, str(messages), SIM_KEY, str(port), str(latency)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"{url}/medical/v1/message?count=1", headers={"x-api-key": SIM_KEY})
            urllib.request.urlopen(request, timeout=1).read()
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit("the simulator exited before serving")
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the simulator did not start within 120 s")


def fetch_only(client, url, direction, pages):
    """Fetch and parse up to ``pages`` pages from ``url``, storing nothing: (messages, pages).

    Uses the run's own one-page read-ahead (the next page is fetched while this one is parsed),
    so the ratio measures what storing costs, not what pipelining gains.
    """
    messages = walked = 0
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(client.list_page, url)
        while pending is not None:
            page = pending.result()
            walked += 1
            more = page.next_url and walked < pages
            pending = reader.submit(client.list_page, page.next_url) if more else None
            records, invalid = page.normalized(direction)
            messages += len(records) + sum(invalid.values())
    return messages, walked


def start_url(client, redis, settings, direction):
    """Where the next backfill slice of ``direction`` starts: its checkpoint, else page 1."""
    saved = redis.get(Keys(settings.namespace).reconcile_cursor(direction))
    if saved:
        return json.loads(saved)["url"]
    return client.list_url(direction, settings.reconcile_page_size)


def backfill(settings, redis, slice_pages):
    """Backfill every direction in slices of ``slice_pages`` pages, each next to its baseline.

    Each slice is one reconcile run stopped by its request budget (the next one resumes from
    the checkpoint) and a fetch-only walk over the same pages; the order alternates, so load
    drifting on a shared machine affects both sides alike.
    """
    totals = {"base_s": 0.0, "base_msgs": 0, "run_s": 0.0, "runs": []}
    sliced = settings.replace(reconcile_request_budget=slice_pages)
    with MetriportClient(settings.replace(reconcile_request_budget=10**6)) as client:
        for direction in settings.reconcile_directions:
            complete, turn = False, 0
            while not complete:
                url = start_url(client, redis, settings, direction)
                for side in (("base", "run") if turn % 2 == 0 else ("run", "base")):
                    started = time.perf_counter()
                    if side == "base":
                        messages, _ = fetch_only(client, url, direction, slice_pages)
                        totals["base_msgs"] += messages
                    else:
                        summary = run(sliced, mode="full", directions=[direction]).as_dict()
                        assert summary["outcome"] in ("completed", "budget_exhausted"), summary
                        complete = summary["outcome"] == "completed"
                        totals["runs"].append(summary)
                    totals[f"{side}_s"] += time.perf_counter() - started
                turn += 1
    return totals


def commands_processed(client):
    return int(client.info("stats")["total_commands_processed"])


def import_seconds():
    """Wall time of a fresh interpreter importing what `reconcile --once` imports."""
    code = "import cli.work, worker.reconcile"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    with_imports = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return with_imports, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--slice-pages", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.0,
                        help="mean seconds the simulator adds to each answer (0..2x, uniform), like a WAN")
    options = parser.parse_args()

    with EmbeddedRedis() as redis_server:
        simulator, url = start_simulator(options.messages, options.latency)
        try:
            settings = Settings(redis_url=redis_server.url, namespace="bench-reconcile",
                                api_key=SIM_KEY, api_url=url, reconcile_page_size=options.page_size)
            with MetriportClient(settings) as client:  # sort the simulator's views once
                for direction in settings.reconcile_directions:
                    client.list_page(client.list_url(direction, 1))
            redis = connect(redis_server.url)
            before = commands_processed(redis)
            totals = backfill(settings, redis, options.slice_pages)
            commands = commands_processed(redis) - before
            incremental = run(settings).as_dict()
        finally:
            simulator.terminate()
            simulator.wait(timeout=10)

    runs = totals["runs"]
    created = sum(r["created"] for r in runs)
    pages = sum(r["pages"] for r in runs)
    requests = sum(r["requests"] for r in runs)
    round_trips = sum(r["round_trips"] for r in runs)
    assert created == options.messages == totals["base_msgs"], (created, totals["base_msgs"])
    base_rate = totals["base_msgs"] / totals["base_s"]
    rate = created / totals["run_s"]
    imported, bare = import_seconds()
    results = {
        "messages": options.messages,
        "latency_s": options.latency,
        "page_size": options.page_size,
        "slices": len(runs),
        "fetch_only_msgs_per_s": round(base_rate),
        "fetch_only_s": round(totals["base_s"], 2),
        "backfill_msgs_per_s": round(rate),
        "backfill_s": round(totals["run_s"], 2),
        "ratio": round(rate / base_rate, 2),
        "pages": pages,
        "requests_per_page": round(requests / pages, 2),
        "redis_round_trips_per_page": round(round_trips / pages, 2),
        "redis_commands_per_page": round(commands / pages, 1),
        "incremental_no_change_requests": {
            d: walk["pages"] for d, walk in incremental["directions"].items()},
        "incremental_outcome": incremental["outcome"],
        "import_s_reconcile_path": round(imported - bare, 3),
        "cpus": os.cpu_count(),
    }
    for name, value in results.items():
        print(f"{name:34} {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""Benchmark: backfill from the simulator into an empty store, against a fetch-only baseline.

    .venv/bin/python bench/reconcile.py [--messages 100000] [--page-size 500]

Starts a private redis-server and the simulator in its own process (so the server does not share
this process's GIL), both on 127.0.0.1. Then, in this process:

1. baseline: walk every page of both directions with the same client, fetching and parsing
   (validation and normalization included) but storing nothing;
2. backfill: one full reconciliation run into an empty namespace (read-ahead on);
3. baseline again (the ratio uses the mean of the two baselines);
4. a no-change incremental run: its list requests per direction.

Prints messages/s for both, their ratio, requests and Redis round trips per page (counted by
the run, cross-checked with Redis's own command counter), and the import time of the
``reconcile --once`` path. Bounded: stops the simulator and Redis by pid when done or failing.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

from inbox.connection import connect
from inbox.embedded import EmbeddedRedis
from inbox.embedded import free_port
from inbox.settings import Settings
from worker.client import MetriportClient
from worker.reconcile import run

SIM_KEY = "bench-api-key"
_SERVE = (
    "import sys; from simulator import Simulator; "
    "Simulator(seed=1, messages=int(sys.argv[1]), api_key=sys.argv[2]).serve_forever(port=int(sys.argv[3]))"
)


def start_simulator(messages):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _SERVE, str(messages), SIM_KEY, str(port)])
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


def fetch_only(settings):
    """Walk both directions, fetch and parse every page, store nothing: (messages, pages, s)."""
    started = time.perf_counter()
    messages = pages = 0
    with MetriportClient(settings) as client:
        for direction in settings.reconcile_directions:
            url = client.list_url(direction, settings.reconcile_page_size)
            while url:
                page = client.list_page(url)
                records, invalid = page.normalized(direction)
                messages += len(records) + sum(invalid.values())
                pages += 1
                url = page.next_url
    return messages, pages, time.perf_counter() - started


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
    options = parser.parse_args()

    with EmbeddedRedis() as redis_server:
        simulator, url = start_simulator(options.messages)
        try:
            settings = Settings(redis_url=redis_server.url, namespace="bench-reconcile",
                                api_key=SIM_KEY, api_url=url, reconcile_page_size=options.page_size,
                                reconcile_request_budget=100_000)
            fetch_only(settings.replace(reconcile_directions=("outbound",)))  # warm the simulator
            base1 = fetch_only(settings)
            redis = connect(redis_server.url)
            before = commands_processed(redis)
            started = time.perf_counter()
            backfill = run(settings, mode="full")
            elapsed = time.perf_counter() - started
            commands = commands_processed(redis) - before
            base2 = fetch_only(settings)
            incremental = run(settings)
        finally:
            simulator.terminate()
            simulator.wait(timeout=10)

    assert backfill["outcome"] == "completed" and backfill["created"] == options.messages, backfill
    base_rate = (base1[0] / base1[2] + base2[0] / base2[2]) / 2
    rate = backfill["created"] / elapsed
    imported, bare = import_seconds()
    results = {
        "messages": options.messages,
        "page_size": options.page_size,
        "fetch_only_msgs_per_s": round(base_rate),
        "fetch_only_runs_s": [round(base1[2], 2), round(base2[2], 2)],
        "backfill_msgs_per_s": round(rate),
        "backfill_s": round(elapsed, 2),
        "ratio": round(rate / base_rate, 2),
        "pages": backfill["pages"],
        "requests_per_page": round(backfill["requests"] / backfill["pages"], 2),
        "redis_round_trips_per_page": round(backfill["round_trips"] / backfill["pages"], 2),
        "redis_commands_per_page": round(commands / backfill["pages"], 2),
        "incremental_no_change_requests": {
            d: walk["pages"] for d, walk in incremental["directions"].items()},
        "incremental_requests": incremental["requests"],
        "import_s_reconcile_path": round(imported - bare, 3),
        "cpus": os.cpu_count(),
    }
    for name, value in results.items():
        print(f"{name:34} {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

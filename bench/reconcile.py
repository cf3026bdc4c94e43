"""Full reconciliation against a bare baseline: `reconcile --once --full` next to a plain walk.

    .venv/bin/python bench/reconcile.py [--messages 50000] [--page-size 500] [--rounds 3]

Starts a private redis-server and the simulator (``--messages`` messages) in its own process,
both on 127.0.0.1, plus a second, empty simulator. Then, alternating, ``--rounds`` times each:

- ``bare``: the few lines anyone would write, timed in this process: ``requests`` GETs every
  page of both directions (``count`` = page size) following ``meta.nextPage``, ``json.loads`` each
  body, stores nothing;
- ``reconcile``: ``metriport-inbox reconcile --once --full --json`` as a user runs it, a new
  process backfilling an empty namespace, timed from start to exit;
- ``start-up``: the same command against the empty simulator (imports, settings, Redis
  connection, lock, one empty page per direction, run record), timed the same way.

The figure is the ratio of the medians: bare / (reconcile - start-up), i.e. the walk's
throughput net of process start-up against the bare walk's. Also printed: Redis round trips and
commands per page (the run's own count, and Redis's ``INFO commandstats``), and the start-up
itself. Every process started here is stopped by its pid.
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid

import requests

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.dev.embedded import EmbeddedRedis  # noqa: E402
from cli.dev.embedded import free_port  # noqa: E402
from inbox.connection import connect  # noqa: E402
from inbox.rediskeys import RedisKeys  # noqa: E402

SIM_KEY = "bench-api-key"
DIRECTIONS = ("inbound", "outbound")
_SERVE = (
    "import sys; from simulator import Simulator; "
    "Simulator(seed=1, messages=int(sys.argv[1]), api_key=sys.argv[2]).serve_forever(port=int(sys.argv[3]))"
)


def start_simulator(messages):
    """The simulator in its own process (its own GIL), once it answers a list request."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _SERVE, str(messages), SIM_KEY, str(port)], cwd=ROOT)
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


def bare_walk(url, page_size):
    """requests + json.loads over every page of both directions: (messages, pages, seconds)."""
    started = time.perf_counter()
    messages = pages = 0
    with requests.Session() as session:
        for direction in DIRECTIONS:
            next_url = f"{url}/medical/v1/message?count={page_size}&direction={direction}"
            while next_url:
                body = json.loads(session.get(next_url, headers={"x-api-key": SIM_KEY}, timeout=30).content)
                messages += len(body["messages"])
                pages += 1
                next_url = body["meta"].get("nextPage")
    return messages, pages, time.perf_counter() - started


def process_cpu(pid):
    """CPU seconds (user + system) ``pid`` has used so far, from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reconcile_process(redis_url, api_url, page_size):
    """``metriport-inbox reconcile --once --full --json`` in a fresh namespace: (summary, seconds)."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INBOX_", "RECONCILE_", "METRIPORT_"))}
    env.update(REDIS_URL=redis_url, INBOX_NAMESPACE=namespace, METRIPORT_API_KEY=SIM_KEY,
               METRIPORT_API_URL=api_url, RECONCILE_PAGE_SIZE=str(page_size),
               RECONCILE_REQUEST_BUDGET="100000")
    argv = [str(pathlib.Path(sys.executable).with_name("metriport-inbox")), "reconcile", "--once",
            "--full", "--json"]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"reconcile exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds, namespace


def command_calls(client):
    """Commands processed so far, in all and excluding INFO itself."""
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def drop(client, namespace):
    for key in client.scan_iter(match=RedisKeys(namespace).pattern(), count=1000):
        client.delete(key)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    # byte-compile the project as an installed package is (pip compiles a wheel when it installs
    # it): with PYTHONDONTWRITEBYTECODE set, an editable checkout would recompile every run
    subprocess.run([sys.executable, "-m", "compileall", "-q", "inbox", "worker", "cli"], cwd=ROOT,
                   check=True)
    load_before = os.getloadavg()
    runs = {"bare": [], "reconcile": [], "start-up": []}
    cpus = {"bare": [], "reconcile": [], "start-up": []}
    summaries = []
    with EmbeddedRedis() as redis_server:
        client = connect(redis_server.url)
        simulator, url = start_simulator(options.messages)
        empty, empty_url = start_simulator(0)
        try:
            bare_walk(url, options.page_size)  # warm-up: the simulator sorts its views once
            # CPU seconds of every process a side keeps busy: less distorted than wall time by
            # other load on a shared machine (an extra figure; the wall-time ratio is the aim's)
            servers = (redis_server.process.pid, simulator.pid, empty.pid)

            def cpu_now():
                return time.process_time() + children_cpu() + sum(map(process_cpu, servers))

            for _ in range(options.rounds):
                cpu = cpu_now()
                messages, pages, seconds = bare_walk(url, options.page_size)
                runs["bare"].append(seconds)
                cpus["bare"].append(cpu_now() - cpu)
                before = command_calls(client)
                cpu = cpu_now()
                summary, seconds, namespace = reconcile_process(redis_server.url, url, options.page_size)
                cpus["reconcile"].append(cpu_now() - cpu)
                summary["commands"] = command_calls(client) - before - 1
                runs["reconcile"].append(seconds)
                summaries.append(summary)
                drop(client, namespace)
                cpu = cpu_now()
                _, seconds, namespace = reconcile_process(redis_server.url, empty_url, options.page_size)
                cpus["start-up"].append(cpu_now() - cpu)
                runs["start-up"].append(seconds)
                drop(client, namespace)
        finally:
            for process in (simulator, empty):
                process.terminate()
                process.wait(timeout=10)
    load_after = os.getloadavg()
    for summary in summaries:
        assert summary["outcome"] == "completed" and summary["created"] == options.messages, summary
    assert messages == options.messages, messages
    bare = statistics.median(runs["bare"])
    startup = statistics.median(runs["start-up"])
    reconcile = statistics.median(runs["reconcile"])
    net = reconcile - startup
    ratio = bare / net
    walk_pages = statistics.median(s["pages"] for s in summaries)
    print(f"reconcile / bare walk, net of start-up: {ratio:.2f} (medians of {options.rounds} alternating "
          f"runs: {options.messages / net:,.0f} vs {options.messages / bare:,.0f} msg/s; "
          f"{net:.2f} s vs {bare:.2f} s)")
    cpu_net = statistics.median(cpus["reconcile"]) - statistics.median(cpus["start-up"])
    print(f"same by CPU seconds of all processes (less distorted by other load): "
          f"{statistics.median(cpus['bare']) / cpu_net:.2f} "
          f"({statistics.median(cpus['bare']):.2f} s vs {cpu_net:.2f} s net of start-up)")
    print(f"reconcile --once start-up: {startup:.3f} s (median; imports, connect, lock, "
          "one empty page per direction, run record)")
    print(f"Redis round trips per page: {statistics.median(s['round_trips'] for s in summaries) / walk_pages:.2f}"
          f" (the run's count); Redis commands per page: "
          f"{statistics.median(s['commands'] for s in summaries) / walk_pages:.2f} (INFO commandstats)")
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpu, Python {platform.python_version()}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{options.messages:,} messages, {pages} pages of {options.page_size} (both directions)")
    print("run   bare s   reconcile s   start-up s   net s   CPU s: bare  reconcile  start-up")
    for n, (b, r, s, cb, cr, cs) in enumerate(zip(
            runs["bare"], runs["reconcile"], runs["start-up"],
            cpus["bare"], cpus["reconcile"], cpus["start-up"]), 1):
        print(f"{n:3d}  {b:7.2f}   {r:11.2f}   {s:10.3f}  {r - s:6.2f}   {cb:11.2f}  {cr:9.2f}  {cs:8.3f}")
    print(json.dumps({"ratio": round(ratio, 3), "startup_s": round(startup, 3), "runs": runs, "cpu": cpus,
                      "summaries": [{k: s[k] for k in ("pages", "requests", "round_trips", "commands", "seconds")}
                                    for s in summaries]}))


if __name__ == "__main__":
    main()

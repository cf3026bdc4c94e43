"""Webhook ingest throughput against a no-op endpoint, under the receiver's own gunicorn config.

Starts gunicorn (receiver/gunicorn.conf.py, app bench/ingest_app.py) on 127.0.0.1 and drives it
with signed ``message.received`` webhooks, each with a fresh message id and delivery id, from
load-generator processes whose threads keep their connections alive. Phases, each bounded in
time: ``/noop`` at full load (reads the body, answers), ``/noop-redis`` (the same plus one Redis
round trip), ``/webhook`` at full load, then ``/webhook`` paced at half the measured peak. Prints throughput, their ratio, p50/p99, and the
count of non-2xx answers (expected: zero).

    .venv/bin/python bench/ingest.py [--seconds 8] [--procs 2] [--threads 8]

Uses ``REDIS_URL`` if set (a fresh namespace, deleted afterwards), else an embedded redis-server.
Every process started here is stopped by its pid.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inbox import processes  # noqa: E402
from inbox.connection import connect  # noqa: E402
from inbox.embedded import EmbeddedRedis  # noqa: E402
from inbox.embedded import free_port  # noqa: E402
from inbox.rediskeys import RedisKeys  # noqa: E402
from inbox.signing import HEADER  # noqa: E402
from inbox.signing import sign  # noqa: E402

KEY = "bench-webhook-key"
TEMPLATE = json.loads((ROOT / "tests" / "fixtures" / "webhook-message-received.json").read_bytes())


def signed_body():
    """A message.received body like Metriport's fixture, with fresh ids, and its headers."""
    event = {
        "meta": {**TEMPLATE["meta"], "messageId": str(uuid.uuid4())},
        "payload": {**TEMPLATE["payload"], "id": str(uuid.uuid4())},
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    return body, {HEADER: sign(KEY, body), "Content-Type": "application/json"}


def _drive(port, path, deadline, interval, start_at, out):
    """One keep-alive connection: closed loop when ``interval`` is 0, else paced (open loop).

    Paced latencies are measured from the intended send time, so a stalled server shows up in
    the tail instead of silently slowing the generator down.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ok = bad = 0
    latencies = []
    due = start_at
    while True:
        if interval:
            due += interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        body, headers = signed_body()
        began = due if interval else time.perf_counter()
        if began >= deadline:
            break
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = 0
        latencies.append(time.perf_counter() - began)
        if 200 <= status < 300:
            ok += 1
        else:
            bad += 1
    conn.close()
    out.append((ok, bad, latencies))


def load_process(port, path, seconds, threads, rate):
    """Run ``threads`` connections for ``seconds``; ``rate`` requests/s in all, 0 for flat out."""
    start_at = time.perf_counter()
    deadline = start_at + seconds
    interval = threads / rate if rate else 0
    results = []
    workers = [
        threading.Thread(target=_drive, args=(port, path, deadline, interval, start_at + i * interval / threads, results))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ok = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    return ok, bad, [latency for r in results for latency in r[2]]


def cpu_seconds(pids):
    """CPU time (user + system) used so far by ``pids`` and their children, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid in pids or ppid in pids:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def phase(pool, port, path, seconds, procs, threads, rate=0.0, server_pids=()):
    """Run one phase over ``procs`` processes; throughput, p50/p99 (ms), non-2xx count, and the
    server-side CPU per request (gunicorn and Redis), which other load on the machine distorts less.
    """
    cpu_before = cpu_seconds(set(server_pids))
    futures = [
        pool.submit(load_process, port, path, seconds, threads, rate / procs if rate else 0)
        for _ in range(procs)
    ]
    ok = bad = 0
    latencies = []
    for future in futures:
        p_ok, p_bad, p_latencies = future.result()
        ok, bad = ok + p_ok, bad + p_bad
        latencies.extend(p_latencies)
    server_cpu = cpu_seconds(set(server_pids)) - cpu_before
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "server_cpu_us_per_request": server_cpu / max(ok + bad, 1) * 1e6,
        "rps": (ok + bad) / seconds,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "non_2xx": bad,
        "requests": ok + bad,
    }


def start_gunicorn(port, redis_url, namespace, log, workers, threads):
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "INBOX_NAMESPACE": namespace,
        "METRIPORT_WEBHOOK_KEY": KEY,
    }
    if workers:
        env["WEB_CONCURRENCY"] = str(workers)
    if threads:
        env["GUNICORN_THREADS"] = str(threads)
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", str(ROOT / "receiver" / "gunicorn.conf.py"),
        "--pythonpath", str(ROOT / "bench"),
        "ingest_app:create_app()",
    ]
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        processes.wait_http_ok(port, process)
    except RuntimeError as exc:
        processes.stop(process, grace=25)
        raise SystemExit(f"gunicorn did not start ({exc}); see {log.name}") from None
    return process


def run(args, redis_url, redis_pid=None):
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="bench-ingest-", suffix=".log", delete=False) as log:
        server = start_gunicorn(port, redis_url, namespace, log, args.workers, args.threads)
        try:
            with concurrent.futures.ProcessPoolExecutor(max_workers=args.procs) as pool:
                pids = [server.pid] + ([redis_pid] if redis_pid else [])
                measure = lambda path, rate=0.0: phase(  # noqa: E731
                    pool, port, path, args.seconds, args.procs, args.threads_client, rate, pids)
                warm = lambda path: phase(pool, port, path, 1, args.procs, args.threads_client)  # noqa: E731
                warm("/noop")
                noop = measure("/noop")
                noop_redis = measure("/noop-redis")
                warm("/webhook")
                ingest = measure("/webhook")
                half = measure("/webhook", rate=ingest["rps"] / 2)
        finally:
            processes.stop(server, grace=25)
            client = connect(redis_url)
            for key in client.scan_iter(match=RedisKeys(namespace).pattern(), count=1000):
                client.delete(key)
    return {
        "noop": noop,
        "noop_redis": noop_redis,
        "ingest": ingest,
        "ingest_half_load": half,
        "ratio": ingest["rps"] / noop["rps"],
        "ratio_to_one_round_trip": ingest["rps"] / noop_redis["rps"],
        "cpu_ratio": noop["server_cpu_us_per_request"] / ingest["server_cpu_us_per_request"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--threads-client", type=int, default=8, help="connections per process")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the config's)")
    parser.add_argument("--threads", type=int, help="gunicorn threads (default: the config's)")
    args = parser.parse_args()
    if os.environ.get("REDIS_URL"):
        results = run(args, os.environ["REDIS_URL"])
    else:
        with EmbeddedRedis() as server:
            results = run(args, server.url, server.process.pid)
    config = f"workers={args.workers or 'config'} threads={args.threads or 'config'}"
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}; {config}")
    print(f"load: {args.procs} processes x {args.threads_client} keep-alive connections, {args.seconds:g} s per phase")
    for name in ("noop", "noop_redis", "ingest", "ingest_half_load"):
        r = results[name]
        print(f"{name:17} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
              f"non-2xx {r['non_2xx']} / {r['requests']}  server CPU {r['server_cpu_us_per_request']:4.0f} us/req")
    print(f"ratio ingest/noop: throughput {results['ratio']:.2f}, "
          f"server CPU per request (noop/ingest) {results['cpu_ratio']:.2f}; "
          f"ingest/noop-with-one-Redis-round-trip {results['ratio_to_one_round_trip']:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

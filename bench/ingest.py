"""Webhook ingest against a bare baseline: the receiver next to a no-op Flask POST, under wrk.

    .venv/bin/python bench/ingest.py [--seconds 10] [--rounds 3] [--connections 16] [--threads 2]

Two servers on 127.0.0.1, both driven by ``wrk`` (C, so the load generator takes little of the
two cores the servers share):

- ``ingest``: the receiver exactly as ``metriport-inbox serve`` starts it (its own gunicorn config,
  its request log on), storing into Redis; every request a distinct signed ``message.received``
  body of about 1 KB (its own delivery id and message id), so every request creates a record;
- ``no-op``: a separate Flask app (``bench/noop_app.py``) under gunicorn gthread, 2 workers x 4
  threads, that reads the body and answers;
- ``ingest-encrypted`` (extra row): the receiver with ``INBOX_ENCRYPTION_KEYS`` set, the same load;
- ``ingest-gthread`` (extra row): the receiver under the former worker model, gthread 2 x 8
  (``GUNICORN_WORKER_CLASS=gthread``), the evidence for the worker model's throughput side.

Runs alternate (no-op, ingest, ingest-encrypted, no-op, ...), so load drifting on a shared machine
weighs on all sides alike; the figure is the ratio of the medians. After every ingest run the
bench checks Redis: records created by the run >= 2xx answers, no delivery answered as a replay
(every body was new), zero non-2xx. Uses ``REDIS_URL`` if set (fresh namespaces, deleted
afterwards), else an embedded redis-server. Needs wrk (Debian/Ubuntu: ``apt-get install wrk``).
Every process started here is stopped by its pid.
"""

import argparse
import json
import os
import pathlib
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.dev import processes  # noqa: E402
from cli.dev.embedded import EmbeddedRedis  # noqa: E402
from cli.dev.embedded import free_port  # noqa: E402
from inbox.connection import connect  # noqa: E402
from inbox.crypto import keygen  # noqa: E402
from inbox.rediskeys import RedisKeys  # noqa: E402
from inbox.signing import sign  # noqa: E402

KEY = "bench-webhook-key"
LUA = ROOT / "bench" / "ingest.lua"
#: the fixture's text, lengthened to a ~1 KB body (Metriport's compact JSON, as on the wire)
NOTE = ("Patient discharged 9/13. Please schedule a PCP follow-up within 7 days. Summary attached. "
        "Medications reconciled at discharge; see the attached summary for the updated list. ")


def template():
    """A ``message.received`` body with ``@DELIVERY@``/``@MESSAGE@`` slots, about 1,030 bytes."""
    event = json.loads((ROOT / "tests" / "fixtures" / "webhook-message-received.json").read_bytes())
    event["meta"]["messageId"] = "@DELIVERY@"
    event["payload"]["id"] = "@MESSAGE@"
    event["payload"]["body"] = (NOTE * 3)[:515]
    return json.dumps(event, separators=(",", ":"))


def write_bodies(path, count):
    """``count`` lines of ``<signature> <body>``, each body with fresh ids; the mean body size."""
    shape = template()
    total = 0
    with open(path, "w") as out:
        for _ in range(count):
            body = shape.replace("@DELIVERY@", str(uuid.uuid4())).replace(
                "@MESSAGE@", str(uuid.uuid4())).encode()
            total += len(body)
            out.write(f"{sign(KEY, body)} {body.decode()}\n")
    return total / count


def require_wrk():
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: on Debian or Ubuntu run `apt-get install wrk` "
                         "(as root), then run this bench again.")
    return path


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


def wait_listening(port, process, timeout=30.0):
    """Until something accepts TCP on ``port`` (the no-op app has no health route)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited at start (status {process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout:g} s")


def start(name, argv, env, log_dir, health=True):
    port = free_port()
    log_path = log_dir / f"{name}.log"
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv(port), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        if health:
            processes.wait_http_ok(port, process)
        else:
            wait_listening(port, process)
    except (RuntimeError, SystemExit) as exc:
        processes.stop(process, grace=10)
        raise SystemExit(f"{name} did not start ({exc}); see {log_path}") from None
    return {"name": name, "port": port, "process": process, "log": log_path}


def wrk(wrk_path, port, bodies, args, seconds):
    """One wrk run; its JSON summary (requests, non-2xx, socket errors, latency in us)."""
    argv = [wrk_path, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s",
            "--timeout", "5s", "-s", str(LUA), f"http://127.0.0.1:{port}/webhook",
            "--", str(bodies), str(args.threads)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    return summary


def handler_latency(log_path, offset):
    """p50/p99 of the receiver's own ``ms`` (from the webhook's WSGI entry to its log line) over
    the request lines written after ``offset``: how much of wrk's latency is inside the handler."""
    with open(log_path, "rb") as log:
        log.seek(offset)
        times = sorted(json.loads(line)["ms"] for line in log if b'"route":"/webhook"' in line)
    if not times:
        return {}
    return {"app_p50_ms": times[len(times) // 2], "app_p99_ms": times[int(len(times) * 0.99)]}


def store_counters(client, namespace):
    raw = client.hgetall(RedisKeys(namespace).stats)
    return {name.decode(): int(value) for name, value in raw.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (-c)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument("--no-encrypted", dest="encrypted", action="store_false",
                        help="leave out the ingest-encrypted side")
    parser.add_argument("--no-gthread", dest="gthread", action="store_false",
                        help="leave out the ingest-gthread side (the former worker model)")
    args = parser.parse_args()
    wrk_path = require_wrk()
    if os.environ.get("REDIS_URL"):
        run(args, wrk_path, os.environ["REDIS_URL"], None)
    else:
        with EmbeddedRedis() as server:
            run(args, wrk_path, server.url, server.process.pid)


def run(args, wrk_path, redis_url, redis_pid):
    load_before = os.getloadavg()
    client = connect(redis_url)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    serve = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))
    namespaces = {}
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY", "INBOX_"))}

    def receiver_env(side, **extra):
        namespaces[side] = f"bench-{uuid.uuid4().hex[:8]}"
        return {**base_env, "REDIS_URL": redis_url, "INBOX_NAMESPACE": namespaces[side],
                "METRIPORT_WEBHOOK_KEY": KEY, **extra}

    sides = (["noop", "ingest"] + (["ingest-encrypted"] if args.encrypted else [])
             + (["ingest-gthread"] if args.gthread else []))
    servers = {}
    results = {side: [] for side in sides}
    try:
        servers["noop"] = start("noop", lambda port: [
            sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "2",
            "--threads", "4", "--bind", f"127.0.0.1:{port}", "--pythonpath", str(ROOT / "bench"),
            "noop_app:app"], base_env, work, health=False)
        servers["ingest"] = start("ingest", lambda port: [serve, "serve"], receiver_env("ingest"), work)
        if args.encrypted:
            servers["ingest-encrypted"] = start(
                "ingest-encrypted", lambda port: [serve, "serve"],
                receiver_env("ingest-encrypted", INBOX_ENCRYPTION_KEYS=keygen("bench")), work)
        if args.gthread:
            servers["ingest-gthread"] = start(
                "ingest-gthread", lambda port: [serve, "serve"],
                receiver_env("ingest-gthread", GUNICORN_WORKER_CLASS="gthread", GUNICORN_THREADS="8"), work)
        # more distinct bodies than the fastest side could send in one run
        per_run = int(args.seconds * 9000) + 20000
        noop_bodies = work / "noop-bodies.txt"
        body_bytes = write_bodies(noop_bodies, 20000)
        for side in sides:  # warm-up: imports, connections, Lua script load, JIT of wrk's Lua
            bodies = work / f"{side}-warm.txt"
            if side != "noop":
                write_bodies(bodies, 20000)
            wrk(wrk_path, servers[side]["port"], noop_bodies if side == "noop" else bodies, args, 2)
        for round_ in range(args.rounds):
            for side in sides:
                bodies = noop_bodies
                if side != "noop":
                    bodies = work / f"{side}-{round_}.txt"
                    write_bodies(bodies, per_run)
                    before = store_counters(client, namespaces[side])
                pids = {servers[side]["process"].pid} | ({redis_pid} if redis_pid and side != "noop" else set())
                cpu_before = cpu_seconds(pids)
                log_mark = servers[side]["log"].stat().st_size
                summary = wrk(wrk_path, servers[side]["port"], bodies, args, args.seconds)
                summary["server_cpu_us"] = (cpu_seconds(pids) - cpu_before) / max(summary["requests"], 1) * 1e6
                if side != "noop":
                    time.sleep(0.5)  # requests wrk left in flight finish
                    summary.update(handler_latency(servers[side]["log"], log_mark))
                    after = store_counters(client, namespaces[side])
                    summary["created"] = after.get("created:webhook", 0) - before.get("created:webhook", 0)
                    summary["replays"] = after.get("replay", 0) - before.get("replay", 0)
                    summary["bodies"] = per_run
                    bodies.unlink()
                results[side].append(summary)
    finally:
        for server in servers.values():
            processes.stop(server["process"], grace=25)
        for namespace in namespaces.values():
            for key in client.scan_iter(match=RedisKeys(namespace).pattern(), count=1000):
                client.delete(key)
    load_after = os.getloadavg()
    report(args, results, body_bytes, load_before, load_after)
    shutil.rmtree(work, ignore_errors=True)


def median(runs, field):
    return statistics.median(run[field] for run in runs)


def report(args, results, body_bytes, load_before, load_after):
    noop = median(results["noop"], "rps")
    ingest = median(results["ingest"], "rps")
    ratio = ingest / noop
    print(f"ingest / no-op throughput: {ratio:.2f} (medians of {args.rounds} alternating runs: "
          f"{ingest:,.0f} vs {noop:,.0f} req/s)")
    p99 = max(run["p99_us"] for run in results["ingest"]) / 1000
    non_2xx = sum(run["non_2xx"] + run["socket_errors"] + run["timeouts"] for run in results["ingest"])
    print(f"ingest p99 at full load: {median(results['ingest'], 'p99_us') / 1000:.2f} ms median, "
          f"{p99:.2f} ms worst run; non-2xx or failed: {non_2xx}; inside the handler (its log "
          f"lines): p50 {median(results['ingest'], 'app_p50_ms'):.2f} ms, "
          f"p99 {median(results['ingest'], 'app_p99_ms'):.2f} ms")
    noop_cpu = median(results["noop"], "server_cpu_us")
    ingest_cpu = median(results["ingest"], "server_cpu_us")
    print(f"same by server CPU per request (less distorted by other load): {noop_cpu / ingest_cpu:.2f} "
          f"({noop_cpu:,.0f} us no-op vs {ingest_cpu:,.0f} us ingest, Redis included)")
    if "ingest-encrypted" in results:
        enc = median(results["ingest-encrypted"], "rps")
        print(f"ingest-encrypted / ingest: {enc / ingest:.2f} ({enc:,.0f} req/s); "
              f"ingest-encrypted / no-op: {enc / noop:.2f}")
    if "ingest-gthread" in results:
        old = median(results["ingest-gthread"], "rps")
        print(f"ingest-gthread (former worker model, gthread 2x8) / no-op: {old / noop:.2f} ({old:,.0f} req/s); "
              f"ingest (gevent) / ingest-gthread: {ingest / old:.2f}")
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpu, Python {platform.python_version()}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s -s bench/ingest.lua; "
          f"bodies: distinct signed message.received, mean {body_bytes:,.0f} B")
    print("side               run   req/s     p50 ms   p99 ms   non-2xx  server CPU us/req  created  replays"
          "  handler p50/p99 ms")
    for side, runs in results.items():
        for n, r in enumerate(runs, 1):
            stored = f"{r['created']:7d}  {r['replays']:7d}" if "created" in r else ""
            if "app_p99_ms" in r:
                stored += f"  {r['app_p50_ms']:8.2f} {r['app_p99_ms']:8.2f}"
            print(f"{side:18} {n:3d}  {r['rps']:7,.0f}  {r['p50_us'] / 1000:8.2f} {r['p99_us'] / 1000:8.2f}"
                  f"  {r['non_2xx'] + r['socket_errors'] + r['timeouts']:8d}  {r['server_cpu_us']:17,.0f}  {stored}")
    problems = []
    for side, runs in results.items():
        for r in runs:
            if "created" in r and (r["created"] < r["requests"] - r["non_2xx"] or r["replays"]):
                problems.append(f"{side}: {r['created']} created for {r['requests']} requests, "
                                f"{r['replays']} replays")
    for problem in problems:
        print("CHECK FAILED:", problem)
    print(json.dumps({"ratio": round(ratio, 3), "results": results}))
    if problems or non_2xx:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""Sampling profiles of the two hot paths, the evidence bench/RESULTS.md reasons from.

    .venv/bin/python -m pip install py-spy             # not a dependency: a tool for this only
    .venv/bin/python bench/profile.py ingest           # bench/profiles/ingest.txt
    .venv/bin/python bench/profile.py reconcile        # bench/profiles/reconcile.txt

``ingest``: the receiver as ``metriport-inbox serve --workers 1`` starts it, under wrk (16
connections, distinct signed bodies, as bench/ingest.py), its worker sampled by py-spy for 10 s.
``reconcile``: ``metriport-inbox reconcile --once --full`` against a simulator of 50,000 messages,
sampled from start to exit (every thread). Both print the functions with the most samples, by
their own time and including what they call; the raw samples are kept beside the summary
(``*.raw``, py-spy's collapsed stacks, uncommitted). On a machine shared with other work the
shares stay meaningful where absolute times do not. Every process started is stopped by its pid.
"""

import collections
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ingest  # noqa: E402
import reconcile  # noqa: E402
from cli.dev import processes  # noqa: E402
from cli.dev.embedded import EmbeddedRedis  # noqa: E402

OUT = ROOT / "bench" / "profiles"
CLI = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))


def py_spy():
    path = shutil.which("py-spy") or str(pathlib.Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(path):
        raise SystemExit("py-spy is not installed: .venv/bin/python -m pip install py-spy")
    return path


def summarize(raw, title, top=40):
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        count = int(count)
        total += count
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in frame else frame for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [title, f"{total} samples", "", "own time (the function itself):"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top // 2)]
    lines += ["", "inclusive (with what it calls):"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def profile_ingest(spy, raw):
    with EmbeddedRedis() as redis_server, tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY", "INBOX_"))}
        env.update(REDIS_URL=redis_server.url, INBOX_NAMESPACE="profile", METRIPORT_WEBHOOK_KEY=ingest.KEY,
                   WEB_CONCURRENCY="1")
        server = ingest.start("receiver", lambda port: [CLI, "serve"], env, work)
        try:
            bodies = work / "bodies.txt"
            ingest.write_bodies(bodies, 80000)
            worker = int(subprocess.run(["pgrep", "-P", str(server["process"].pid)], capture_output=True,
                                        text=True, check=True).stdout.split()[0])
            load = subprocess.Popen([ingest.require_wrk(), "-t2", "-c16", "-d13s", "-s", str(ingest.LUA),
                                     f"http://127.0.0.1:{server['port']}/webhook", "--", str(bodies), "2"],
                                    stdout=subprocess.PIPE, text=True)
            time.sleep(1.5)
            subprocess.run([spy, "record", "-p", str(worker), "-d", "10", "-r", "250", "-f", "raw",
                            "-o", str(raw), "--nonblocking"], check=True, capture_output=True)
            wrk_out = load.communicate(timeout=60)[0].strip().splitlines()[-1]
        finally:
            processes.stop(server["process"], grace=20)
    return f"receiver worker under wrk -t2 -c16 (1 gevent worker); wrk: {wrk_out}"


def profile_reconcile(spy, raw):
    with EmbeddedRedis() as redis_server:
        simulator, url = reconcile.start_simulator(50_000)
        try:
            reconcile.bare_walk(url, 500)  # the simulator sorts its views once
            env = {k: v for k, v in os.environ.items() if not k.startswith(("INBOX_", "RECONCILE_", "METRIPORT_"))}
            env.update(REDIS_URL=redis_server.url, INBOX_NAMESPACE="profile", METRIPORT_API_KEY=reconcile.SIM_KEY,
                       METRIPORT_API_URL=url, RECONCILE_REQUEST_BUDGET="100000")
            started = time.perf_counter()
            subprocess.run([spy, "record", "-r", "250", "-f", "raw", "-o", str(raw), "--", CLI, "reconcile",
                            "--once", "--full", "--json"], env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - started
        finally:
            simulator.terminate()
            simulator.wait(timeout=10)
    return f"metriport-inbox reconcile --once --full, 50,000 messages, all threads ({seconds:.1f} s under py-spy)"


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("ingest", "reconcile"):
        raise SystemExit(__doc__)
    spy = py_spy()
    OUT.mkdir(exist_ok=True)
    raw = OUT / f"{sys.argv[1]}.raw"
    title = (profile_ingest if sys.argv[1] == "ingest" else profile_reconcile)(spy, raw)
    load = os.getloadavg()[0]
    text = summarize(raw, f"{title}; load average {load:.2f}")
    (OUT / f"{sys.argv[1]}.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Real processes for the chaos tests: gunicorn, RQ workers, reconcile runs, and their plumbing.

Every process binds 127.0.0.1 on a free port, writes its output to a log file in the test's
temporary directory (printed when a test fails), and is stopped by its pid when the test ends,
pass or fail: SIGTERM, then SIGKILL, then any descendant left behind.
"""

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from cli.dev.embedded import free_port
from inbox.feed import Feed

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
API_KEY = "chaos-api-key"
READER_KEY = "chaos-reader-key"


def children(pid):
    """Pids of the direct children of ``pid`` (Linux /proc)."""
    found = []
    task_dir = pathlib.Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text()
            found.extend(int(child) for child in text.split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return found


def descendants(pid):
    """Pids of every process below ``pid``, breadth first."""
    found, frontier = [], [pid]
    while frontier:
        below = [child for parent in frontier for child in children(parent)]
        found.extend(below)
        frontier = below
    return found


def alive(pid):
    """True while ``pid`` runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def kill9(pid):
    """SIGKILL one process we started (or a worker of one), by pid."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll ``predicate`` until it is truthy; its value, or AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Process:
    """One subprocess of a test; ``stop()`` ends it and whatever it spawned, by pid."""

    def __init__(self, name, args, env, log_dir, cwd=ROOT):
        self.name = name
        self.args = [str(a) for a in args]
        self.log_path = pathlib.Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self.popen.pid

    def wait(self, timeout):
        """The exit code, waiting at most ``timeout`` s (AssertionError if still running)."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout} s") from None

    @property
    def running(self):
        return self.popen.poll() is None

    def stop(self, grace=5.0):
        """SIGTERM, SIGKILL after ``grace`` seconds, then SIGKILL whatever it spawned that is left."""
        below = descendants(self.pid)
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for pid in below:
            if alive(pid):
                kill9(pid)
        self._log.close()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Processes:
    """Starts processes for one test and stops all of them at its end."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.started = []

    def start(self, name, args, env, cwd=ROOT):
        process = Process(name, args, env, self.log_dir, cwd=cwd)
        self.started.append(process)
        return process

    def stop_all(self):
        for process in reversed(self.started):
            process.stop()

    def logs(self):
        return "\n".join(f"----- {p.name} (pid {p.pid}) -----\n{p.log()[-4000:]}"
                         for p in self.started)


def environment(settings, **extra):
    """The environment a subprocess of ours reads ``settings`` from."""
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # the code of this checkout, whatever the editable install mapped when it was made
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": settings.redis_url,
        "INBOX_NAMESPACE": settings.namespace,
        "METRIPORT_WEBHOOK_KEY": ",".join(settings.webhook_keys),
        "INBOX_API_KEYS": ",".join(settings.inbox_api_keys),
        "METRIPORT_API_URL": settings.api_url,
    }
    if settings.api_key:
        env["METRIPORT_API_KEY"] = settings.api_key
    if settings.rq_redis_url:
        env["RQ_REDIS_URL"] = settings.rq_redis_url
    env.update({name: str(value) for name, value in extra.items()})
    return env


def http_ready(url):
    """True when ``url`` answers 200 within half a second."""
    try:
        return requests.get(url, timeout=0.5).status_code == 200
    except requests.RequestException:
        return False


def start_receiver(processes, settings, workers=2, threads=4, name="web", **env):
    """``metriport-inbox serve`` (gunicorn with the project's config); waits for /healthz.

    ``serve`` replaces itself with gunicorn, so the process is gunicorn's master and its
    children are the workers.
    """
    port = free_port()
    args = [BIN / "metriport-inbox", "serve", "--host", "127.0.0.1", "--port", port,
            "--workers", workers]
    process = processes.start(name, args, environment(settings, GUNICORN_THREADS=threads, **env))
    process.url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ready(process.url + "/healthz") or not process.running,
               timeout=20, what="gunicorn /healthz")
    assert process.running, process.log()
    wait_until(lambda: len(children(process.pid)) == workers, timeout=10, what="gunicorn workers")
    return process


def reconcile_command(full=True, direction=None):
    """``metriport-inbox reconcile --once [--full] --json`` as an argument list."""
    args = [BIN / "metriport-inbox", "reconcile", "--once", "--json"]
    if full:
        args.append("--full")
    if direction:
        args.extend(["--direction", direction])
    return args


def summary_of(process):
    """The JSON summary a ``reconcile --once --json`` process printed as its last line."""
    lines = [line for line in process.log().splitlines() if line.startswith("{")]
    assert lines, process.log()
    return json.loads(lines[-1])


def feed_events(store):
    """Counter of (event, message id) over every entry of the feed."""
    entries = Feed(store.settings).after(None, limit=10**9)
    return collections.Counter((entry.event, entry.message_id) for entry in entries)


def created_per_message(store):
    """Counter of ``created`` feed entries per message id."""
    return collections.Counter(
        message_id for (event, message_id), count in feed_events(store).items()
        for _ in range(count) if event == "created"
    )


def assert_store_equals_mailbox(store, mailbox):
    """Every message of the simulator is stored exactly as Metriport would list it, nothing else."""
    expected = mailbox.ids()
    assert store.count(store.index_key()) == len(expected)
    stored = store.get_many(expected)
    missing = [i for i, s in zip(expected, stored) if s is None]
    assert not missing, f"{len(missing)} of {len(expected)} messages missing"
    different = [s.id for s in stored if s.resource != mailbox.get(s.id)]
    assert not different, f"{len(different)} stored resources differ from the simulator's"


def received_deliveries(sim, shape="communication"):
    """One ``message.received`` delivery per message of the simulator, oldest first."""
    return [
        sim.sender.message_received(sim.mailbox.get(i), sim.mailbox.direction(i), shape=shape)
        for i in sim.mailbox.ids()
    ]


def succeeded(deliveries):
    """The deliveries whose last attempt got a 2xx."""
    return [d for d in deliveries if d.outcome == "success"]


def assert_every_2xx_stored(store, deliveries):
    """Each message whose delivery was answered 2xx is in the store; every other delivery got a
    non-2xx status or a connection error (the sender's ledger against the store)."""
    ok = succeeded(deliveries)
    stored = store.get_many([d.subject_id for d in ok])
    lost = [d.subject_id for d, s in zip(ok, stored) if s is None]
    assert not lost, f"{len(lost)} messages answered 2xx are not in the store"
    for delivery in deliveries:
        if delivery.outcome != "success":
            assert delivery.outcome == "failure"
            assert delivery.status_code is None or not 200 <= delivery.status_code < 300
    return len(ok)


def scrape(url):
    """``GET /metrics`` parsed: ``{(name, labels as a sorted tuple): value}``."""
    text = requests.get(url + "/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }

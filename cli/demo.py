"""``metriport-inbox demo``: the whole loop on one machine, against a simulated Metriport.

It starts (or finds) Redis, a simulator holding a few thousand messages, the receiver under
gunicorn and an RQ worker; delivers the simulator's webhooks with drops and duplicates; lets
reconciliation repair the gap; and checks that the store equals the simulator and that every
message is announced exactly once in the feed. Exit 0 only when that verdict holds.

Everything runs on 127.0.0.1 in a fresh namespace (``demo-<hex>``) whose keys, RQ queue and
registries are deleted at the end, and every process it starts (each in a session of its own,
with whatever it spawns) is stopped by pid, also on SIGINT (Ctrl-C), SIGTERM and SIGHUP.
"""

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time

import click

from cli.dev import processes
from cli.dev.embedded import free_port
from cli.environment import load_settings
from cli.environment import redis_for
from inbox.connection import Connections
from inbox.connection import translate_errors
from inbox.errors import DemoFailed
from inbox.errors import InboxError
from inbox.errors import StoreUnavailable
from inbox.feed import Feed
from inbox.rediskeys import RedisKeys
from inbox.store import Store
from simulator.server import Simulator

#: longest wait for one phase (a process to answer, the queue to drain), seconds
PHASE_TIMEOUT = 60


@click.command()
@click.option("--messages", default=3000, show_default=True, type=click.IntRange(min=1),
              help="Messages at the simulated Metriport.")
@click.option("--seed", default=7, show_default=True, help="Same seed, same messages and chaos.")
@click.option("--drop", default=0.15, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of webhooks never delivered (0 to 1).")
@click.option("--duplicate", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of webhooks delivered twice (0 to 1).")
@click.option("--no-reconcile", is_flag=True, help="Skip reconciliation: shows what webhooks alone lose.")
def demo(messages, seed, drop, duplicate, no_reconcile):
    """Run the whole loop locally and print a report with a consistency verdict."""
    base = load_settings()
    started = time.monotonic()
    _stop_on_signals()
    with redis_for(base) as settings, contextlib.ExitStack() as stack:
        Store(settings).ping()  # a configured Redis that does not answer: one line, at once
        webhook_key = secrets.token_urlsafe(16)
        web_port = free_port()
        _phase(1, f"simulator: {messages} messages (seed {seed})")
        sim = stack.enter_context(Simulator(
            seed=seed, messages=messages,
            webhook_url=f"http://127.0.0.1:{web_port}/webhook", webhook_key=webhook_key,
        ))
        settings = settings.replace(
            namespace=f"demo-{secrets.token_hex(3)}", webhook_keys=(webhook_key,),
            api_url=sim.url, api_key=sim.api_key,
        )
        stack.callback(_delete_namespace, settings)
        env = _environment(settings)
        _phase(2, f"receiver: gunicorn on 127.0.0.1:{web_port}; RQ worker")
        web = _start(stack, ["serve", "--port", str(web_port), "--workers", "2"], env)
        _start(stack, ["worker"], env)
        _wait_ready(web_port, web)

        _phase(3, f"webhooks: delivering with {drop:.0%} dropped, {duplicate:.0%} duplicated")
        report = sim.deliver_webhooks(drop=drop, duplicate=duplicate, shuffle=True, concurrency=8)
        queue = _queue(settings)
        _drain(queue)
        if no_reconcile:
            _phase(4, "reconciliation: skipped (--no-reconcile)")
        else:
            _phase(4, "reconciliation: one full walk of both directions")
            _reconcile(queue)
        _phase(5, "checking the store and the feed against the simulator")
        verdict = Verdict.check(Store(settings), sim)
        _print_report(sim, report, Store(settings).stats(), verdict, time.monotonic() - started)
    sys.exit(0 if verdict.consistent else 1)


class Stopped(InboxError):
    """Raised in the demo's main thread by SIGINT, SIGTERM or SIGHUP, to unwind and clean up."""

    code = "stopped"


def _stop_on_signals():
    def stop(signum, frame):
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # a second signal does not cut the cleanup
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise Stopped(f"The demo was stopped by {signal.Signals(signum).name}; "
                      "everything it started is stopped and its keys are deleted.")

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), stop)


def _phase(number, text):
    click.echo(f"[{number}/5] {text}", err=True)


def _environment(settings):
    """The environment of the demo's processes: this one's, bound to the demo's settings."""
    env = dict(os.environ)
    env.update(
        REDIS_URL=settings.redis_url,
        INBOX_NAMESPACE=settings.namespace,
        METRIPORT_WEBHOOK_KEY=settings.webhook_keys[0],
        METRIPORT_API_URL=settings.api_url,
        METRIPORT_API_KEY=settings.api_key,
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(stack, arguments, env):
    """Start ``metriport-inbox <arguments>``; stopped by pid when the demo ends."""
    command = [sys.executable, "-c", "from cli import main; main()", *arguments]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    stack.callback(processes.stop_session, process)
    return process


def _wait_ready(port, web):
    try:
        processes.wait_http_ok(port, web, path="/readyz", timeout=PHASE_TIMEOUT)
    except RuntimeError as exc:
        raise DemoFailed(f"The receiver did not become ready: {exc}.", "demo_timeout") from None


def _queue(settings):
    from rq import Queue

    return Queue(settings.queue_name, connection=Connections(settings).queue)


def _drain(queue):
    """Wait until the worker has run every queued job (fetches of id-only and status webhooks)."""
    from rq.registry import StartedJobRegistry

    started = StartedJobRegistry(queue=queue)
    deadline = time.monotonic() + PHASE_TIMEOUT
    while queue.count or started.count:
        if time.monotonic() > deadline:
            raise DemoFailed("The worker did not finish its queued jobs in time.", "demo_timeout")
        time.sleep(0.1)


def _reconcile(queue):
    job = queue.enqueue("worker.jobs.reconcile", "full", job_timeout=PHASE_TIMEOUT)
    deadline = time.monotonic() + PHASE_TIMEOUT
    while not (job.is_finished or job.is_failed):
        if time.monotonic() > deadline:
            raise DemoFailed("Reconciliation did not finish in time.", "demo_timeout")
        time.sleep(0.2)
        job.refresh()
    if job.is_failed:
        raise DemoFailed("The reconciliation job failed; see the worker's log.", "demo_reconcile_failed")
    _drain(queue)
    summary = job.return_value()
    click.echo(
        f"      {summary['pages']} pages, {summary['requests']} requests, "
        f"{summary['created']} repaired, {summary['updated']} updated", err=True,
    )


class Verdict:
    """Store versus simulator: what is missing, extra, different, or announced twice."""

    def __init__(self, expected, missing, extra, different, announced_twice, unannounced, feed):
        self.expected, self.missing, self.extra = expected, missing, extra
        self.different, self.announced_twice, self.unannounced = different, announced_twice, unannounced
        self.feed = feed

    @property
    def consistent(self):
        return not (self.missing or self.extra or self.different or self.announced_twice or self.unannounced)

    @classmethod
    def check(cls, store, sim):
        expected = set(sim.mailbox.ids())
        stored = _all_ids(store)
        different = [
            message.id for chunk in _chunks(sorted(expected & stored), 500)
            for message in store.get_many(chunk)
            if message.resource != sim.mailbox.get(message.id)
        ]
        feed = _feed_events(Feed(store.settings))
        created = feed["created"]
        return cls(
            expected=len(expected),
            missing=sorted(expected - stored),
            extra=sorted(stored - expected),
            different=different,
            announced_twice=sorted(i for i, n in created.items() if n > 1),
            unannounced=sorted(stored - set(created)),
            feed=feed,
        )


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _all_ids(store):
    ids, cursor = set(), None
    while True:
        batch = store.ids(store.index_key(), start=cursor, count=1000)
        ids.update(batch)
        if len(batch) < 1000:
            return ids
        cursor = batch[-1]


def _feed_events(feed):
    """``{"created": {id: n}, "updated": n, "entries": n}`` over the whole feed stream."""
    created, updated, entries, position = {}, 0, 0, None
    while True:
        batch = feed.after(position, limit=5000)
        for entry in batch:
            entries += 1
            if entry.event == "created":
                created[entry.message_id] = created.get(entry.message_id, 0) + 1
            else:
                updated += 1
        if not batch:
            return {"created": created, "updated": updated, "entries": entries}
        position = batch[-1].id


def _print_report(sim, report, stats, verdict, seconds):
    inbound = len(sim.mailbox.ids(direction="inbound"))
    rows = [
        ("messages at Metriport (simulated)", verdict.expected,
         f"{inbound} inbound, {verdict.expected - inbound} outbound"),
        ("webhooks sent", report.posts, f"{report.events} events: {report.dropped} dropped, "
                                        f"{report.duplicated} duplicated"),
        ("stored via webhook", stats.get("created:webhook", 0), ""),
        ("fetched after id-only/status webhooks", stats.get("created:fetch", 0), ""),
        ("repaired by reconciliation", stats.get("created:reconcile", 0), "webhooks alone missed these"),
        ("duplicate webhooks absorbed",
         sum(stats.get(name, 0) for name in ("duplicate:webhook", "duplicate:fetch", "replay")),
         "same message or same delivery again: no second copy"),
        ("already stored when reconciliation read them", stats.get("duplicate:reconcile", 0), ""),
        ("feed entries", verdict.feed["entries"],
         f"{len(verdict.feed['created'])} created, {verdict.feed['updated']} updated"),
    ]
    click.echo("")
    click.echo("metriport-inbox demo")
    for label, value, note in rows:
        click.echo(f"  {label:<46} {value:>6}  {note}".rstrip())
    click.echo("")
    if verdict.consistent:
        click.echo(f"verdict: CONSISTENT: store == simulator ({verdict.expected} messages), "
                   f"each announced exactly once in the feed ({seconds:.0f} s)")
        return
    click.echo("verdict: INCONSISTENT")
    for label, ids in (
        ("missing from the store", verdict.missing), ("not at Metriport", verdict.extra),
        ("stored content differs", verdict.different), ("announced twice", verdict.announced_twice),
        ("never announced", verdict.unannounced),
    ):
        if ids:
            shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
            click.echo(f"  {len(ids)} {label}: {shown}")


def _delete_namespace(settings):
    """Leave nothing behind on a configured Redis (an embedded one goes away anyway): the
    namespace's keys, and its RQ queue with its jobs and registries."""
    from worker.queue import purge

    connections = Connections(settings)
    with contextlib.suppress(StoreUnavailable), translate_errors("delete the demo's keys"):
        client = connections.store
        for key in client.scan_iter(match=RedisKeys(settings.namespace).pattern(), count=1000):
            client.delete(key)
        purge(settings.queue_name, connections.queue)

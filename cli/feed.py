"""``metriport-inbox tail`` and ``stats``: watch the feed and read the operating figures.

Both talk to the Redis that ``REDIS_URL`` names (they inspect a running deployment, so there is
no embedded fallback) and fail fast with ``store_unavailable`` when it does not answer. Output
holds ids, codes and counts; only ``tail --with-content`` prints message content, and every line
of ``tail`` is escaped (``cli.printable``): no control character reaches the terminal.
"""

import dataclasses
import datetime
import json
import time

import click

from cli.environment import load_settings
from cli.printable import escape
from inbox.connection import Connections
from inbox.feed import Consumer
from inbox.feed import Feed
from inbox.figures import REJECTED_PREFIX
from inbox.figures import UNREADABLE_PREFIX
from inbox.figures import Figures
from inbox.store import Outcome
from inbox.store import Store
from inbox.store import Via

#: seconds one blocking read waits before the loop checks its limits again
POLL_BLOCK = 1.0


@click.command()
@click.option("--group", help="Consume as this consumer group (entries are acked once printed).")
@click.option("--consumer", "consumer_name", help="Consumer name within --group (default host-pid).")
@click.option("--from-start", is_flag=True, help="Begin at the oldest entry instead of now.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@click.option("--with-content", is_flag=True, help="Also print each message's resource (PHI!).")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many entries.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop after this many seconds.")
def tail(group, consumer_name, from_start, as_json, with_content, limit, timeout):
    """Follow the feed: one line per entry (ids and routing fields) until Ctrl-C."""
    settings = load_settings()
    deadline = time.monotonic() + timeout if timeout is not None else None
    read = _group_reader(settings, group, consumer_name, from_start) if group else _plain_reader(
        settings, from_start, with_content
    )
    shown = 0
    try:
        while limit is None or shown < limit:
            block = POLL_BLOCK
            if deadline is not None:
                block = min(block, deadline - time.monotonic())
                if block <= 0:
                    break
            want = 100 if limit is None else min(100, limit - shown)
            for entry in read(want, block):
                click.echo(_line(entry, as_json, with_content))
                shown += 1
    except KeyboardInterrupt:
        pass


def _group_reader(settings, group, name, from_start):
    consumer = Consumer(settings, group, name, from_start=from_start)

    def read(count, block):
        entries = consumer.read(count=count, block=block)
        yield from entries
        consumer.ack(*entries)

    return read


def _plain_reader(settings, from_start, with_content):
    connections = Connections(settings)
    feed = Feed(settings, client=connections.store)
    store = Store(settings, client=connections.store) if with_content else None
    blocking = connections.blocking(POLL_BLOCK)
    position = "0-0" if from_start else feed.last_position()

    def read(count, block):
        nonlocal position
        entries = feed.wait_after(position, count, max(block, 0.001), blocking)
        if entries:
            position = entries[-1].id
        if store is not None:
            messages = store.get_many([e.message_id for e in entries])
            entries = [
                _with_message(entry, message) for entry, message in zip(entries, messages)
            ]
        return entries

    return read


def _with_message(entry, message):
    return dataclasses.replace(entry, message=message, error=None if message else "message_missing")


def _line(entry, as_json, with_content):
    if as_json:
        payload = entry.routing()
        if with_content:
            payload["resource"] = entry.message.resource if entry.message else None
            if entry.error:
                payload["error"] = entry.error
        return escape(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    line = escape(
        f"{entry.id}  {entry.event:<7}  {entry.message_id}  v{entry.version} {entry.via}"
        f"  {entry.direction or '-'}  patient={entry.patient or '-'}  status={entry.status or '-'}"
    )
    if with_content:
        content = entry.message.resource if entry.message else {"error": entry.error}
        line += "\n  " + escape(json.dumps(content, ensure_ascii=False))
    return line


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--runs", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many recent reconcile runs to show.")
def stats(as_json, runs):
    """Counters, recent reconcile runs, feed groups and their lag, encryption on/off, memory."""
    figures = Figures(load_settings())
    counters = figures.counters()
    recent = figures.runs(limit=runs) if runs else []
    groups = figures.groups()
    feed = {"length": figures.feed_length(), "deadLetters": figures.deadletter_length()}
    memory = figures.memory()
    if as_json:
        click.echo(json.dumps({
            "counters": counters,
            "reconcileRuns": [run.as_dict() for run in recent],
            "groups": [
                {"name": g.name, "consumers": g.consumers, "pending": g.pending, "lag": g.lag,
                 "lastDelivered": g.last_delivered}
                for g in groups
            ],
            "feed": feed,
            "encryption": figures.encryption,
            "memory": memory.as_dict(),
        }, sort_keys=True))
        return
    for line in _table(counters, recent, groups, feed, memory, figures.encryption):
        click.echo(line)


def _table(counters, recent, groups, feed, memory, encryption):
    """The compact text form of ``stats``."""
    channels = [via.value for via in Via]
    yield f"{'messages':<10}" + "".join(f"{c:>11}" for c in channels) + f"{'total':>11}"
    for outcome in (outcome.value for outcome in Outcome):
        row = [counters.get(f"{outcome}:{c}", 0) for c in channels]
        yield f"{outcome:<10}" + "".join(f"{n:>11}" for n in row) + f"{counters.get(outcome, 0):>11}"
    yield f"repaired by reconciliation: {counters.get('created:reconcile', 0)}"
    rejected = {k[len(REJECTED_PREFIX):]: v for k, v in counters.items() if k.startswith(REJECTED_PREFIX)}
    yield "rejected webhooks: " + (
        ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items())) or "none"
    )
    unreadable = {k[len(UNREADABLE_PREFIX):]: v for k, v in counters.items() if k.startswith(UNREADABLE_PREFIX)}
    if unreadable:
        yield "unreadable records met by reads: " + ", ".join(
            f"{reason} {n}" for reason, n in sorted(unreadable.items()))
    yield f"feed: {feed['length']} entries, {feed['deadLetters']} dead letters"
    if groups:
        yield f"{'group':<20}{'consumers':>10}{'pending':>10}{'lag':>10}  last delivered"
        for g in groups:
            yield f"{g.name:<20}{g.consumers:>10}{g.pending:>10}{g.lag:>10}  {g.last_delivered}"
    else:
        yield "groups: none"
    if recent:
        yield "reconcile runs (newest first):"
        for run in recent:
            when = (
                datetime.datetime.fromtimestamp(run.ended_at, datetime.timezone.utc)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
            )
            numbers = " ".join(
                f"{k}={v}" for k, v in run.as_dict().items()
                if isinstance(v, int) and not isinstance(v, bool)
            )
            yield f"  {when}  {run.outcome.value:<10} {numbers}".rstrip()
    else:
        yield "reconcile runs: none recorded"
    if counters.get("expired"):
        yield (f"expired by retention: {counters['expired']} messages, "
               f"{counters.get('expired_bytes', 0)} bytes of content")
    yield memory.line()
    yield f"encryption: {encryption}"

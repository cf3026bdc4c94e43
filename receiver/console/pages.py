"""The console's pages: each view reads figures (never a resource) and renders one template."""

import datetime
import functools
import time

from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from inbox import history
from inbox import persistence
from inbox.connection import translate_errors
from inbox.errors import StoreUnavailable
from inbox.figures import Figures
from inbox.jobs import Jobs
from inbox.normalize import valid_id
from inbox.traffic import Traffic
from receiver import requestlog
from receiver.console import bp
from receiver.console.charts import stacked_bars
from receiver.console.session import operator_required
from receiver.resources import resources

#: reconcile runs shown
RUNS_SHOWN = 30


def page(name):
    """A logged-in page rendering ``console/<name>.html``; Redis down gives a clear 503 page."""

    def decorate(view):
        @functools.wraps(view)
        def render(*args, **kwargs):
            try:
                values = view(*args, **kwargs)
            except StoreUnavailable as exc:
                requestlog.set_reason(exc.code)
                return render_template("console/unavailable.html", page=name, detail=exc.detail), 503
            if not isinstance(values, dict):
                return values
            return render_template(f"console/{name}.html", page=name, **values)

        return operator_required(render)

    return decorate


@bp.app_template_filter("when")
def when(epoch_seconds):
    """``2026-01-02 03:04:05Z`` for epoch seconds (None: a dash)."""
    if epoch_seconds is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


@bp.app_template_filter("age")
def age(epoch_seconds):
    """How long ago, in the largest sensible unit."""
    if epoch_seconds is None:
        return "never"
    seconds = max(0, int(time.time() - epoch_seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@bp.get("/")
@page("overview")
def overview():
    shared = resources()
    settings, store = shared.settings, shared.store
    with translate_errors("ping"):
        shared.readiness_client.ping()
    check = persistence.check(shared.connections.store, settings)
    figures = Figures(settings, client=shared.connections.store)
    return {
        "check": check,
        "memory": figures.memory(),
        "stored": store.count(store.index_key()),
        "counters": figures.counters(),
        "unreadable": len(store.unreadable()),
        "keys": {
            "webhook keys (METRIPORT_WEBHOOK_KEY)": len(settings.webhook_keys),
            "reader keys (INBOX_API_KEYS)": len(settings.inbox_api_keys),
            "operator keys (INBOX_OPERATOR_KEYS)": len(settings.operator_keys),
            "encryption keys (INBOX_ENCRYPTION_KEYS)": len(settings.encryption_keys),
            "Metriport API key (METRIPORT_API_KEY)": 1 if settings.api_key else 0,
        },
        "encryption": "on" if settings.encryption_on else "off",
        "namespace": settings.namespace,
    }


@bp.get("/webhooks")
@page("webhooks")
def webhooks():
    shared = resources()
    hours = Traffic(shared.settings, shared.connections.store).hours(24)
    accepted, rejected, reasons = [], [], {}
    for start, fields in hours:
        label = time.strftime("%H:00", time.gmtime(start))
        accepted.append((label, {"accepted": fields.get("accepted", 0)}))
        refused = {k: v for k, v in fields.items() if k != "accepted"}
        rejected.append((label, refused))
        for reason, count in refused.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return {
        "accepted": stacked_bars("Accepted per hour (UTC)", accepted, label_every=3),
        "rejected": stacked_bars("Refused per hour, by reason (UTC)", rejected, label_every=3),
        "reasons": sorted(reasons.items(), key=lambda item: -item[1]),
        "accepted_total": sum(v["accepted"] for _, v in accepted),
    }


@bp.get("/reconciliation")
@page("reconciliation")
def reconciliation():
    shared = resources()
    settings = shared.settings
    runs = Figures(settings, client=shared.connections.store).runs(limit=RUNS_SHOWN)
    last_success = next((run.ended_at for run in runs if run.ok), None)
    columns = [(str(i + 1), {"repaired": run.totals.created}) for i, run in enumerate(reversed(runs))]
    schedule = Jobs(settings, shared.connections.queue).schedule(settings)
    return {
        "runs": runs,
        "repaired": stacked_bars("Repaired per run (oldest left)", columns),
        "last_success": last_success,
        "schedule": schedule,
        "interval": settings.reconcile_interval,
        "full_interval": settings.reconcile_full_interval,
    }


@bp.get("/feed")
@page("feed")
def feed():
    shared = resources()
    figures = Figures(shared.settings, client=shared.connections.store)
    return {
        "groups": figures.groups(),
        "length": figures.feed_length(),
        "dead": figures.deadletter_length(),
    }


@bp.get("/jobs")
@page("jobs")
def jobs():
    shared = resources()
    queue = Jobs(shared.settings, shared.connections.queue)
    return {"depth": queue.depth(), "failed": queue.failed(), "requeued": request.args.get("requeued")}


@bp.post("/jobs/requeue")
@page("jobs")
def requeue():
    shared = resources()
    job_id = request.form.get("job", "")
    if not valid_id(job_id) or not Jobs(shared.settings, shared.connections.queue).requeue(job_id):
        requestlog.set_reason("job_not_found")
        return render_template("console/refused.html", code="job_not_found",
                               detail="No failed job has that id (already requeued?)."), 404
    requestlog.note(job=job_id)
    return redirect(url_for("console.jobs", requeued=job_id), code=303)


@bp.get("/history")
@page("history")
def message_history():
    message_id = request.args.get("id", "").strip()
    if not message_id:
        return {"trace": None, "asked": ""}
    if not valid_id(message_id):
        requestlog.set_reason("invalid_id")
        return render_template("console/history.html", page="history", trace=None, asked="",
                               invalid=True), 400
    shared = resources()
    trace = history.trace(shared.settings, shared.connections.store, message_id)
    return {"trace": trace, "asked": message_id}

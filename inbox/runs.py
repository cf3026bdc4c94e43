"""The reconcile run log: the one definition of a run record, its writer and its reader.

The reconciler builds a ``Run`` and ``RunLog.append`` stores it (JSON, newest first, in the capped
list ``{ns}:reconcile:runs``); ``stats``, ``/metrics`` and the CLI read it back with
``RunLog.recent``. A record holds counts, codes and times only, never message content. The JSON
form (``Run.as_dict``) is what ``reconcile --once --json``, ``stats --json`` and the RQ job
result show.
"""

import dataclasses
import datetime
import enum
import json

from inbox.connection import translate_errors

#: runs kept in the run list
RUNS_KEPT = 100


class RunOutcome(str, enum.Enum):
    """How a reconcile run ended."""

    COMPLETED = "completed"
    #: another run held the lock
    SKIPPED = "skipped"
    #: the request budget ran out: resumable, not an error
    BUDGET_EXHAUSTED = "budget_exhausted"
    FAILED = "failed"


class Mode(str, enum.Enum):
    """How far a walk goes: until nothing changes for a while, or to the last page."""

    INCREMENTAL = "incremental"
    FULL = "full"


@dataclasses.dataclass
class Tally:
    """Counts of one walk or of a whole run."""

    pages: int = 0
    seen: int = 0
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    stale: int = 0
    invalid: int = 0

    def add(self, other):
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class Walk:
    """The walk of one direction within a run."""

    mode: Mode
    resumed: bool
    complete: bool = False
    tally: Tally = dataclasses.field(default_factory=Tally)

    def as_dict(self):
        return {"mode": self.mode.value, "resumed": self.resumed, "complete": self.complete,
                **dataclasses.asdict(self.tally)}

    @classmethod
    def from_dict(cls, record):
        tally = Tally(**{f.name: record[f.name] for f in dataclasses.fields(Tally)})
        return cls(Mode(record["mode"]), record["resumed"], record["complete"], tally)


@dataclasses.dataclass(frozen=True)
class Run:
    """One reconcile run: how it ended, its walks per direction and what it cost."""

    outcome: RunOutcome
    #: the requested mode, or full when any direction was walked in full
    mode: Mode
    #: ISO 8601 UTC, milliseconds
    started: str
    ended: str
    seconds: float
    walks: dict
    requests: int
    retries: int
    round_trips: int
    #: ``{"failed": n, "retried": bool}`` or ``{"error": code}`` when webhook retry was asked
    webhook: dict | None = None
    #: ``{"code": ..., "detail": ...}`` for a failed or budget-stopped run
    error: dict | None = None

    @property
    def ok(self):
        return self.outcome is RunOutcome.COMPLETED

    @property
    def ended_at(self):
        """When the run ended, in seconds since the epoch."""
        return datetime.datetime.fromisoformat(self.ended).timestamp()

    @property
    def totals(self):
        """The walks' tallies added up."""
        total = Tally()
        for walk in self.walks.values():
            total.add(walk.tally)
        return total

    def as_dict(self):
        """The JSON-ready record: the run list's element, the CLI's and the RQ job's summary."""
        record = {
            "outcome": self.outcome.value,
            "mode": self.mode.value,
            "started": self.started,
            "ended": self.ended,
            "seconds": self.seconds,
            "directions": {d: walk.as_dict() for d, walk in self.walks.items()},
            "requests": self.requests,
            "retries": self.retries,
            "round_trips": self.round_trips,
        }
        totals = self.totals
        record.update(dataclasses.asdict(totals))
        record["repaired"] = totals.created
        if self.webhook is not None:
            record["webhook"] = self.webhook
        if self.error is not None:
            record["error"] = self.error
        return record

    @classmethod
    def from_dict(cls, record):
        """The ``Run`` of a record ``as_dict`` wrote; ``KeyError``/``ValueError``/``TypeError`` else."""
        return cls(
            outcome=RunOutcome(record["outcome"]),
            mode=Mode(record["mode"]),
            started=record["started"],
            ended=record["ended"],
            seconds=record["seconds"],
            walks={d: Walk.from_dict(w) for d, w in record["directions"].items()},
            requests=record["requests"],
            retries=record["retries"],
            round_trips=record["round_trips"],
            webhook=record.get("webhook"),
            error=record.get("error"),
        )


def iso(seconds):
    """ISO 8601 UTC with milliseconds for seconds since the epoch (the run's time format)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
        timespec="milliseconds")


class RunLog:
    """The run list of ``store``'s namespace."""

    def __init__(self, store):
        self.store = store

    def append(self, run):
        """Record ``run`` as the newest (the list keeps the last ``RUNS_KEPT``) and count it by
        outcome (``runs:<outcome>``, the ``/metrics`` counter), in one round trip."""
        pipe = self.store.pipeline()
        self.store.append_run(json.dumps(run.as_dict()), RUNS_KEPT,
                              {"last_outcome": run.outcome.value, "last_ended": run.ended},
                              pipeline=pipe)
        self.store.count_event(f"runs:{run.outcome.value}", pipeline=pipe)
        with translate_errors("record the run"):
            pipe.execute()

    def recent(self, limit=5):
        """The last ``limit`` runs, newest first; a record this module did not write is skipped."""
        runs = []
        for text in self.store.runs(limit):
            try:
                runs.append(Run.from_dict(json.loads(text)))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        return runs

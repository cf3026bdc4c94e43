"""Turn a message in any shape Metriport may send into one ``Record``.

Accepted shapes (see ``shared/reference/metriport-api.md`` §5.4):

- a FHIR ``Communication`` (the List Messages docs' model);
- a Communication wrapped as ``{"communication": {...}}`` (the Get Message docs' model);
- the flat ``Message`` object of Metriport's newest SDK (``id``, ``patientId``, ``direction``,
  ``status``, ``subject``, ``body``, ``sentAt``, ``updatedAt`` ...).

The record keeps the resource exactly as received (what the mirror API serves back) and derives
the fields the store indexes and orders by. Anything without a usable id raises ``InvalidMessage``
before a single byte is written.
"""

import dataclasses
import datetime
import re

from inbox import compactjson
from inbox.errors import InvalidMessage
from inbox.settings import DIRECTIONS

#: statuses after which a message never changes back (FHIR terminal codes plus the SDK's "failed")
TERMINAL_STATUSES = frozenset({"completed", "failed", "entered-in-error", "stopped", "not-done"})

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# a status is a code (FHIR's or the SDK's); anything else is dropped, as it would reach the feed
_STATUS = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PATIENT_REFERENCE = "Patient/"


def valid_id(value):
    """True for a usable message, patient or delivery id: 1-128 of A-Z a-z 0-9 . _ : -."""
    return isinstance(value, str) and _ID.match(value) is not None


def valid_status(value):
    """True for a status code (FHIR's or the SDK's); free text never reaches the feed."""
    return isinstance(value, str) and _STATUS.match(value) is not None
#: where the message time comes from, first found wins (FHIR, then the SDK DTO)
_MESSAGE_TIMES = ("sent", "received", "sentAt")


@dataclasses.dataclass(frozen=True)
class Record:
    """One message, ready for the store. ``body`` is the resource as received, compact JSON."""

    id: str
    body: bytes
    canonical: bytes
    direction: str | None
    patient: str | None
    status: str | None
    message_time: int | None
    as_of: int

    @property
    def terminal(self):
        return self.status in TERMINAL_STATUSES


def normalize(message, direction=None):
    """A ``Record`` for ``message`` (a parsed JSON value) in any accepted shape.

    ``direction`` is what the caller knows (a walk filtered by direction, or ``inbound`` for
    ``message.received``); it wins over a ``direction`` field in the resource.
    """
    if not isinstance(message, dict):
        raise InvalidMessage("A message must be a JSON object.", "not_an_object")
    resource = message.get("communication") if "communication" in message else message
    if not isinstance(resource, dict):
        raise InvalidMessage("The communication of a message must be a JSON object.", "not_an_object")
    message_id = resource.get("id")
    if message_id is None or message_id == "":
        raise InvalidMessage("The message has no id.", "missing_id")
    if not isinstance(message_id, str) or not _ID.match(message_id):
        raise InvalidMessage(
            "The message id must be 1-128 characters of A-Z a-z 0-9 . _ : -.", "invalid_id"
        )
    if direction is None and resource.get("direction") in DIRECTIONS:
        direction = resource["direction"]
    if direction is not None and direction not in DIRECTIONS:
        raise InvalidMessage("The direction must be inbound or outbound.", "invalid_direction")
    status = resource.get("status")
    times = [t for t in map(parse_time, map(resource.get, _MESSAGE_TIMES)) if t is not None]
    message_time = times[0] if times else None
    as_of = (
        parse_time(resource.get("updatedAt"))
        or _meta_last_updated(resource)
        # the latest, not the first: a Communication's ``received`` is when Metriport had it,
        # which is the DTO's ``updatedAt``, so both copies of a message tie and the API read wins
        or (max(times) if times else None)
    )
    return Record(
        id=message_id,
        body=compactjson.dumps(resource),
        canonical=compactjson.dumps(resource, sort_keys=True),
        direction=direction,
        patient=_patient_id(resource),
        status=status_code(status),
        message_time=message_time,
        as_of=as_of or 0,
    )


def status_code(value):
    """``value`` when it is a status code (``completed``, ``in-progress`` …), else None."""
    return value if isinstance(value, str) and _STATUS.match(value) else None


def _patient_id(resource):
    """``Patient/<id>`` from ``subject.reference``, else ``patientId``; None when absent or odd."""
    candidate = resource.get("patientId")
    subject = resource.get("subject")
    if isinstance(subject, dict):
        reference = subject.get("reference")
        if isinstance(reference, str) and reference.startswith(_PATIENT_REFERENCE):
            candidate = reference[len(_PATIENT_REFERENCE):]
    if isinstance(candidate, str) and _ID.match(candidate):
        return candidate
    return None


def _meta_last_updated(resource):
    meta = resource.get("meta")
    return parse_time(meta.get("lastUpdated")) if isinstance(meta, dict) else None


def parse_time(value):
    """Milliseconds since the epoch for an ISO-8601 string; None for anything unusable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp() * 1000)

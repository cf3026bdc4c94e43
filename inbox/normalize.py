"""Turn a message in any shape Metriport may send into one ``Record``.

Accepted shapes (docs/store.md, "What a message becomes"):

- a FHIR ``Communication`` (the List Messages docs' model);
- a Communication wrapped as ``{"communication": {...}}`` (the Get Message docs' model);
- the flat ``Message`` object of Metriport's newest SDK (``id``, ``patientId``, ``direction``,
  ``status``, ``subject``, ``body``, ``sentAt``, ``updatedAt`` ...).

The record keeps the resource exactly as received (what the mirror API serves back) and derives
the fields the store indexes and orders by, and the message's *meaning*: what a person reading it
would call the message (ids, subject line, parties, time, text, attachments), the same bytes
whichever shape carried it. The store decides "same message?" on the meaning, its status and its
as-of, never on the representation, so the SDK object delivered by webhook and the Communication
read later from the list are one message, announced once. Anything without a usable id raises
``InvalidMessage`` before a single byte is written.
"""

import dataclasses
import datetime
import enum
import functools
import re

from inbox import compactjson
from inbox.errors import InvalidMessage
from inbox.settings import DIRECTIONS

#: statuses after which a message never changes back (FHIR terminal codes plus the SDK's "failed")
TERMINAL_STATUSES = frozenset({"completed", "failed", "entered-in-error", "stopped", "not-done"})
#: status words that mean the same: the SDK object's word, FHIR's word (what a Communication says)
STATUS_SYNONYMS = {"processing": "in-progress"}
#: the version of the meaning's definition; a digest of another version is never compared to it
MEANING_VERSION = "m1"


class Shape(enum.IntEnum):
    """The representation a record holds, ranked: a better one replaces an equal-meaning worse one.

    ``STALE`` marks a stored resource whose status was changed after it (a status webhook), so
    any copy of the same meaning replaces it.
    """

    STALE = 0
    OTHER = 1
    FLAT = 2
    COMMUNICATION = 3


# keys that only a FHIR Communication has, and keys of the SDK's flat Message object
_FHIR_KEYS = frozenset({"topic", "payload", "recipient", "sender", "sent", "received"})
_FLAT_KEYS = frozenset({"subject", "body", "sentAt", "destination", "attachments",
                        "transportMethod", "intendedRecipientNpi"})

# Every shape rule is matched against the whole string (``fullmatch``): ``^…$`` with ``match``
# would let a trailing newline through, into Redis key names, counters and terminal output.
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# a status is a code (FHIR's or the SDK's); anything else is dropped, as it would reach the feed
_STATUS = re.compile(r"[A-Za-z0-9._-]{1,64}")
# an event type (``meta.type``) or a reason code used as a counter name
_CODE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_PATIENT_REFERENCE = "Patient/"


def valid_id(value):
    """True for a usable message, patient or delivery id: 1-128 of A-Z a-z 0-9 . _ : -."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def valid_status(value):
    """True for a status code (FHIR's or the SDK's); free text never reaches the feed."""
    return isinstance(value, str) and _STATUS.fullmatch(value) is not None


def valid_code(value):
    """True for an event type or reason code usable as a counter name: 1-64 of A-Z a-z 0-9 . _ : -."""
    return isinstance(value, str) and _CODE.fullmatch(value) is not None


@dataclasses.dataclass(frozen=True)
class Record:
    """One message, ready for the store. ``body`` is the resource as received, compact JSON;
    ``meaning`` the shape-independent bytes its digest is taken over; ``shape`` its ``Shape``."""

    id: str
    body: bytes
    meaning: bytes
    shape: "Shape"
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
    if not valid_id(message_id):
        raise InvalidMessage(
            "The message id must be 1-128 characters of A-Z a-z 0-9 . _ : -.", "invalid_id"
        )
    if direction is None and resource.get("direction") in DIRECTIONS:
        direction = resource["direction"]
    if direction is not None and direction not in DIRECTIONS:
        raise InvalidMessage("The direction must be inbound or outbound.", "invalid_direction")
    status = resource.get("status")
    # each parsed once: the meaning reads them again (a page parses 500 messages' times)
    sent = parse_time(resource.get("sent"))
    received = parse_time(resource.get("received"))
    sent_at = parse_time(resource.get("sentAt"))
    # the message time: first found wins (FHIR, then the SDK DTO)
    times = [t for t in (sent, received, sent_at) if t is not None]
    message_time = times[0] if times else None
    as_of = (
        parse_time(resource.get("updatedAt"))
        or _meta_last_updated(resource)
        # the latest, not the first: a Communication's ``received`` is when Metriport had it,
        # which is the DTO's ``updatedAt``, so both copies of a message tie and the API read wins
        or (max(times) if times else None)
    )
    patient = _patient_id(resource)
    shape = _shape(resource)
    return Record(
        id=message_id,
        body=compactjson.dumps(resource),
        meaning=_meaning(resource, shape, message_id, patient, direction, (sent, received, sent_at)),
        shape=shape,
        direction=direction,
        patient=patient,
        status=status_code(status),
        message_time=message_time,
        as_of=as_of or 0,
    )


def _shape(resource):
    if resource.get("resourceType") == "Communication" or not _FHIR_KEYS.isdisjoint(resource):
        return Shape.COMMUNICATION
    if not _FLAT_KEYS.isdisjoint(resource):
        return Shape.FLAT
    return Shape.OTHER


def _meaning(resource, shape, message_id, patient, direction, times):
    """The message's meaning as canonical JSON: equal for a Communication and its flat object.

    Fields (``docs/store.md``, "Same message"): id, patient, subject line, the other party's
    address, the recipients' NPIs, the message time (when Metriport had it: ``received`` else
    ``sent``; the object's ``sentAt``), the text parts and the attachment ids. Status and as-of
    are compared beside the digest, so a status change is an update and a status webhook does
    not make the later API copy look different. A resource of neither known shape means itself
    (its key-sorted JSON). ``times``: ``sent``, ``received`` and ``sentAt`` parsed (``normalize``).
    """
    if shape is Shape.OTHER:
        return compactjson.dumps([MEANING_VERSION, "other", resource], sort_keys=True, exact=True)
    if shape is Shape.COMMUNICATION:
        topic = _field(resource.get("topic"), "text")
        sent, received, _ = times
        time = received or sent
        recipients = [r for r in _list(resource.get("recipient")) if isinstance(r, dict)]
        if direction is None:
            # a Communication read without a direction (a fetch): Metriport's inbound ones carry
            # the time it received them, outbound ones only the time they were sent
            direction = "inbound" if "received" in resource else "outbound"
        if direction == "inbound":
            party = _field(resource.get("sender"), "display")
        else:
            organizations = [r for r in recipients if r.get("type") == "Organization"]
            party = _field((organizations or recipients or [None])[0], "display")
        npis = [r.get("display") for r in recipients if r.get("type") == "Practitioner"]
        texts, attachments = [], []
        for part in _list(resource.get("payload")):
            if not isinstance(part, dict):
                continue
            text = part.get("contentString")
            if isinstance(text, str):
                texts.append(text)
            document = _field(part.get("contentReference"), "reference")
            if isinstance(document, str):
                attachments.append(document.split("/", 1)[-1])
    else:
        topic = resource.get("subject")
        time = times[2]
        party = resource.get("destination")
        npis = _list(resource.get("intendedRecipientNpi"))
        body = resource.get("body")
        texts = [body] if isinstance(body, str) and body else []
        attachments = _list(resource.get("attachments"))
    meaning = [MEANING_VERSION, message_id, patient, _text(topic), time, _text(party),
               _strings(npis), texts, _strings(attachments)]
    # strings, integers and None only: orjson writes them byte for byte as json does
    return compactjson.dumps(meaning, sort_keys=True)


def _field(value, name):
    return value.get(name) if isinstance(value, dict) else None


def _list(value):
    return value if isinstance(value, list) else []


def _text(value):
    return value if isinstance(value, str) else None


def _strings(values):
    strings = [value for value in values if isinstance(value, str)]
    strings.sort()
    return strings


def status_code(value):
    """``value`` when it is a status code (``completed``, ``in-progress`` …), else None."""
    return value if valid_status(value) else None


def _patient_id(resource):
    """``Patient/<id>`` from ``subject.reference``, else ``patientId``; None when absent or odd."""
    candidate = resource.get("patientId")
    subject = resource.get("subject")
    if isinstance(subject, dict):
        reference = subject.get("reference")
        if isinstance(reference, str) and reference.startswith(_PATIENT_REFERENCE):
            candidate = reference[len(_PATIENT_REFERENCE):]
    if valid_id(candidate):
        return candidate
    return None


def _meta_last_updated(resource):
    meta = resource.get("meta")
    return parse_time(meta.get("lastUpdated")) if isinstance(meta, dict) else None


def parse_time(value):
    """Milliseconds since the epoch for an ISO-8601 string; None for anything unusable."""
    if not isinstance(value, str):
        return None
    if len(value) > _LONGEST_TIME:  # never a time; and the cache holds short strings only
        return None
    return _parse_iso(value)


#: longer than any ISO-8601 date-time (``2026-09-14T15:41:55.902000+05:30`` is 32)
_LONGEST_TIME = 64


# A message's times are read several times (sent, received, updatedAt, its meaning), and a page
# of 500 shares many: a small cache halves the parsing of a reconcile page.
@functools.lru_cache(maxsize=2048)
def _parse_iso(value):
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp() * 1000)

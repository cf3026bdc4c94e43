"""What a webhook body says, worked out without I/O: parse it safely and find its messages.

Metriport publishes no schema for ``message.received`` (``metriport-api.md`` §4.2), so the
messages are looked for in every plausible shape: ``payload`` as a Communication or as the flat
Message object, ``payload.communication``, and a ``messages`` list at the top level or in
``payload``. A body that only points at a message (its id and nothing to store) yields the id, to
be fetched from Metriport's API. Every failure is an ``InvalidMessage`` with a reason code.
"""

import re

from inbox import strictjson
from inbox.errors import InvalidMessage
from inbox.normalize import normalize
from inbox.normalize import parse_time
from inbox.normalize import valid_code
from inbox.normalize import valid_id
from inbox.normalize import valid_status

#: deepest JSON nesting accepted; a Communication needs fewer than 10 levels
MAX_DEPTH = 64
#: most messages one body may carry (the store writes them in one atomic call)
MAX_MESSAGES = 500
#: fields that only point at a message; a payload with nothing else is fetched, not stored
REFERENCE_FIELDS = frozenset({"id", "messageId", "patientId", "direction"})

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def parse(body):
    """The JSON object in ``body`` (bytes), refusing nesting deep enough to break the parser.

    Counting brackets is C-fast and settles ordinary bodies; only a body with many brackets gets
    the exact depth scan. ``RecursionError`` is still caught, as a backstop, never a 500.
    """
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _nests_too_deep(body):
        raise _too_deep()
    try:
        event = strictjson.loads(body)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise InvalidMessage(
            "The body is not valid UTF-8 JSON (NaN and Infinity are not JSON).", "json_invalid"
        ) from None
    if not isinstance(event, dict):
        raise InvalidMessage("The body is JSON but not an object.", "not_an_object")
    return event


def _too_deep():
    return InvalidMessage(f"The JSON body nests deeper than {MAX_DEPTH} levels.", "json_too_deep")


def _nests_too_deep(body):
    """Whether brackets outside strings nest past ``MAX_DEPTH``; stops at the first that does."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", body)):
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def event_type(event):
    """``meta.type`` of a webhook body (an open set: new types appear without notice)."""
    meta = event.get("meta")
    kind = meta.get("type") if isinstance(meta, dict) else None
    if not isinstance(kind, str) or not kind:
        raise InvalidMessage("The body has no meta.type.", "missing_type")
    return kind


def type_label(kind):
    """``kind`` as a counter name; anything odd-looking is counted as ``other``."""
    return kind if valid_code(kind) else "other"


def delivery_id(event):
    """Metriport's ``meta.messageId`` (one per delivery, kept on manual retries), or None.

    It becomes part of the ledger's key name, hence the strict shape (Metriport uses UUIDs).
    """
    meta = event.get("meta")
    value = meta.get("messageId") if isinstance(meta, dict) else None
    return value if valid_id(value) else None


def received_messages(event):
    """``(records, fetch_ids)`` of a ``message.received`` body: what to store, what to fetch."""
    payload = event.get("payload")
    if isinstance(event.get("messages"), list):
        items = event["messages"]
    elif isinstance(payload, dict) and isinstance(payload.get("messages"), list):
        items = payload["messages"]
    elif payload is not None:
        items = [payload]
    else:
        items = []
    if not items:
        raise InvalidMessage("The message.received body carries no message.", "no_message")
    if len(items) > MAX_MESSAGES:
        raise InvalidMessage(
            f"The body carries more than {MAX_MESSAGES} messages.", "too_many_messages"
        )
    records, fetch_ids = [], []
    for item in items:
        found = _message(item)
        (fetch_ids if isinstance(found, str) else records).append(found)
    return records, fetch_ids


def _message(item):
    """A ``Record`` for a whole message, or the id of a message that is only referenced."""
    if isinstance(item, str):
        return _reference(item)
    if isinstance(item, dict):
        for wrapper in ("communication", "message"):
            if isinstance(item.get(wrapper), dict):
                item = item[wrapper]
                break
        if item.keys() <= REFERENCE_FIELDS or ("id" not in item and "messageId" in item):
            return _reference(item.get("id", item.get("messageId")))
    return normalize(item, direction="inbound")


def _reference(value):
    """``value`` checked by the very rule stored message ids follow (InvalidMessage if not)."""
    return normalize({"id": value}).id


def status_update(event):
    """``(message id, status, as-of ms)`` of a ``message.status`` body (reference §4.1)."""
    payload = event.get("payload")
    if not isinstance(payload, dict):
        raise InvalidMessage("The message.status body carries no payload.", "no_message")
    message_id = _reference(payload.get("id"))
    status = payload.get("status")
    if not valid_status(status):
        raise InvalidMessage("The message.status payload has no usable status.", "invalid_status")
    as_of = parse_time(payload.get("completedAt")) or parse_time(payload.get("sentAt")) or 0
    return message_id, status, as_of

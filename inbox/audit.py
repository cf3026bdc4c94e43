"""The audit trail of reads through the mirror and feed HTTP APIs: who read what, and when.

One entry per request in the capped stream ``{ns}:audit``: ``who`` is the reader's API key
fingerprint (``inbox.crypto.fingerprint``; the key itself is never written), ``action`` names the
route, ``ids`` the message ids served (or the first of them), ``query`` the listing filters and
cursor, ``n`` how many messages were returned. The stream entry id is the time. Ids and patient
ids are identifiers, not content; no subject, body or name can reach this stream.

Only validated values are written: an id must pass the id rule and each query value its own
parameter's rule. Anything else (a requested id with a newline and a forged audit line in it, a
comma that would split into several ids) is counted in ``invalid`` and its text dropped, so a
reader cannot write into the trail what it did not read.
"""

import dataclasses
import json
import re

from inbox.connection import translate_errors
from inbox.errors import InvalidPosition
from inbox.feed import check_position
from inbox.normalize import valid_id
from inbox.normalize import valid_status
from inbox.settings import DIRECTIONS

#: approximate number of entries kept (XADD MAXLEN ~)
MAXLEN = 100_000
#: query parameters worth recording (mirror listing, feed polling); anything else is dropped
QUERY_FIELDS = ("direction", "patientId", "status", "destination", "fromItem", "toItem", "count",
                "after", "limit")
#: ids listed per entry; a page longer than this is recorded by its first ids and its count
MAX_IDS = 100
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")
_NUMBER = re.compile(r"[0-9]{1,9}")
#: a destination (Direct address or OID) as the mirror accepts it: printable, at most 255
_DESTINATION_CHARS = 255


def _position(value):
    try:
        return bool(check_position(value))
    except InvalidPosition:
        return False


#: the rule each recorded query value must pass
_QUERY_RULES = {
    "direction": lambda value: value in DIRECTIONS,
    "patientId": valid_id,
    "status": valid_status,
    "destination": lambda value: len(value) <= _DESTINATION_CHARS and value.isprintable(),
    "fromItem": valid_id,
    "toItem": valid_id,
    "count": _NUMBER.fullmatch,
    "after": _position,
    "limit": _NUMBER.fullmatch,
}


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One audited read, as ``read`` returns it."""

    entry_id: str
    at_ms: int
    who: str
    action: str
    ids: tuple
    query: dict
    count: int
    invalid: int = 0

    def as_dict(self):
        return {
            "at": self.at_ms, "who": self.who, "action": self.action, "ids": list(self.ids),
            "query": self.query, "count": self.count, "invalid": self.invalid,
            "entry": self.entry_id,
        }


def record(client, redis_keys, who, action, ids=(), query=None, invalid=0, maxlen=MAXLEN):
    """Append one audit entry; ``who`` must be a fingerprint, so a raw API key is refused.

    ``query`` may be Flask's ``request.args`` as is: only ``QUERY_FIELDS`` are kept, and only
    values that pass their rule. ``invalid`` counts requested values the caller already refused;
    ids and query values refused here are added to it.

    Raises ``StoreUnavailable`` when Redis is down: a read that cannot be audited should not
    be served (fail closed).
    """
    if not isinstance(who, str) or not _FINGERPRINT.fullmatch(who):
        raise ValueError("who must be inbox.crypto.fingerprint(api_key), never the key itself")
    ids = list(ids)
    kept = [i for i in ids if valid_id(i)]
    query, refused = _query(query)
    invalid += len(ids) - len(kept) + refused
    fields = {
        "who": who,
        "action": action,
        "ids": ",".join(kept[:MAX_IDS]),
        "n": len(kept),
        "query": json.dumps(query, separators=(",", ":"), sort_keys=True),
    }
    if invalid:
        fields["invalid"] = invalid
    with translate_errors("write the audit trail"):
        return client.xadd(redis_keys.audit, fields, maxlen=maxlen, approximate=True).decode()


def read(client, redis_keys, limit=50):
    """The newest ``limit`` audit entries, newest first."""
    with translate_errors("read the audit trail"):
        rows = client.xrevrange(redis_keys.audit, count=limit)
    return [_entry(entry_id.decode(), fields) for entry_id, fields in rows]


def _query(query):
    """``(kept, refused)``: the known listing parameters that pass their rule, and how many did not."""
    query = query or {}
    kept, refused = {}, 0
    for name in QUERY_FIELDS:
        value = query.get(name)
        if value in (None, ""):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and _QUERY_RULES[name](value):
            kept[name] = value
        else:
            refused += 1
    return kept, refused


def _entry(entry_id, fields):
    text = {name.decode(): value.decode() for name, value in fields.items()}
    return AuditEntry(
        entry_id=entry_id,
        at_ms=int(entry_id.split("-", 1)[0]),
        who=text.get("who", ""),
        action=text.get("action", ""),
        ids=tuple(i for i in text.get("ids", "").split(",") if i),
        query=json.loads(text.get("query") or "{}"),
        count=int(text.get("n") or 0),
        invalid=int(text.get("invalid") or 0),
    )

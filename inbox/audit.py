"""The audit trail of reads through the mirror and feed HTTP APIs: who read what, and when.

One entry per request in the capped stream ``{ns}:audit``: ``who`` is the reader's API key
fingerprint (``inbox.crypto.fingerprint``; the key itself is never written), ``action`` names the
route, ``ids`` the message ids served (or the first of them), ``query`` the listing filters and
cursor, ``n`` how many messages were returned. The stream entry id is the time. Ids and patient
ids are identifiers, not content; no subject, body or name can reach this stream.
"""

import dataclasses
import json
import re

from inbox.connection import translate_errors

#: approximate number of entries kept (XADD MAXLEN ~)
MAXLEN = 100_000
#: query parameters worth recording (mirror listing, feed polling); anything else is dropped
QUERY_FIELDS = ("direction", "patientId", "fromItem", "toItem", "count", "after", "limit")
#: ids listed per entry; a page longer than this is recorded by its first ids and its count
MAX_IDS = 100
_FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")
_VALUE_CHARS = 128


@dataclasses.dataclass(frozen=True)
class Entry:
    """One audited read, as ``read`` returns it."""

    entry_id: str
    at_ms: int
    who: str
    action: str
    ids: tuple
    query: dict
    count: int

    def as_dict(self):
        return {
            "at": self.at_ms, "who": self.who, "action": self.action, "ids": list(self.ids),
            "query": self.query, "count": self.count, "entry": self.entry_id,
        }


def record(client, keys, who, action, ids=(), query=None, maxlen=MAXLEN):
    """Append one audit entry; ``who`` must be a fingerprint, so a raw API key is refused.

    ``query`` may be Flask's ``request.args`` as is: only ``QUERY_FIELDS`` are kept.

    Raises ``StoreUnavailable`` when Redis is down: a read that cannot be audited should not
    be served (fail closed).
    """
    if not isinstance(who, str) or not _FINGERPRINT.match(who):
        raise ValueError("who must be inbox.crypto.fingerprint(api_key), never the key itself")
    ids = [str(i) for i in ids]
    fields = {
        "who": who,
        "action": action,
        "ids": ",".join(ids[:MAX_IDS]),
        "n": len(ids),
        "query": json.dumps(_query(query), separators=(",", ":"), sort_keys=True),
    }
    with translate_errors("write the audit trail"):
        return client.xadd(keys.audit, fields, maxlen=maxlen, approximate=True).decode()


def read(client, keys, limit=50):
    """The newest ``limit`` audit entries, newest first."""
    with translate_errors("read the audit trail"):
        rows = client.xrevrange(keys.audit, count=limit)
    return [_entry(entry_id.decode(), fields) for entry_id, fields in rows]


def _query(query):
    """Only the known listing parameters, each cut to a sane length."""
    query = query or {}
    return {
        name: str(query[name])[:_VALUE_CHARS]
        for name in QUERY_FIELDS
        if query.get(name) not in (None, "")
    }


def _entry(entry_id, fields):
    text = {name.decode(): value.decode() for name, value in fields.items()}
    return Entry(
        entry_id=entry_id,
        at_ms=int(entry_id.split("-", 1)[0]),
        who=text.get("who", ""),
        action=text.get("action", ""),
        ids=tuple(i for i in text.get("ids", "").split(",") if i),
        query=json.loads(text.get("query") or "{}"),
        count=int(text.get("n") or 0),
    )

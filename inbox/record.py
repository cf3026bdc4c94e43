"""The stored record's packed field ``m``: its layout, parse and pack, defined once for both languages.

A record is the hash ``{ns}:msg:<id>`` with three fields: ``r`` the resource blob, ``h`` its
digest and ``m`` everything else packed as ``|``-joined text in the order of ``FIELDS`` (plus
``x``, the record's capped history, read by ``inbox.history``). Three fields instead of twelve because a hash holding a ~1 KB value is a hashtable in Redis, where
each field costs about 64 bytes (docs/store.md, "Keys").

Python reads ``m`` through ``Meta.unpack`` (and ``unpack_routing`` for the two index fields); the Lua
scripts read and write it through ``scripts/record.lua``, the prelude ``lua_prelude()`` assembles:
the field order and the terminal statuses are generated here from ``FIELDS`` and
``TERMINAL_STATUSES``, so neither is written out a second time in Lua.
"""

import dataclasses
import functools
import importlib.resources
import json

from inbox.normalize import STATUS_SYNONYMS
from inbox.normalize import TERMINAL_STATUSES

#: the fields packed in ``m``, in order (times in ms since the epoch; the status comes last)
FIELDS = ("version", "direction", "patient", "message_time", "as_of", "first_via", "via",
          "first_seen", "updated", "status")
SEPARATOR = "|"

_DIRECTION = FIELDS.index("direction")
_PATIENT = FIELDS.index("patient")


@dataclasses.dataclass(frozen=True)
class Meta:
    """The packed field ``m`` of one record, parsed; empty text means None for optional fields."""

    version: int
    direction: str | None
    patient: str | None
    message_time: int | None
    as_of: int
    first_via: str
    via: str
    first_seen: int
    updated: int
    status: str | None

    @classmethod
    def unpack(cls, text):
        """The ``Meta`` of the packed text ``text`` (str) as the Lua scripts wrote it."""
        values = dict(zip(FIELDS, text.split(SEPARATOR, len(FIELDS) - 1)))
        return cls(
            version=int(values["version"]),
            direction=values["direction"] or None,
            patient=values["patient"] or None,
            message_time=int(values["message_time"]) if values["message_time"] else None,
            as_of=int(values["as_of"] or 0),
            first_via=values["first_via"],
            via=values["via"],
            first_seen=int(values["first_seen"]),
            updated=int(values["updated"]),
            status=values["status"] or None,
        )

    def pack(self):
        """The packed text of this ``Meta``, as the Lua scripts write it."""
        values = (getattr(self, name) for name in FIELDS)
        return SEPARATOR.join("" if value is None else str(value) for value in values)


@dataclasses.dataclass(frozen=True)
class Digest:
    """The record's field ``h``: ``<shape><tag>:<hex>``, the digest of the message's meaning.

    ``tag`` names what the hex can be compared with (meaning version and key id, see
    ``Vault.digests``); ``shape`` ranks the stored representation (``normalize.Shape``). A value
    that does not parse (a record written before digests were tagged) is ``None`` from ``unpack``.
    """

    shape: int
    entry: str

    @classmethod
    def unpack(cls, text):
        if len(text) < 3 or not text[0].isdigit() or ":" not in text:
            return None
        return cls(int(text[0]), text[1:])

    def pack(self):
        return f"{self.shape}{self.entry}"


def unpack_routing(text):
    """``(direction, patient)`` of the packed text ``text``, without parsing the other fields."""
    parts = text.split(SEPARATOR, _PATIENT + 1)
    return parts[_DIRECTION] or None, parts[_PATIENT] or None


@functools.cache
def lua_prelude():
    """Lua text to put before a script that reads or writes records (see ``scripts/record.lua``)."""
    generated = (
        f"local RECORD_FIELDS = {_lua_list(FIELDS)}\n"
        f"local TERMINAL_STATUSES = {_lua_list(sorted(TERMINAL_STATUSES))}\n"
        f"local STATUS_SYNONYMS = {_lua_list(word for pair in sorted(STATUS_SYNONYMS.items()) for word in pair)}\n"
        f"{_lua_pack_record()}"
    )
    text = importlib.resources.files("inbox").joinpath("scripts", "record.lua").read_text()
    return generated + text + "\n"


def _lua_pack_record():
    """``pack_record(t)`` written out as one concatenation of the fields in ``FIELDS`` order.

    A loop over ``RECORD_FIELDS`` into a table for ``table.concat`` allocated a table per record;
    with the history entry built the same way, the two cost a page of 500 new records ~15% of
    its script time (redis-server CPU of a 50,000-message backfill, 3.56 -> 3.03 s).
    """
    return "local function pack_record(t)\n  return " + " .. '|' .. ".join(f"t.{name}" for name in FIELDS) + "\nend\n"


def _lua_list(words):
    # plain ASCII words, so a JSON string is also a Lua string literal
    return "{" + ", ".join(json.dumps(word) for word in words) + "}"

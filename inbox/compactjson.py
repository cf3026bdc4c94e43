"""Compact JSON bytes on the hot paths: orjson, with the standard library where orjson differs.

Every message is encoded twice: the resource as received (stored, served back) and its meaning
(whose digest decides "same message?"). orjson writes both several times faster than ``json``
(1.6 against 15.3 us per message for two encodings of a 1 KB resource). The values it cannot
write (integers beyond 64 bits, strings holding a lone surrogate, which ``json``'s parser lets
through) go to ``json``.

``exact=True`` is for bytes that are digested: a digest stored before must keep matching, so
they must be byte for byte what ``json`` writes (``ensure_ascii=False``, compact separators).
orjson's bytes are identical except for floats under 1e-4 in magnitude (Python writes
``1e-05``, orjson ``0.00001`` or ``1e-5``): when orjson's output holds such a number token, the
value goes to ``json`` (text inside strings that merely looks like one only costs the slower
path). A stored resource needs no such care: both spellings are the same JSON number.
"""

import json
import re

import orjson

# a number token (after : , or [ in compact output) in orjson's spelling of a float under 1e-4
_SMALL_FLOAT = re.compile(rb"[:,\[]-?(?:\d+(?:\.\d+)?e-|0\.0000)")
_STDLIB = {
    sort_keys: json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, check_circular=False
    )
    for sort_keys in (False, True)
}


def dumps(value, sort_keys=False, exact=False):
    """``value`` as compact UTF-8 JSON bytes; with ``exact``, byte for byte what ``json`` writes.

    A string with a lone surrogate (JSON allows the escape) is written with ASCII escapes, as
    UTF-8 cannot carry it.
    """
    data = None
    if not (exact and isinstance(value, float)):  # a bare float has no token before it
        try:
            data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        except orjson.JSONEncodeError:  # big integers, lone surrogates
            data = None
    if data is not None and not (exact and _small_float(data)):
        return data
    try:
        return _STDLIB[sort_keys].encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode("ascii")


def _small_float(data):
    # two substring tests settle most outputs at memchr speed; the pattern decides the rest
    return (b"e-" in data or b"0.0000" in data) and _SMALL_FLOAT.search(data) is not None

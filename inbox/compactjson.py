"""Compact JSON bytes on the hot paths: orjson, with the standard library where orjson differs.

Every message is encoded twice (the resource as received, and its canonical sorted form whose
digest decides "same content?"), and the digest of a record written before must keep matching:
so the bytes must be exactly what ``json`` writes with ``ensure_ascii=False`` and compact
separators. orjson writes the same bytes about ten times faster (1.6 against 15.3 us per
message for both encodings, bench/RESULTS.md) except in two cases, which go to ``json`` instead:

- values orjson refuses: integers beyond 64 bits, strings holding a lone surrogate (both can come
  from ``json``'s parser; neither from orjson's);
- floats under 1e-4 in magnitude, which Python writes as ``1e-05`` and orjson as ``0.00001`` or
  ``1e-5``: a number token that starts such a float in orjson's output sends the value to
  ``json`` (text inside strings that merely looks like one only costs the slower path).
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


def dumps(value, sort_keys=False):
    """``value`` as compact UTF-8 JSON bytes, byte for byte what ``json`` would write.

    A string with a lone surrogate (JSON allows the escape) is written with ASCII escapes, as
    UTF-8 cannot carry it.
    """
    data = None
    if not isinstance(value, float):  # a bare float has no token before it: json writes it
        try:
            data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        except orjson.JSONEncodeError:  # big integers, lone surrogates
            data = None
    if data is not None and _SMALL_FLOAT.search(data) is None:
        return data
    try:
        return _STDLIB[sort_keys].encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode("ascii")

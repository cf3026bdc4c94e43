"""JSON as RFC 8259 defines it, refusing what Python's ``json`` lets through.

``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` and parses ``1e999`` to infinity; none
of them is JSON. Stored, they would be served back as a body no JSON client can parse,
so every parser of outside bytes (webhook bodies, Metriport's list pages and messages) goes
through ``loads`` here and refuses them like any other malformed JSON.

orjson parses first: it is strict already (no constants, no infinities, no BOM, UTF-8 only)
and several times faster on a webhook body or a 500-message page. It gives the same values
except in two cases, which the standard library's parser (made strict below) decides instead:
integers beyond 64 bits, which orjson turns into floats (a body with a run of 19 digits or more
never reaches it), and whatever orjson refuses, such as a lone surrogate escape that JSON allows,
or a body that is simply malformed (then the error comes from the same parser as always).
"""

import json
import math

import orjson

# 19 digits in a row may be an integer orjson would read as a float (beyond 64 bits). Found by
# mapping every digit to "0" and everything else to " " and looking for the run: two C loops, a
# few times faster than a regular expression over a 500 KB page.
_DIGIT_MAP = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_LONG_RUN = b"0" * 19


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text):
    """A number such as ``1e999`` parses to infinity and would be written back as ``Infinity``."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of the range of a double")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def loads(data):
    """The value of ``data`` (bytes or str); ``ValueError`` for anything that is not strict JSON.

    Bytes must be UTF-8 (a BOM or another encoding is refused as invalid).
    """
    if isinstance(data, (bytes, bytearray)):
        if data.translate(_DIGIT_MAP).find(_LONG_RUN) < 0:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # the exact parser below accepts it or says what is wrong
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("not UTF-8") from exc
    return _DECODER.decode(data)

"""JSON as RFC 8259 defines it, refusing what Python's ``json`` lets through.

``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` and parses ``1e999`` to infinity; none
of them is JSON. Stored, they would be served back as a body no JSON client can parse,
so every parser of outside bytes (webhook bodies, Metriport's list pages and messages) goes
through ``loads`` here and refuses them like any other malformed JSON.
"""

import json
import math


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
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("not UTF-8") from exc
    return _DECODER.decode(data)

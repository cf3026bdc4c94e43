"""compactjson.dumps: with exact=True, exactly the bytes of the standard library's compact encoder.

A digest stored before was computed over those bytes, so any difference would turn an unchanged
message into an update; the cases where orjson differs or refuses are checked here. Without
``exact`` the bytes may spell a float differently but mean the same JSON.
"""

import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from inbox import compactjson


def stdlib(value, sort_keys=False):
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode("ascii")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


@given(json_values, st.booleans())
def test_same_bytes_as_the_standard_library(value, sort_keys):
    assert compactjson.dumps(value, sort_keys, exact=True) == stdlib(value, sort_keys)
    assert json.loads(compactjson.dumps(value, sort_keys)) == json.loads(stdlib(value, sort_keys))


def test_the_cases_where_orjson_differs_or_refuses():
    cases = [
        {"small": 1e-05, "tiny": 1e-7, "neg": [-2.5e-9]},  # orjson: 0.00001, 1e-7
        {"big": 2**70, "neg": -(2**64)},  # beyond 64 bits: orjson refuses
        {"surrogate": "\ud800 alone"},  # not UTF-8: ASCII escapes
        {"text": "ratio:1e-5, uuid 3e-9a, 0.00001", "n": 1e16},  # looks like a float, is text
        1e-05,
    ]
    for value in cases:
        for sort_keys in (False, True):
            assert compactjson.dumps(value, sort_keys, exact=True) == stdlib(value, sort_keys)


def test_every_double_bit_pattern_sample():
    values = [struct.unpack("d", struct.pack("Q", n * 0x9E3779B97F4A7C15 % 2**64))[0]
              for n in range(20000)]
    values = [v for v in values if v == v and abs(v) != float("inf")]
    assert compactjson.dumps(values, exact=True) == stdlib(values)

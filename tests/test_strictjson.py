"""strictjson.loads: orjson's speed, the standard library's values, RFC 8259's refusals."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inbox import strictjson

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_same_values_as_the_standard_library(value):
    data = json.dumps(value).encode()
    parsed = strictjson.loads(data)
    assert parsed == json.loads(data)
    assert json.dumps(parsed) == json.dumps(value)  # ints stay ints, floats stay floats


@pytest.mark.parametrize("text, expected", [
    (b'{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),
    (b'[-9999999999999999999, 18446744073709551615]', [-9999999999999999999, 18446744073709551615]),
    (b'{"s": "\\ud800 alone"}', {"s": "\ud800 alone"}),
    (b'{"a": 1, "a": 2}', {"a": 2}),
])
def test_what_orjson_would_change_or_refuse_is_parsed_exactly(text, expected):
    value = strictjson.loads(text)
    assert value == expected
    assert [type(v) for v in (value.values() if isinstance(value, dict) else value)] == \
        [type(v) for v in (expected.values() if isinstance(expected, dict) else expected)]


@pytest.mark.parametrize("text", [
    b"[NaN]", b"[Infinity]", b"[-Infinity]", b"[1e999]", b"\xef\xbb\xbf{}", b'{"a": "\xff"}',
    b"{", b"", b"[1,]", "[NaN]",
])
def test_what_is_not_json_is_refused(text):
    with pytest.raises(ValueError):
        strictjson.loads(text)

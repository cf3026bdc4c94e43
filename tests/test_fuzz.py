"""Fuzzing the two gates every byte from outside passes: signature verification and normalization.

Whatever arrives, the only way out is the documented rejection (a ``SignatureError`` or an
``InvalidMessage`` with one of its codes): anything else would be a 500 and a lost delivery.
And whatever passes normalization must store without error.
"""

import json
import uuid

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conftest import TEST_WEBHOOK_KEY
from conftest import raw_keys
from inbox.errors import InvalidMessage
from inbox.errors import SignatureError
from inbox.normalize import Record
from inbox.normalize import normalize
from inbox.rediskeys import RedisKeys
from inbox.settings import DIRECTIONS
from inbox.signing import sign
from inbox.signing import verify
from inbox.store import Outcome
from inbox.store import Store
from strategies import json_values
from strategies import message_like

SIGNATURE_CODES = {"signature_missing", "signature_malformed", "signature_mismatch"}
NORMALIZE_CODES = {"not_an_object", "missing_id", "invalid_id", "invalid_direction"}

FUZZ = hypothesis_settings(max_examples=300, deadline=None, database=None)

def check_normalize(value, direction=None):
    """normalize(value) is a Record or the documented InvalidMessage, never anything else."""
    try:
        record = normalize(value, direction=direction)
    except InvalidMessage as error:
        assert error.code in NORMALIZE_CODES
        return None
    assert isinstance(record, Record)
    assert isinstance(record.body, bytes) and isinstance(record.meaning, bytes)
    assert isinstance(record.as_of, int)
    return record


@FUZZ
@given(keys=st.lists(st.text(), max_size=3), body=st.binary(), signature=st.none() | st.text())
def test_verify_raises_only_documented_signature_errors(keys, body, signature):
    """Arbitrary keys, body and header value: accepted, or a SignatureError with a documented code."""
    try:
        verify(keys, body, signature)
    except SignatureError as error:
        assert error.code in SIGNATURE_CODES
    else:
        assert keys and signature.strip().lower() in {sign(key, body) for key in keys}


@FUZZ
@given(body=st.binary(), signature=st.from_regex(r"\A[0-9a-fA-F]{64}\Z"))
def test_verify_rejects_well_formed_wrong_signatures_as_mismatch(body, signature):
    """A 64-hex signature that is not the HMAC of the body is a signature_mismatch, nothing else."""
    expected = sign(TEST_WEBHOOK_KEY, body)
    try:
        verify((TEST_WEBHOOK_KEY,), body, signature)
    except SignatureError as error:
        assert error.code == "signature_mismatch"
        assert signature.lower() != expected
    else:
        assert signature.lower() == expected


@FUZZ
@given(body=st.binary(), padding=st.sampled_from(["", " ", "\t", "\n"]))
def test_verify_accepts_every_true_signature(body, padding):
    """The true signature of any body, in either case and with stray whitespace, verifies."""
    signature = sign(TEST_WEBHOOK_KEY, body)
    verify(("other-key", TEST_WEBHOOK_KEY), body, padding + signature.upper() + padding)


@FUZZ
@given(value=json_values, direction=st.none() | st.sampled_from(DIRECTIONS))
def test_normalize_arbitrary_json_raises_only_invalid_message(value, direction):
    """Any JSON value, wrapped or not: a Record or an InvalidMessage with a documented code."""
    check_normalize(value, direction)
    check_normalize({"communication": value}, direction)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_normalize_of_any_parsable_body_raises_only_invalid_message(raw):
    """Bytes that json.loads accepts (lone surrogates, huge numbers) never break normalization."""
    try:
        value = json.loads(raw)
    except ValueError:
        return
    check_normalize(value)


@FUZZ
@given(message=message_like, direction=st.none() | st.sampled_from(DIRECTIONS))
def test_normalize_message_shapes_keep_the_id(message, direction):
    """A message with a valid id normalizes to a Record of that id unless its direction is bad."""
    record = check_normalize(message, direction)
    if record is None:
        return
    assert record.id == message["id"]
    assert record.direction in (*DIRECTIONS, None)


@hypothesis_settings(max_examples=60, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(batch=st.lists(message_like, min_size=1, max_size=5),
       direction=st.none() | st.sampled_from(DIRECTIONS))
def test_store_upsert_of_any_valid_records_never_raises(settings, redis_client, batch, direction):
    """Every batch of normalized records stores in one call, and each id reads back as one of its copies."""
    records = [r for r in (check_normalize(m, direction) for m in batch) if r is not None]
    if not records:
        return
    # each example gets its own namespace: examples must not see each other's records
    namespace = f"{settings.namespace}-{uuid.uuid4().hex[:8]}"
    store = Store(settings.replace(namespace=namespace), client=redis_client)
    try:
        result = store.upsert(records, "reconcile")
        bodies = {}
        for record in records:
            bodies.setdefault(record.id, []).append(json.loads(record.body))
        stored = store.get_many(list(bodies))
        assert len(result.outcomes) == len(records)
        assert result.outcomes.count(Outcome.CREATED) == len(bodies)
        assert redis_client.xlen(raw_keys(store).feed) == len(records) - result.outcomes.count(
            Outcome.DUPLICATE) - result.outcomes.count(Outcome.STALE)
        for message in stored:
            assert message is not None and message.version >= 1
            assert message.resource in bodies[message.id]
    finally:
        for key in redis_client.scan_iter(match=RedisKeys(namespace).pattern(), count=1000):
            redis_client.delete(key)


def test_lone_surrogate_message_is_stored_not_rejected(store):
    """A body json.loads accepts with a lone surrogate escape stores and reads back the same value."""
    message = json.loads(b'{"id": "m-surrogate", "payload": [{"contentString": "\\ud800 \\u00e9"}]}')
    record = normalize(message, direction="inbound")
    assert store.upsert([record], "webhook").outcomes == (Outcome.CREATED,)
    assert store.get("m-surrogate").resource == message

"""The audit trail against a real Redis: fingerprints not keys, only known query fields, capped."""

import pytest
from werkzeug.datastructures import MultiDict

from inbox import audit
from inbox.crypto import fingerprint
from inbox.rediskeys import RedisKeys

READER_KEY = "test-reader-key-0123456789"


def test_entry_records_who_what_and_when(redis_client, settings):
    """A get is recorded with the key's fingerprint, the action, the id and a time; newest first."""
    keys = RedisKeys(settings.namespace)
    who = fingerprint(READER_KEY)
    audit.record(redis_client, keys, who, "message.get", ids=["m-1"])
    audit.record(redis_client, keys, who, "message.list", ids=["m-3", "m-2"],
                 query={"direction": "inbound", "patientId": "p-9", "count": 2})
    newest, oldest = audit.read(redis_client, keys)
    assert (oldest.who, oldest.action, oldest.ids, oldest.count) == (who, "message.get", ("m-1",), 1)
    assert newest.query == {"count": "2", "direction": "inbound", "patientId": "p-9"}
    assert newest.at_ms >= oldest.at_ms > 1_700_000_000_000


def test_entries_never_hold_the_api_key(redis_client, settings):
    """Neither the raw stream nor read() contains the API key; only its fingerprint."""
    keys = RedisKeys(settings.namespace)
    audit.record(redis_client, keys, fingerprint(READER_KEY), "feed.read",
                 query={"fromItem": "m-1", "x-api-key": READER_KEY})
    raw = redis_client.xrange(keys.audit)
    flat = b" ".join(b for _, fields in raw for pair in fields.items() for b in pair)
    assert READER_KEY.encode() not in flat and READER_KEY[:12].encode() not in flat
    assert fingerprint(READER_KEY).encode() in flat
    assert audit.read(redis_client, keys)[0].query == {"fromItem": "m-1"}


@pytest.mark.parametrize("who", [READER_KEY, "ABCDEF012345", "abc", None])
def test_a_raw_key_in_place_of_a_fingerprint_is_refused(redis_client, settings, who):
    """record() refuses anything but a 12-hex fingerprint, so a key cannot be written by mistake."""
    with pytest.raises(ValueError):
        audit.record(redis_client, RedisKeys(settings.namespace), who, "message.get", ids=["m-1"])
    assert redis_client.xlen(RedisKeys(settings.namespace).audit) == 0


def test_long_pages_are_cut_and_overlong_values_counted_not_kept(redis_client, settings):
    """A page of 250 ids keeps the first 100 and the true count; a 1000-character cursor is no id."""
    keys = RedisKeys(settings.namespace)
    ids = [f"m-{n:04d}" for n in range(250)]
    audit.record(redis_client, keys, fingerprint(READER_KEY), "message.list", ids=ids,
                 query={"toItem": "x" * 1000})
    entry = audit.read(redis_client, keys)[0]
    assert (len(entry.ids), entry.count, entry.query, entry.invalid) == (100, 250, {}, 1)


def test_stream_is_capped(redis_client, settings):
    """With a cap of 50, a thousand entries leave about 50 (approximate MAXLEN), never all of them."""
    keys = RedisKeys(settings.namespace)
    for n in range(1000):
        audit.record(redis_client, keys, fingerprint(READER_KEY), "message.get", ids=[f"m-{n}"], maxlen=50)
    assert 50 <= redis_client.xlen(keys.audit) < 200
    assert audit.read(redis_client, keys, limit=1)[0].ids == ("m-999",)


def test_request_args_can_be_passed_as_they_are(redis_client, settings):
    """A werkzeug MultiDict (Flask's request.args) is accepted; feed polling's after/limit are kept."""
    keys = RedisKeys(settings.namespace)
    args = MultiDict([("after", "1-0"), ("limit", "10"), ("limit", "20"), ("junk", "x")])
    audit.record(redis_client, keys, fingerprint(READER_KEY), "feed.read", ids=[], query=args)
    entry = audit.read(redis_client, keys)[0]
    assert (entry.query, entry.ids, entry.count) == ({"after": "1-0", "limit": "10"}, (), 0)

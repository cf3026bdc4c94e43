"""Settings from the environment: every variable parsed once, every bad value one clear sentence."""

import base64
import re

import pytest

from inbox.errors import ConfigError
from inbox.settings import Settings

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
OTHER_KEY = base64.urlsafe_b64encode(bytes(range(1, 33))).decode()

#: (variable, bad value) pairs; each must fail naming its variable (shared with test_cli_config)
BAD_SETTINGS = [
    ("REDIS_URL", "http://localhost:6379"),
    ("REDIS_URL", "localhost:6379"),
    ("RQ_REDIS_URL", "mysql://db/0"),
    ("INBOX_NAMESPACE", "{inbox}"),
    ("INBOX_NAMESPACE", "has space"),
    ("INBOX_NAMESPACE", "n" * 65),
    ("METRIPORT_WEBHOOK_KEY", ",,"),
    ("METRIPORT_API_URL", "ftp://api.metriport.com"),
    ("METRIPORT_API_URL", "https://"),
    ("INBOX_API_KEYS", " , "),
    ("INBOX_ENCRYPTION_KEYS", "no-colon-here"),
    ("INBOX_ENCRYPTION_KEYS", f"bad kid!:{KEY}"),
    ("INBOX_ENCRYPTION_KEYS", "k1:c2hvcnQ"),
    ("INBOX_ENCRYPTION_KEYS", "k1:@@not-base64@@"),
    ("INBOX_ENCRYPTION_KEYS", f"k1:{KEY},k1:{OTHER_KEY}"),
    ("INBOX_ENCRYPTION_KEYS", f"k1:{KEY},"),
    ("RECONCILE_INTERVAL", "five minutes"),
    ("RECONCILE_INTERVAL", "1.5"),
    ("RECONCILE_INTERVAL", "0"),
    ("RECONCILE_FULL_INTERVAL", "-60"),
    ("RECONCILE_DIRECTIONS", "sideways"),
    ("RECONCILE_DIRECTIONS", "inbound,both"),
    ("RECONCILE_PAGE_SIZE", "501"),
    ("RECONCILE_STOP_AFTER", "never"),
    ("RECONCILE_REQUEST_BUDGET", "1e3"),
    ("RECONCILE_DEADLINE", "0"),
    ("RECONCILE_DEADLINE", "30m"),
    ("METRIPORT_RATE_LIMIT", "-1"),
    ("METRIPORT_RATE_LIMIT", "fast"),
    ("METRIPORT_WEBHOOK_AUTO_RETRY", "maybe"),
    ("WEBHOOK_MAX_BYTES", "1MB"),
    ("FEED_MAXLEN", "0"),
]


def is_one_sentence(text):
    """One line ending in a full stop, with no second sentence starting inside it."""
    return text.endswith(".") and "\n" not in text and not re.search(r"[.!?]\s+[A-Z]", text)


@pytest.mark.parametrize("variable, value", BAD_SETTINGS)
def test_bad_value_raises_one_sentence_naming_the_variable(variable, value):
    """A malformed value raises ConfigError whose single sentence names the variable."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    detail = caught.value.detail
    assert detail.startswith(variable + " ")
    assert is_one_sentence(detail)
    assert caught.value.exit_code == 2 and caught.value.code == "config_invalid"


def test_key_material_never_appears_in_the_error():
    """A key ring error names the entry and its kid, never the key itself."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"INBOX_ENCRYPTION_KEYS": f"k1:{KEY},k2:{KEY[:20]}"})
    assert "entry 2 (k2)" in caught.value.detail
    assert KEY[:20] not in caught.value.detail


def test_defaults_when_nothing_is_set():
    """An empty environment (blank values count as unset) gives the documented defaults."""
    settings = Settings.from_env({"RECONCILE_INTERVAL": "  ", "FEED_MAXLEN": ""})
    assert settings == Settings()
    assert (settings.namespace, settings.reconcile_interval, settings.feed_maxlen) == (
        "inbox", 300, 1_000_000)
    assert not settings.encryption_on
    assert settings.queue_redis_url == settings.redis_url


def test_good_values_are_parsed_into_types():
    """Every kind of value comes out typed: ints, floats, flags, tuples and the key ring."""
    settings = Settings.from_env({
        "REDIS_URL": "rediss://cache:6380/2",
        "RQ_REDIS_URL": "unix:///tmp/redis.sock",
        "INBOX_NAMESPACE": "acme.prod-1",
        "METRIPORT_WEBHOOK_KEY": "new-key, old-key",
        "METRIPORT_API_URL": "https://api.sandbox.metriport.com/",
        "INBOX_ENCRYPTION_KEYS": f"k2:{KEY}, k1:{OTHER_KEY}",
        "RECONCILE_INTERVAL": " 60 ",
        "RECONCILE_DEADLINE": "600",
        "RECONCILE_DIRECTIONS": "outbound",
        "METRIPORT_RATE_LIMIT": "2.5",
        "METRIPORT_WEBHOOK_AUTO_RETRY": "Yes",
    })
    assert settings.webhook_keys == ("new-key", "old-key")
    assert settings.api_url == "https://api.sandbox.metriport.com"
    assert [kid for kid, _ in settings.encryption_keys] == ["k2", "k1"]
    assert settings.encryption_keys[0][1] == bytes(range(32))
    assert (settings.reconcile_interval, settings.metriport_rate_limit) == (60, 2.5)
    assert settings.reconcile_deadline == 600
    assert settings.reconcile_directions == ("outbound",)
    assert settings.webhook_auto_retry is True
    assert settings.queue_redis_url == "unix:///tmp/redis.sock"


def test_settings_are_immutable_and_replace_copies():
    """Settings cannot be changed in place; ``replace`` returns a changed copy."""
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.namespace = "other"
    assert settings.replace(namespace="other").namespace == "other"
    assert settings.namespace == "inbox"


GOOD_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("encoded", [
    GOOD_KEY + "junk",                      # text after the = padding
    GOOD_KEY + "=",                         # too much padding
    GOOD_KEY[:10] + "!" + GOOD_KEY[10:],    # a junk character inside
    GOOD_KEY[:10] + " " + GOOD_KEY[10:],
    GOOD_KEY[:10] + "+" + GOOD_KEY[11:],    # standard, not URL-safe, alphabet
    GOOD_KEY[:-2] + "B=",                   # non-zero trailing bits: another spelling of a key
])
def test_encryption_keys_are_strict_base64(encoded):
    """base64 decoding skips junk and ignores what follows the padding; the ring does not."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"INBOX_ENCRYPTION_KEYS": f"k1:{encoded}"})
    assert "INBOX_ENCRYPTION_KEYS" in str(caught.value)
    assert encoded not in str(caught.value)


@pytest.mark.parametrize("encoded", [GOOD_KEY, GOOD_KEY.rstrip("=")])
def test_a_key_with_or_without_padding_is_accepted(encoded):
    ring = Settings.from_env({"INBOX_ENCRYPTION_KEYS": f"k1:{encoded}"}).encryption_keys
    assert ring == (("k1", bytes(range(32))),)

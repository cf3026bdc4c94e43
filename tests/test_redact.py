"""Printing settings never shows a secret."""

from inbox.settings import redact_url


def test_redact_url_hides_only_the_password():
    """A password in a Redis URL is masked for printing; the rest stays readable."""
    assert redact_url("redis://user:s3cret@cache:6379/0") == "redis://user:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"

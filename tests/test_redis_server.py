"""Which redis-server the suite runs against: ``INBOX_REDIS_SERVER`` picks the binary of the
servers the tests start (``make test`` runs the suite against two releases, see the Makefile)."""

import os
import shutil

import pytest
import redis

from cli.dev.embedded import EmbeddedRedis
from cli.dev.embedded import find_redis_server
from inbox.errors import ConfigError


def test_the_session_server_is_the_chosen_binary(redis_client):
    info = redis_client.info("server")
    print(f"redis-server {info['redis_version']} ({info.get('executable')})")
    chosen = os.environ.get("INBOX_REDIS_SERVER")
    if chosen and not os.environ.get("REDIS_URL"):
        assert os.path.realpath(info["executable"]) == os.path.realpath(chosen)


def test_a_binary_that_is_not_executable_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("INBOX_REDIS_SERVER", str(tmp_path / "redis-server"))
    with pytest.raises(ConfigError, match="INBOX_REDIS_SERVER"):
        find_redis_server()


def test_the_chosen_binary_is_the_one_that_runs(monkeypatch, tmp_path):
    """A copy of the usual binary under another path: the server that answers is the copy."""
    copy = tmp_path / "chosen-redis-server"
    shutil.copy2(find_redis_server(), copy)
    monkeypatch.setenv("INBOX_REDIS_SERVER", str(copy))
    with EmbeddedRedis() as server:
        executable = redis.Redis.from_url(server.url).info("server")["executable"]
    assert os.path.realpath(executable) == os.path.realpath(copy)

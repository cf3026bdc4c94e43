"""Fixtures of the chaos tests: a redis-server with AOF per test, settings on it, and a process
group whose members are all stopped by pid when the test ends (their logs printed on failure).
"""

import uuid

import pytest

from chaos.harness import API_KEY
from chaos.harness import Processes
from chaos.harness import READER_KEY
from cli.dev.embedded import EmbeddedRedis
from conftest import TEST_WEBHOOK_KEY
from inbox.settings import Settings


@pytest.fixture
def processes(tmp_path, request):
    """Start subprocesses with ``processes.start(name, args, env)``; all stopped after the test."""
    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(group.logs())


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the test item, so fixtures can print logs on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def aof_redis():
    """A private redis-server with AOF (appendfsync always): data survives ``stop()``/``start()``."""
    server = EmbeddedRedis(appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def chaos_settings(aof_redis):
    """Settings on the AOF server, one namespace per test (the server is thrown away after)."""
    return Settings(
        redis_url=aof_redis.url,
        namespace=f"chaos-{uuid.uuid4().hex[:8]}",
        webhook_keys=(TEST_WEBHOOK_KEY,),
        api_key=API_KEY,
        inbox_api_keys=(READER_KEY,),
    )



"""Fixtures of the system tests: the chaos tests' process group (every process stopped by pid,
logs printed on failure), reused as is."""

from chaos.conftest import processes  # noqa: F401 - a fixture
from chaos.conftest import pytest_runtest_makereport  # noqa: F401 - a hook the fixture needs

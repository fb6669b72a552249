"""Pytest fixtures shared by the tests of suite/, reproductions/ and tests/ (loaded by pyproject.toml's `-p suite.pytest_fixtures`)."""
from __future__ import annotations

import signal

import pytest


@pytest.fixture
def bounded():
    """Fail (instead of hanging) when the test runs longer than 120 s: for tests that spawn distributed ranks,
    where a rank stuck in a collective would otherwise block the whole test run."""
    def boom(*_):
        raise TimeoutError("the test ran longer than 120 s (a distributed run hung?)")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)

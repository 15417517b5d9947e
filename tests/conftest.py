"""Shared fixtures: a real redis-server for the session, flushed per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from redisserver import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on a free loopback port for the whole session.

    Missing redis-server fails under CI (it must not pass by skipping) and skips elsewhere.
    """
    from redisserver import redis_server_or_skip

    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with every key removed before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    """Each test reads the configuration as a fresh process would (it is read once per
    process, and tests set COMPILECACHE_* variables of their own)."""
    from compilecache._runtime import reset_runtime

    reset_runtime()
    yield
    reset_runtime()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` on ``sys.path``; the ``rv_*`` modules imported from it are forgotten after
    the test (see ``userpkgs.load``)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("rv_"):
            sys.modules.pop(name, None)

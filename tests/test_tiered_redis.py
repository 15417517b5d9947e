"""A disk + Redis tiered store against a real redis-server that dies mid-run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compilecache.stores import CircuitBreaker, DiskStore, RedisStore, TieredStore
from redisserver import RedisServer, redis_server_or_skip

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TIMEOUT = 0.3


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    server = redis_server_or_skip()
    try:
        yield server
    finally:
        server.stop()


def make_store(root: Path, url: str, policy: str) -> TieredStore:
    remote = RedisStore(
        url, timeout=TIMEOUT, breaker=CircuitBreaker(failure_threshold=2, cooldown=0.5)
    )
    return TieredStore([DiskStore(root), remote], write_policy=policy)


@pytest.mark.parametrize("policy", ["all", "local-then-remote"])
def test_redis_killed_mid_run_calls_stay_fast_and_disk_keeps_serving(
    tmp_path: Path, own_server: RedisServer, policy: str
) -> None:
    store = make_store(tmp_path, own_server.url, policy)
    for i in range(20):
        store.put(f"k{i}", f"value-{i}".encode() * 50)
    assert store.flush(10)
    remote = store.tiers[1]
    assert remote.get("k3") == b"value-3" * 50  # it really reached Redis

    own_server.kill()
    worst = 0.0
    for i in range(40):
        started = time.monotonic()
        assert store.get(f"k{i % 20}") == f"value-{i % 20}".encode() * 50  # served from disk
        assert store.get(f"absent-{i}") is None  # a miss asks Redis, which is dead
        store.put(f"new-{i}", b"written while Redis is down")
        worst = max(worst, time.monotonic() - started)
    assert worst < 2 * TIMEOUT + 0.5, f"a call took {worst:.2f} s with Redis down"
    assert store.get("new-7") == b"written while Redis is down"
    stats = store.stats()
    assert stats.tiers[1].errors > 0
    assert stats.tiers[0].errors == 0

    # Redis comes back: after the breaker's cooldown the remote tier is used again.
    own_server.start()
    time.sleep(0.6)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        store.put("after", b"back")
        store.flush(5)
        if remote.get("after") == b"back":
            break
        time.sleep(0.2)
    assert remote.get("after") == b"back"
    store.close()


def test_backfill_from_redis_into_an_empty_disk(tmp_path: Path, own_server: RedisServer) -> None:
    first = make_store(tmp_path / "machine-a", own_server.url, "all")
    first.put("shared", b"compiled on machine a")
    first.close()
    second = make_store(tmp_path / "machine-b", own_server.url, "all")
    assert second.get("shared") == b"compiled on machine a"
    own_server.kill()
    assert second.get("shared") == b"compiled on machine a"  # now from machine b's disk
    assert second.tiers[0].get("shared") == b"compiled on machine a"
    second.close()

"""A disk + Redis tiered store against a real redis-server that dies mid-run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compilecache import ConfigError
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


def test_a_read_only_remote_is_read_and_never_written(tmp_path: Path, redis_url: str) -> None:
    """COMPILECACHE_REMOTE_READ_ONLY: the remote tier serves what others published; what this
    process compiles stays local, counted as the remote's skipped writes; and its compile
    locks are file locks, not Redis ones (a lock there is a write too)."""
    from compilecache import Config
    from compilecache._locks import FileLock
    from compilecache.artifacts._persistence import default_lock_factory
    from compilecache.stores import open_store

    writer = open_store(Config(dir=tmp_path / "w", remote=redis_url, remote_unsigned=True))
    assert isinstance(writer, TieredStore)
    writer.put("read-only-published", b"shared")
    assert writer.flush(10)
    settings = {
        "COMPILECACHE_DIR": str(tmp_path / "r"),
        "COMPILECACHE_REMOTE": redis_url,
        "COMPILECACHE_REMOTE_UNSIGNED": "1",
        "COMPILECACHE_REMOTE_READ_ONLY": "yes",
    }
    config = Config.from_env(settings)
    assert config.remote_read_only and config.sources["COMPILECACHE_REMOTE_READ_ONLY"]
    reader = open_store(config)
    assert isinstance(reader, TieredStore)
    assert reader.get("read-only-published") == b"shared"
    reader.put("read-only-mine", b"local")
    assert reader.flush(10)
    assert reader.get("read-only-mine") == b"local"  # from its own directory
    assert RedisStore(redis_url).get("read-only-mine") is None
    assert reader.tiers[1].stats().write_skips >= 1
    assert isinstance(default_lock_factory(reader, 5.0)("some-key"), FileLock)
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'remote = "{redis_url}"\nremote_unsigned = true\nremote_read_only = true\n'
    )
    from_file = Config.from_env({"COMPILECACHE_CONFIG": str(config_file), "HOME": str(tmp_path)})
    assert from_file.remote_read_only
    with pytest.raises(ConfigError, match="COMPILECACHE_REMOTE_READ_ONLY"):
        Config.from_env({**settings, "COMPILECACHE_REMOTE_READ_ONLY": "sometimes"})
    writer.close()
    reader.close()

"""TieredStore: read order, backfill, write policies, background writes, failing tiers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from compilecache import BackendError, ConfigError
from compilecache.stores import DiskStore, MemoryStore, ReadOnly, TieredStore, WritePolicy
from tierfakes import RemoteMemory, SlowRemote


class BrokenStrictTier(MemoryStore):
    """A tier whose backend always fails and that raises, as a strict store does."""

    def get(self, key: str) -> bytes | None:
        raise BackendError("backend down", key=key, tier=self.name)

    def put(self, key: str, value: bytes) -> None:
        raise BackendError("backend down", key=key, tier=self.name)

    def insert(self, key: str, value: bytes) -> bool:
        raise BackendError("backend down", key=key, tier=self.name)


def test_reads_go_fastest_first_and_backfill_faster_tiers() -> None:
    fast, middle, slow = MemoryStore(name="fast"), MemoryStore(name="middle"), MemoryStore()
    slow.put("k", b"deep")
    middle.put("m", b"mid")
    store = TieredStore([fast, middle, slow])
    assert store.get("k") == b"deep"
    assert fast.get("k") == middle.get("k") == b"deep"
    assert store.get("m") == b"mid" and fast.get("m") == b"mid"
    assert slow.get("m") is None  # backfill goes up, never down
    stats = store.stats()
    assert (stats.hits, stats.misses) == (2, 0)
    assert [tier.name for tier in stats.tiers] == ["fast", "middle", "memory"]


def test_backfill_does_not_overwrite_a_newer_value_in_a_faster_tier() -> None:
    fast, slow = MemoryStore(), MemoryStore()
    slow.put("k", b"old")
    store = TieredStore([fast, slow])
    assert store.get_many(["k", "x"]) == {"k": b"old"}
    fast.put("k", b"new")
    assert store.get("k") == b"new"


def test_write_all_reaches_every_tier_synchronously(tmp_path: Path) -> None:
    local, remote = DiskStore(tmp_path), RemoteMemory()
    store = TieredStore([local, remote], write_policy="all")
    store.put("k", b"v")
    assert local.get("k") == remote.get("k") == b"v"
    assert store.insert("k", b"w") is False
    assert store.delete("k") is True
    assert "k" not in local and "k" not in remote


def test_local_only_never_writes_the_remote() -> None:
    local, remote = MemoryStore(), RemoteMemory()
    remote.put("shared", b"from elsewhere")
    store = TieredStore([local, remote], write_policy=WritePolicy.LOCAL_ONLY)
    store.put("k", b"v")
    assert remote.get("k") is None and local.get("k") == b"v"
    assert store.get("shared") == b"from elsewhere"


def test_local_then_remote_writes_remote_in_background_and_flushes_on_close() -> None:
    local, remote = MemoryStore(), SlowRemote(delay=0.05)
    store = TieredStore([local, remote], write_policy="local-then-remote")
    started = time.monotonic()
    for i in range(5):
        store.put(f"k{i}", b"v")
    assert time.monotonic() - started < 0.05, "the caller waited for the remote"
    assert local.get("k4") == b"v"
    store.close()
    assert all(remote.get(f"k{i}") == b"v" for i in range(5))


def test_full_background_queue_drops_and_counts() -> None:
    gate = threading.Event()

    class BlockedRemote(RemoteMemory):
        def put(self, key: str, value: bytes) -> None:
            gate.wait(10)
            super().put(key, value)

    store = TieredStore(
        [MemoryStore(), BlockedRemote()], write_policy="local-then-remote", queue_size=2
    )
    for i in range(10):
        store.put(f"k{i}", b"v")
    assert store.stats().write_skips >= 6
    gate.set()
    assert store.flush(10)


def test_failing_tier_is_skipped_and_counted() -> None:
    good = MemoryStore()
    store = TieredStore([BrokenStrictTier(name="broken"), good])
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert store.insert("j", b"w") is True  # the healthy tier accepted it
    assert store.stats().errors >= 3


def test_strict_tiered_store_raises() -> None:
    store = TieredStore([BrokenStrictTier(), MemoryStore()], strict=True)
    with pytest.raises(BackendError):
        store.get("k")


def test_read_only_tier_is_served_but_not_written() -> None:
    shared = MemoryStore()
    shared.put("k", b"published")
    local = MemoryStore()
    store = TieredStore([local, ReadOnly(shared)])
    assert store.get("k") == b"published"
    store.put("mine", b"v")
    assert "mine" not in shared and local.get("mine") == b"v"


def test_keys_are_the_union_without_duplicates() -> None:
    a, b = MemoryStore(), MemoryStore()
    a.put_many({"x": b"1", "y": b"2"})
    b.put_many({"y": b"2", "z": b"3"})
    assert sorted(TieredStore([a, b]).keys()) == ["x", "y", "z"]


def test_bad_construction() -> None:
    with pytest.raises(ConfigError, match="at least one tier"):
        TieredStore([])
    with pytest.raises(ConfigError, match="write_policy"):
        TieredStore([MemoryStore()], write_policy="sometimes")


def test_tiered_delete_is_not_undone_by_an_earlier_background_put() -> None:
    """delete() runs on remote tiers synchronously, while an earlier put() to the same key is
    still in the write-behind queue: the queued put runs after the delete and resurrects it."""
    local, remote = MemoryStore(), SlowRemote(delay=0.2)
    store = TieredStore([local, remote], write_policy="local-then-remote")
    store.put("k", b"v")
    store.delete("k")
    assert store.flush(5)
    assert "k" not in remote, "the deleted key came back in the remote tier"
    store.close()


def test_tiered_flush_after_close_returns() -> None:
    """close() stops the worker; a later flush() queues a marker nobody will run and, with
    the default timeout=None, waits forever."""
    store = TieredStore([MemoryStore(), RemoteMemory()], write_policy="local-then-remote")
    store.put("k", b"v")
    store.close()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(store.flush()), daemon=True)
    thread.start()
    thread.join(2)
    assert result == [True], "flush() after close() hangs"

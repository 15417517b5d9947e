"""The store capabilities (docs/stores.md): what a composed store is made of and offers,
answered by delegation, so that the layers above never take a store stack apart. A wrapper
written outside the package, on ``WrappingStore``, works with admission, locks, telemetry,
verify and prune without any change there."""

from __future__ import annotations

from pathlib import Path

import pytest

from clihelpers import fake_entry
from compilecache import CacheUsageError
from compilecache._locks import FileLock, RedisLock
from compilecache.artifacts._inventory import prune, stored_entries
from compilecache.artifacts._persistence import Admission, ArtifactHooks, default_lock_factory
from compilecache.artifacts._verify import verify_store
from compilecache.stores import (
    CodecStore,
    DiskStore,
    MemoryStore,
    ReadOnly,
    RedisStore,
    Signing,
    TieredStore,
    WrappingStore,
    WritePolicy,
)

SECRET = b"0123456789abcdef0123"


class Audited(WrappingStore):
    """A user's own wrapper: counts reads, changes nothing else."""

    def __init__(self, store: DiskStore | CodecStore | TieredStore) -> None:
        super().__init__(store, name="audited")
        self.reads = 0

    def get(self, key: str) -> bytes | None:
        self.reads += 1
        return self.inner.get(key)


def test_layers_read_only_and_tier_names_through_every_wrapper(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path / "d")
    memory = MemoryStore(name="memory")
    signed = CodecStore(disk, [Signing(SECRET)])
    tiered = TieredStore([memory, Audited(signed), ReadOnly(MemoryStore(name="shared"))])
    shared = tiered.tiers[2]
    assert tiered.layers() == (memory, disk, shared.inner)
    assert tiered.layers(writable=True) == (memory, disk)
    assert not tiered.read_only and ReadOnly(tiered).read_only
    assert ReadOnly(tiered).layers(writable=True) == ()
    assert TieredStore([ReadOnly(memory), ReadOnly(disk)]).read_only
    assert tiered.tier_names == ("memory", "audited", "read-only shared")
    # Where telemetry may be written: the local store's directory, never a read-only one's.
    assert tiered.local_directory() == disk.root
    assert ReadOnly(tiered).local_directory() is None
    assert TieredStore([ReadOnly(disk), memory]).local_directory() is None
    assert CodecStore(tiered, []).tier_names == tiered.tier_names


def test_locks_are_the_stores_own(tmp_path: Path, redis_url: str) -> None:
    disk = DiskStore(tmp_path / "d")
    redis = RedisStore(redis_url)
    assert MemoryStore().lock_factory(1.0) is None
    assert isinstance(Audited(disk).lock_factory(1.0)("n"), FileLock)  # type: ignore[misc]
    both = TieredStore([CodecStore(disk, [Signing(SECRET)]), CodecStore(redis, [])])
    made = default_lock_factory(both, 1.0)("n")
    assert isinstance(made, RedisLock)  # the remote tier's: it spans machines
    # A read-only consumer writes nothing to the shared store, not even a lock.
    reader = TieredStore([disk, ReadOnly(redis)])
    assert isinstance(default_lock_factory(reader, 1.0)("n"), FileLock)
    assert ReadOnly(redis).lock_factory(1.0) is None
    # With no store offering one, a private directory of this user's.
    assert isinstance(default_lock_factory(MemoryStore(), 1.0)("n"), FileLock)


def test_flush_reaches_the_write_behind_queue_through_wrappers(redis_url: str) -> None:
    redis = RedisStore(redis_url)
    tiered = TieredStore([MemoryStore(), redis], write_policy=WritePolicy.LOCAL_THEN_REMOTE)
    wrapped = Audited(CodecStore(tiered, []))  # type: ignore[arg-type]
    for n in range(50):
        wrapped.put(f"flush-{n}", b"x" * 1000)
    assert wrapped.flush(10.0)
    assert all(redis.get(f"flush-{n}") == b"x" * 1000 for n in range(50))


def test_put_to_encodes_and_follows_the_write_policy(tmp_path: Path) -> None:
    disk, memory = DiskStore(tmp_path / "d"), MemoryStore(name="memory")
    signed = CodecStore(TieredStore([memory, disk]), [Signing(SECRET)])
    assert signed.put_to(["disk"], "k", b"value")
    assert memory.get("k") is None
    assert disk.get("k") not in (None, b"value")  # signed on the way
    assert signed.get("k") == b"value"
    assert not ReadOnly(signed).put_to(["disk"], "k2", b"v")
    assert disk.get("k2") is None


def test_per_tier_admission_through_a_users_wrapper(tmp_path: Path) -> None:
    """Admission rules name tiers; the write goes through the wrapper and the codecs."""
    from artifactbackend import FileLoggedBackend
    from compilecache import jit

    disk, memory = DiskStore(tmp_path / "d"), MemoryStore(name="memory")
    store = Audited(CodecStore(TieredStore([memory, disk]), [Signing(SECRET)]))  # type: ignore[arg-type]
    hooks = ArtifactHooks(
        store,
        admission={"memory": Admission(min_compile_seconds=3600.0)},
        record=False,
    )
    fn = jit(_double, backend=FileLoggedBackend(str(tmp_path / "log")), hooks=hooks)
    assert fn(3) == ("compiled", 6)
    assert hooks.stats.saved == 1 and hooks.stats.admission_skips["memory"] == 1
    assert not [k for k in memory.keys() if k.startswith("cc1/m/")]
    assert [k for k in disk.keys() if k.startswith("cc1/m/")]


def _double(x: int) -> int:
    return x * 2


def test_tier_counters_give_a_codec_tier_the_callers_view(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path / "d")
    signed = CodecStore(disk, [Signing(SECRET)])
    signed.put("k", b"v")
    disk.put("forged", b"not signed")
    assert signed.get("k") == b"v" and signed.get("forged") is None
    counters = Audited(signed).tier_counters()
    assert list(counters) == [disk.name]
    assert counters[disk.name]["hits"] == 1 and counters[disk.name]["rejected"] == 1


def test_maintenance_sees_through_codecs_and_wrappers(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path / "d")
    store = Audited(CodecStore(disk, [Signing(SECRET)]))
    digest, values = fake_entry(1, b"artifact bytes")
    store.put_many(values)
    disk.put_many(fake_entry(2, b"forged")[1])  # unsigned: a forgery
    local = store.maintenance()
    assert local is not None and local.root == disk.root and local.writable
    listed = {entry.key: entry for entry in stored_entries(store)}
    assert listed[digest].manifest is not None and listed[digest].size > 0
    report = verify_store(store)
    assert report.ok == 2 and len(report.rejected) == 2 and len(report.quarantined) == 2
    assert MemoryStore().maintenance() is None
    with pytest.raises(CacheUsageError, match="has none"):
        verify_store(TieredStore([MemoryStore(), ReadOnly(MemoryStore())]))


def test_a_read_only_local_store_is_never_changed_by_maintenance(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path / "d")
    disk.put_many(fake_entry(1, b"artifact")[1])
    disk.put_many(fake_entry(2, b"other")[1])
    disk.put("cc1/m/" + "f" * 64, b"not a manifest")
    view = ReadOnly(disk)
    with pytest.raises(CacheUsageError, match="read-only"):
        prune(view, max_size=0)
    local = view.maintenance()
    assert local is not None and not local.writable
    with pytest.raises(CacheUsageError, match="read-only"):
        local.clear()
    report = verify_store(view)  # reports, moves nothing
    assert report.inconsistent and not report.quarantined
    assert len(list(disk.keys())) == 5


def test_a_read_only_tier_is_written_synchronously_as_counted_skips() -> None:
    """A read-only view of a remote tier is no background tier: its skips are counted at
    once, and an insert nothing accepted says so."""
    shared = MemoryStore(name="shared")
    shared.remote = True
    view = ReadOnly(shared)
    tiered = TieredStore([view], write_policy=WritePolicy.LOCAL_THEN_REMOTE)
    assert not tiered.insert("k", b"v")
    assert view.stats().write_skips == 1  # counted before any flush
    local_only = TieredStore([MemoryStore(), view], write_policy=WritePolicy.LOCAL_ONLY)
    local_only.put("k", b"v")
    assert view.stats().write_skips == 2


def test_telemetry_and_maintenance_pick_the_same_local_tier(tmp_path: Path) -> None:
    first, second = DiskStore(tmp_path / "a"), DiskStore(tmp_path / "b")
    tiered = TieredStore([ReadOnly(first), second])
    local = tiered.maintenance()
    assert local is not None and local.writable
    assert local.root == tiered.local_directory() == second.root
    only_read = TieredStore([ReadOnly(first)]).maintenance()
    assert only_read is not None and not only_read.writable

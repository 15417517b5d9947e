"""DiskStore: layout, healing of bad entries, eviction, sweeping, recovery of a broken index."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from compilecache import ConfigError
from compilecache.stores import DiskStore, _disk
from compilecache.stores._disk_index import INDEX_NAME


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


def rows(root: Path) -> list[tuple[str, bytes | None, str | None, int]]:
    with sqlite3.connect(root / INDEX_NAME) as conn:
        return conn.execute(
            "SELECT key, value, filename, size FROM entries ORDER BY key"
        ).fetchall()


def payload_files(root: Path) -> list[Path]:
    return sorted((root / "data").rglob("*.val"))


def test_small_values_inline_large_values_in_files(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, inline_limit=1024)
    store.put("small", b"s" * 1024)
    store.put("large", b"L" * 1025)
    by_key = {key: (value, filename) for key, value, filename, _ in rows(tmp_path)}
    assert by_key["small"][0] is not None and by_key["small"][1] is None
    assert by_key["large"][0] is None and by_key["large"][1] is not None
    assert payload_files(tmp_path) == [tmp_path / by_key["large"][1]]


def test_overwrite_and_delete_remove_superseded_files(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, inline_limit=0)
    store.put("k", b"first")
    first = payload_files(tmp_path)
    store.put("k", b"second")
    second = payload_files(tmp_path)
    assert len(first) == len(second) == 1 and first != second
    assert store.insert("k", b"third") is False
    assert payload_files(tmp_path) == second  # the loser's file is removed too
    store.delete("k")
    assert payload_files(tmp_path) == []


def _flip_inline_byte(root: Path, key: str, offset: int) -> None:
    with sqlite3.connect(root / INDEX_NAME) as conn:
        (value,) = conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        broken = bytearray(value)
        broken[offset] ^= 0x01
        conn.execute("UPDATE entries SET value = ? WHERE key = ?", (bytes(broken), key))


@pytest.mark.parametrize("offset", [0, 4, 9, 20, 30, -1])
def test_flipped_inline_byte_is_a_counted_miss_that_heals(
    tmp_path: Path, offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = DiskStore(tmp_path)
    store.put("k", b"payload-bytes")
    _flip_inline_byte(tmp_path, "k", offset)
    with caplog.at_level(logging.WARNING, "compilecache"):
        assert store.get("k") is None
    assert store.stats().corrupt == 1
    assert "k" not in store  # removed, so the next insert heals it
    assert "unreadable" in caplog.text
    assert store.insert("k", b"healed") is True
    assert store.get("k") == b"healed"


def _corrupt_file(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        data = data[:-10] + bytes([data[-10] ^ 0x40]) + data[-9:]
    elif how == "truncate":
        data = data[: len(data) // 2]
    elif how == "empty":
        data = b""
    elif how == "extend":
        data += b"junk"
    elif how == "header":
        data = b"\x00" * 24 + data[24:]
    path.write_bytes(data)


@pytest.mark.parametrize("how", ["flip", "truncate", "empty", "extend", "header", "missing"])
def test_bad_payload_file_is_a_counted_miss_that_heals(tmp_path: Path, how: str) -> None:
    store = DiskStore(tmp_path, inline_limit=0)
    value = os.urandom(50_000)
    store.put("k", value)
    (path,) = payload_files(tmp_path)
    if how == "missing":
        path.unlink()
    else:
        _corrupt_file(path, how)
    assert store.get("k") is None
    stats = store.stats()
    assert (stats.corrupt, stats.misses, stats.hits) == (1, 1, 0)
    assert rows(tmp_path) == [] and payload_files(tmp_path) == []
    assert store.insert("k", value) is True
    assert store.get("k") == value


def test_entry_under_another_tag_is_a_miss_and_removed(tmp_path: Path) -> None:
    DiskStore(tmp_path, tag="compilecache-v0").put("k", b"old format")
    store = DiskStore(tmp_path, tag="compilecache-v1")
    assert store.get("k") is None
    assert store.stats().corrupt == 1
    assert rows(tmp_path) == []


def test_eviction_keeps_size_under_bound_and_drops_least_recently_used(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path, max_bytes=20_000, low_water=0.5, clock=clock, access_resolution=0)
    for i in range(10):
        clock.tick()
        store.put(f"k{i}", bytes(1500))
    clock.tick()
    assert store.get("k0") is not None  # k0 becomes the most recently used
    store.flush()
    for i in range(10, 20):
        clock.tick()
        store.put(f"k{i}", bytes(1500))
    stats = store.stats()
    assert stats.size is not None and stats.size <= 20_000
    assert stats.evictions > 0
    assert "k0" in store, "a recently read entry was evicted before older ones"
    assert "k1" not in store and "k19" in store


def _directory_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize(("count", "size"), [(500, 10 << 10), (60, 64 << 10)])
def test_the_bound_holds_for_the_whole_directory_index_and_wal_included(
    tmp_path: Path, count: int, size: int
) -> None:
    """``DiskStore(max_bytes=1 MiB)`` after 500 puts of 10 KiB (inline, in the index) held
    5.25 MiB: the WAL (4 MiB, SQLite's default checkpoint size, never truncated) and the
    index's free pages were not counted. Values in payload files too."""
    store = DiskStore(tmp_path, max_bytes=1 << 20)
    for i in range(count):
        store.put(f"k{i:04d}", os.urandom(size))
    held = _directory_bytes(tmp_path)
    assert held <= 1 << 20, held
    stats = store.stats()
    assert stats.size is not None and stats.size >= (1 << 20) // 2, stats  # not emptied
    assert store.get(f"k{count - 1:04d}") is not None


def test_eviction_never_evicts_the_entry_just_written(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, max_bytes=10_000, inline_limit=0)
    store.put("old", bytes(4000))
    store.put("huge", bytes(30_000))  # larger than the bound on its own
    assert store.get("huge") == bytes(30_000)
    assert "old" not in store


def test_eviction_chooses_victims_through_the_access_index(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    conn = store._index.connection()
    plan = " ".join(
        str(row)
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT rowid, key, filename, size FROM entries "
            "ORDER BY accessed LIMIT 64"
        )
    )
    assert "entries_by_access" in plan and "SCAN entries" not in plan.replace(
        "SCAN entries USING INDEX", ""
    )


def test_counters_in_meta_match_the_rows(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, inline_limit=100)
    for i in range(50):
        store.put(f"k{i % 20}", bytes(i * 10))
    store.delete("k3")
    stats = store.stats()
    actual = rows(tmp_path)
    assert stats.entries == len(actual) == 19
    assert stats.size == sum(size for *_, size in actual)


def test_orphan_files_are_swept_after_grace(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, inline_limit=0)
    store.put("kept", b"x" * 100)
    orphan = tmp_path / "data" / "ab" / "cd" / ("0" * 28 + ".val")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a killed writer")
    assert store.sweep_orphans(grace=3600) == 0  # too young: a writer may be about to commit
    old = os.stat(orphan).st_mtime - 7200
    os.utime(orphan, (old, old))
    assert store.sweep_orphans(grace=3600) == 1
    assert not orphan.exists()
    assert store.get("kept") == b"x" * 100


def test_unreadable_index_is_moved_aside_and_store_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DiskStore(tmp_path)
    store.put("k", b"v")
    store.close()
    (tmp_path / INDEX_NAME).write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{INDEX_NAME}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, "compilecache"):
        reopened = DiskStore(tmp_path)
    assert reopened.get("k") is None
    reopened.put("k", b"new")
    assert reopened.get("k") == b"new"
    assert list(tmp_path.glob(f"{INDEX_NAME}.corrupt-*"))
    assert "unreadable" in caplog.text


def test_durable_mode_round_trips(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, durable=True, inline_limit=10)
    store.put("small", b"abc")
    store.put("large", b"x" * 1000)
    assert DiskStore(tmp_path).get_many(["small", "large"]) == {
        "small": b"abc",
        "large": b"x" * 1000,
    }


def test_reads_record_access_times_lazily(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path, clock=clock, access_resolution=60)
    store.put("k", b"v")
    clock.tick(30)
    store.get("k")
    store.flush()
    with sqlite3.connect(tmp_path / INDEX_NAME) as conn:
        (accessed,) = conn.execute("SELECT accessed FROM entries").fetchone()
    assert accessed == 1_000_000.0  # within the resolution: no write for a hit
    clock.tick(60)
    store.get("k")
    store.close()
    with sqlite3.connect(tmp_path / INDEX_NAME) as conn:
        (accessed,) = conn.execute("SELECT accessed FROM entries").fetchone()
    assert accessed == 1_000_090.0


@pytest.mark.parametrize(
    "options",
    [
        {"max_bytes": 0},
        {"max_bytes": -5},
        {"low_water": 0},
        {"low_water": 1.5},
        {"inline_limit": -1},
    ],
)
def test_bad_arguments_raise_config_errors(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DiskStore(tmp_path, **options)  # type: ignore[arg-type]


def test_unusable_directory_raises_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="COMPILECACHE_DIR"):
        DiskStore(blocker / "cache")


def test_store_works_in_a_forked_child(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.put("parent", b"p")
    pid = os.fork()
    if pid == 0:  # child: must open its own connection, not reuse the parent's
        try:
            ok = store.get("parent") == b"p"
            store.put("child", b"c")
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("child") == b"c"


def test_disk_fork_child_commits_survive_the_parent_closing(tmp_path: Path) -> None:
    """A child forked after the parent used the store shares SQLite's inherited per-process
    lock state, so it holds no real lock of its own. When the parent then closes its last
    connection, SQLite believes it is the last user, checkpoints and deletes the WAL; the
    child's later commits go to the deleted WAL and are silently lost."""
    store = DiskStore(tmp_path)
    store.put("parent", b"p")
    wrote_first, parent_closed = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            store.put("child1", b"c1")
            os.write(wrote_first[1], b"x")
            os.read(parent_closed[0], 1)
            store.put("child2", b"c2")
            os._exit(0 if store.get("child2") == b"c2" else 3)
        except BaseException:
            os._exit(2)
    os.read(wrote_first[0], 1)
    store.close()
    os.write(parent_closed[1], b"x")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # the child saw its own write succeed...
    fresh = DiskStore(tmp_path)
    assert fresh.get("child1") == b"c1"
    assert fresh.get("child2") == b"c2", "a committed write of the forked child was lost"


def test_disk_removing_a_corrupt_entry_keeps_a_concurrent_good_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs: 'the row (only that row: a concurrent good write is kept) ... removed'. The DELETE
    matches on rowid and key, but an UPSERT keeps the rowid, so the good row is deleted."""
    DiskStore(tmp_path, tag="old-tag").put("k", b"written under another tag")
    reader = DiskStore(tmp_path, tag="new-tag")
    writer = DiskStore(tmp_path, tag="new-tag")
    real_decode = _disk._frame.decode
    raced = []

    def decode_with_a_concurrent_put(data: bytes, tag: bytes) -> bytes:
        if not raced:  # another writer replaces the bad entry between our SELECT and DELETE
            raced.append(True)
            writer.put("k", b"good")
        return real_decode(data, tag)

    monkeypatch.setattr(_disk._frame, "decode", decode_with_a_concurrent_put)
    assert reader.get("k") is None  # the bad entry: a miss
    monkeypatch.setattr(_disk._frame, "decode", real_decode)
    assert reader.get("k") == b"good", "the concurrent good write was deleted as corrupt"


def test_disk_exception_inside_a_write_transaction_does_not_keep_the_write_lock(
    tmp_path: Path,
) -> None:
    """_write (and delete, clear, flush, _maybe_sweep, _discard_bad_entry) roll back only on
    sqlite3.Error. Any other exception between BEGIN IMMEDIATE and COMMIT (Ctrl-C in a
    notebook, MemoryError, a bug) leaves the connection inside a transaction holding the
    database's write lock: every other writer, in every process, then times out."""
    store = DiskStore(tmp_path, busy_timeout=0.2)
    other = DiskStore(tmp_path, busy_timeout=0.2)

    def interrupted(conn: object) -> None:
        raise KeyboardInterrupt

    store._flush_access = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        store.put("k", b"v")
    del store._flush_access
    assert not store._index.connection().in_transaction, "a transaction was left open"
    other.put("j", b"w")
    assert other.get("j") == b"w", "another writer was locked out"

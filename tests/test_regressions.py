"""Regression tests for bugs found in review: each failed before its fix."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from compilecache import CacheTypeError, Config, ConfigError
from compilecache.stores import (
    CodecStore,
    DiskStore,
    MemoryStore,
    Signing,
    TieredStore,
    _disk,
)
from tierfakes import RemoteMemory, SlowRemote

SECRET = b"s" * 32


# -- DiskStore -------------------------------------------------------------------------------


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


# -- TieredStore / WriteBehindQueue ------------------------------------------------------------


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


# -- CodecStore --------------------------------------------------------------------------------


def test_codec_rejecting_an_entry_keeps_a_concurrent_good_write() -> None:
    """A rejected entry is removed with an unconditional delete(key): a good value written
    between the read and the delete is deleted too."""
    inner = MemoryStore()
    good_writer = CodecStore(inner, [Signing(SECRET)])
    inner.put("k", b"forged")

    class RacingSigning(Signing):
        def decode(self, key: str, data: bytes) -> bytes:
            good_writer.put(key, b"good")  # lands between inner.get and inner.delete
            return super().decode(key, data)

    reader = CodecStore(inner, [RacingSigning(SECRET)])
    assert reader.get("k") is None
    assert good_writer.get("k") == b"good", "a good concurrent write was deleted as rejected"


# -- MemoryStore -------------------------------------------------------------------------------


def test_memory_insert_of_a_value_too_large_to_store_returns_false() -> None:
    """_store skips a value larger than max_bytes, but insert() still reports True."""
    store = MemoryStore(max_bytes=10)
    accepted = store.insert("k", b"x" * 11)
    assert store.get("k") is None and store.stats().write_skips == 1
    assert accepted is False, "insert() returned True for a value it did not store"


def test_memory_get_with_an_unhashable_key_raises_cache_type_error() -> None:
    """The lock-free hit path looks the key up before check_key: an unhashable key raises a
    bare TypeError ('unhashable type') instead of CacheTypeError."""
    with pytest.raises(CacheTypeError):
        MemoryStore().get(["k"])  # type: ignore[arg-type]


def test_memory_get_with_a_str_subclass_key_raises_cache_type_error() -> None:
    """check_key rejects non-exact str types; the hit path returns a value for one."""

    class Key(str):
        pass

    store = MemoryStore()
    store.put("k", b"v")
    with pytest.raises(CacheTypeError):
        store.get(Key("k"))


# -- Config ------------------------------------------------------------------------------------


def test_config_empty_secret_is_an_error_not_silently_unsigned() -> None:
    """COMPILECACHE_SECRET='' (e.g. from an unset CI secret) silently turns signing off, while
    an empty COMPILECACHE_DIR is an error. A security setting should fail loudly."""
    with pytest.raises(ConfigError, match="COMPILECACHE_SECRET"):
        Config.from_env({"COMPILECACHE_SECRET": "", "HOME": "/h"})


def test_config_size_without_unit_rejects_a_stray_ib_suffix() -> None:
    """'10iB' parses as 10 bytes: the (?:I?B)? suffix is allowed without a unit letter."""
    with pytest.raises(ConfigError):
        Config.from_env({"COMPILECACHE_MAX_SIZE": "10iB", "HOME": "/h"})

"""A store in one directory on the local disk: SQLite index, small values inline, large in files.

Guarantees (see docs/stores.md for the reasoning):

* Atomic publish: a value becomes visible only when its index row commits; a large value's file
  is complete before that. A crash or ``kill -9`` at any point leaves the old entry or the whole
  new one.
* Readers never block each other and never wait on a writer (SQLite WAL).
* Every value is framed and checked on read; a truncated, corrupt or foreign entry is a counted
  miss, logged once, and removed so that the next write heals it.
* Size-bounded, approximately least-recently-used eviction that reads one row to decide and uses
  an index to choose; it never evicts the entry just written.
* Safe for many threads and processes on one machine. Not for network file systems: SQLite's WAL
  needs shared memory between the processes, which NFS and SMB do not provide.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from .._errors import ConfigError, CorruptEntryError
from .._ratelimit import RateLimitedLog
from . import _disk_files as files
from . import _frame
from ._base import BaseStore, check_value
from ._disk_index import Index
from ._keys import check_key
from ._stats import StoreStats

logger = logging.getLogger("compilecache.store.disk")

GiB = 1 << 30
_EVICT_BATCH = 64
_SWEEP_EVERY = 24 * 3600.0
_ORPHAN_GRACE = 3600.0
_ACCESS_FLUSH_AFTER = 10.0
_ACCESS_PENDING_MAX = 1024


_INSERT_NEW = (
    "INSERT INTO entries (key, value, filename, size, created, accessed) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
)
_UPSERT = (
    "INSERT INTO entries (key, value, filename, size, created, accessed) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "value = excluded.value, filename = excluded.filename, size = excluded.size, "
    "created = excluded.created, accessed = excluded.accessed"
)


class DiskStore(BaseStore):
    """A size-bounded store under the directory ``path``.

    Arguments:
        path: the directory; created if missing.
        max_bytes: bound on the stored bytes (frames included); eviction brings the store down to
            ``low_water`` of it (default 90 %) so that a full store does not evict on every write.
        durable: fsync payload files, their directories and the index on every write, so entries
            survive power loss, not only process crashes. Slower.
        tag: the namespace/version tag framed into every entry; an entry under another tag reads
            as a miss and is removed. Use one tag per directory.
        inline_limit: values up to this many bytes live in the index; larger ones in files.
        busy_timeout: how long a writer waits for another writer before the write fails (open).
        access_resolution: a read refreshes an entry's access time only when the recorded one is
            older than this many seconds, so that hot entries do not turn reads into writes; the
            LRU order is exact to this resolution.
        strict: raise :class:`BackendError` on backend failures instead of failing open.
        clock: the wall clock used for access times (injectable for tests).

    Raises :class:`ConfigError` for a bad argument or an unusable directory.

    >>> import tempfile
    >>> with DiskStore(tempfile.mkdtemp()) as store:
    ...     store.insert("k", b"v"), store.insert("k", b"w"), store.get("k")
    (True, False, b'v')
    """

    name = "disk"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 10 * GiB,
        durable: bool = False,
        tag: str = "compilecache",
        inline_limit: int = 32 * 1024,
        low_water: float = 0.9,
        busy_timeout: float = 10.0,
        access_resolution: float = 60.0,
        strict: bool = False,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name=name, strict=strict)
        if type(max_bytes) is not int or max_bytes <= 0:
            raise ConfigError(f"DiskStore: max_bytes must be a positive int, got {max_bytes!r}")
        if not 0 < low_water <= 1:
            raise ConfigError(f"DiskStore: low_water must be in (0, 1], got {low_water!r}")
        if type(inline_limit) is not int or inline_limit < 0:
            raise ConfigError(f"DiskStore: inline_limit must be an int >= 0, got {inline_limit!r}")
        self.root = Path(path)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"DiskStore: cannot create the cache directory {str(self.root)!r}: {error}; "
                "choose a writable directory (COMPILECACHE_DIR)",
                setting="COMPILECACHE_DIR",
            ) from error
        self.max_bytes = max_bytes
        self.durable = durable
        self._tag = tag.encode("utf-8")
        self._inline_limit = inline_limit
        self._low_water = int(max_bytes * low_water)
        self._clock = clock
        self._access_resolution = access_resolution
        self._corrupt_log = RateLimitedLog(logger, interval=300.0)
        # Reads record access times here; writes, a full buffer or a timer flush them into the
        # index. Writing on every hit would turn each read into a write transaction.
        self._pending_access: dict[str, float] = {}
        self._pending_lock = threading.Lock()
        self._last_flush = clock()
        try:
            self._index = Index(self.root, durable=durable, busy_timeout=busy_timeout)
        except (sqlite3.Error, OSError) as error:
            raise ConfigError(
                f"DiskStore: cannot open the index in {str(self.root)!r}: {error}",
                setting="COMPILECACHE_DIR",
            ) from error
        self._maybe_sweep()

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        check_key(key)
        try:
            row = (
                self._index.connection()
                .execute(
                    "SELECT rowid, value, filename, accessed FROM entries WHERE key = ?", (key,)
                )
                .fetchone()
            )
            if row is None:
                self._counters.miss()
                return None
            payload = self._payload(key, row[:3])
        except sqlite3.Error as error:
            self._counters.miss()
            self._backend_failed("get", key, error)
            return None
        if payload is None:
            self._counters.miss()
            return None
        self._counters.hit(len(payload))
        if self._clock() - row[3] > self._access_resolution:
            self._note_access(key)
        return payload

    def _payload(self, key: str, row: tuple[int, bytes | None, str | None]) -> bytes | None:
        """The verified payload of ``row``, or None after removing a bad entry."""
        rowid, value, filename = row
        try:
            if value is not None:
                return _frame.decode(value, self._tag)
            assert filename is not None
            try:
                return files.read_payload_file(self.root, filename, self._tag)
            except FileNotFoundError:
                # A concurrent put or eviction may have replaced the row and deleted the file
                # between our SELECT and open: look again before calling the entry broken.
                again = (
                    self._index.connection()
                    .execute("SELECT rowid, value, filename FROM entries WHERE key = ?", (key,))
                    .fetchone()
                )
                if again is None:
                    return None
                if tuple(again) != tuple(row):
                    return self._payload(key, again)
                raise CorruptEntryError("entry file is missing") from None
        except (CorruptEntryError, OSError) as error:
            self._discard_bad_entry(key, rowid, filename, error)
            return None

    def _discard_bad_entry(
        self, key: str, rowid: int, filename: str | None, error: BaseException
    ) -> None:
        self._counters.add("corrupt")
        self._corrupt_log.log(
            logging.WARNING,
            f"corrupt:{key}",
            "%s: entry %r is unreadable (%s); removed, the next write replaces it",
            self.name,
            key,
            error,
        )
        try:
            conn = self._index.connection()
            conn.execute("BEGIN IMMEDIATE")
            # Only the row we read: a writer may have replaced it with a good one meanwhile.
            conn.execute("DELETE FROM entries WHERE rowid = ? AND key = ?", (rowid, key))
            conn.execute("COMMIT")
        except sqlite3.Error as db_error:
            self._rollback()
            self._backend_failed("remove corrupt entry", key, db_error)
            return
        if filename is not None:
            files.remove_quietly(self.root / filename)

    def __contains__(self, key: object) -> bool:
        key = check_key(key)
        try:
            row = (
                self._index.connection()
                .execute("SELECT 1 FROM entries WHERE key = ?", (key,))
                .fetchone()
            )
        except sqlite3.Error as error:
            self._backend_failed("contains", key, error)
            return False
        return row is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = [check_key(key) for key in keys]
        found: dict[str, bytes] = {}
        conn = self._index.connection()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            try:
                rows = conn.execute(
                    "SELECT key, rowid, value, filename, accessed FROM entries "
                    f"WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
            except sqlite3.Error as error:
                self._backend_failed("get_many", chunk[0], error)
                rows = []
            for key, *row in rows:
                payload = self._payload(key, (row[0], row[1], row[2]))
                if payload is not None:
                    found[key] = payload
                    self._counters.hit(len(payload))
                    if self._clock() - row[3] > self._access_resolution:
                        self._note_access(key)
        self._counters.add("misses", len(set(wanted)) - len(found))
        return found

    def keys(self) -> Iterator[str]:
        try:
            rows = self._index.connection().execute("SELECT key FROM entries").fetchall()
        except sqlite3.Error as error:
            self._backend_failed("keys", None, error)
            rows = []
        return iter([key for (key,) in rows])

    def stats(self) -> StoreStats:
        try:
            meta = dict(
                self._index.connection()
                .execute("SELECT name, value FROM meta WHERE name IN ('count', 'size')")
                .fetchall()
            )
        except sqlite3.Error as error:
            self._backend_failed("stats", None, error)
            meta = {}
        return self._counters.snapshot(self.name, entries=meta.get("count"), size=meta.get("size"))

    # -- writes --------------------------------------------------------------------------
    def insert(self, key: str, value: bytes) -> bool:
        return self._write({check_key(key): check_value(value)}, overwrite=False) == 1

    def put(self, key: str, value: bytes) -> None:
        self._write({check_key(key): check_value(value)}, overwrite=True)

    def put_many(self, items: Mapping[str, bytes]) -> None:
        checked = {check_key(key): check_value(value) for key, value in items.items()}
        if checked:
            self._write(checked, overwrite=True)

    def _write(self, items: dict[str, bytes], *, overwrite: bool) -> int:
        """Publish ``items`` in one transaction; return how many rows were written."""
        prepared: list[tuple[str, bytes | None, str | None, int]] = []
        new_files: list[str] = []
        try:
            # Payload files first, outside the transaction: the lock is held only for row work.
            for key, value in items.items():
                if len(value) > self._inline_limit:
                    relative = files.new_relative_name()
                    size = files.write_payload_file(
                        self.root, relative, self._tag, value, durable=self.durable
                    )
                    new_files.append(relative)
                    prepared.append((key, None, relative, size))
                else:
                    framed = _frame.encode(self._tag, value)
                    prepared.append((key, framed, None, len(framed)))
        except OSError as error:
            self._remove_files(new_files)
            self._backend_failed("put" if overwrite else "insert", next(iter(items)), error)
            return 0
        now = self._clock()
        written = written_bytes = 0
        unused: list[str] = []
        superseded: list[str] = []
        conn = self._index.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for key, inline, filename, size in prepared:
                row = (key, inline, filename, size, now, now)
                if not overwrite:
                    if conn.execute(_INSERT_NEW, row).rowcount == 0:  # the key exists
                        if filename is not None:
                            unused.append(filename)
                        continue
                else:
                    old = conn.execute(
                        "SELECT filename FROM entries WHERE key = ?", (key,)
                    ).fetchone()
                    conn.execute(_UPSERT, row)
                    if old is not None and old[0] is not None:
                        superseded.append(old[0])
                written += 1
                written_bytes += len(items[key])
            self._flush_access(conn)
            superseded += self._evict(conn, protect=set(items))
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            self._remove_files(new_files)
            self._backend_failed("put" if overwrite else "insert", next(iter(items)), error)
            return 0
        # Files of replaced or evicted entries go only after the commit: until then a reader
        # may still be directed to them.
        self._remove_files(unused + superseded)
        self._counters.add("writes", written)
        self._counters.add("bytes_written", written_bytes)
        return written

    def _evict(self, conn: sqlite3.Connection, protect: set[str]) -> list[str]:
        """Delete least recently used rows until the store is under ``low_water``; return the
        files to remove after the commit. Reads one meta row when nothing needs evicting."""
        (size,) = conn.execute("SELECT value FROM meta WHERE name = 'size'").fetchone()
        if size <= self.max_bytes:
            return []
        doomed: list[str] = []
        evicted = 0
        while size > self._low_water:
            rows = conn.execute(
                "SELECT rowid, key, filename, size FROM entries ORDER BY accessed LIMIT ?",
                (_EVICT_BATCH + len(protect),),
            ).fetchall()
            victims = [row for row in rows if row[1] not in protect][:_EVICT_BATCH]
            if not victims:
                break
            for rowid, _key, filename, row_size in victims:
                conn.execute("DELETE FROM entries WHERE rowid = ?", (rowid,))
                if filename is not None:
                    doomed.append(filename)
                size -= row_size
                evicted += 1
                if size <= self._low_water:
                    break
        self._counters.add("evictions", evicted)
        return doomed

    def delete(self, key: str) -> bool:
        check_key(key)
        conn = self._index.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT filename FROM entries WHERE key = ?", (key,)).fetchone()
            if row is not None:
                conn.execute("DELETE FROM entries WHERE key = ?", (key,))
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            self._backend_failed("delete", key, error)
            return False
        if row is not None and row[0] is not None:
            files.remove_quietly(self.root / row[0])
        return row is not None

    def clear(self) -> int:
        """Remove every entry; return how many were removed."""
        conn = self._index.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            names = [n for (n,) in conn.execute("SELECT filename FROM entries") if n is not None]
            removed = conn.execute("DELETE FROM entries").rowcount
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            self._backend_failed("clear", None, error)
            return 0
        self._remove_files(names)
        return int(removed)

    # -- maintenance ---------------------------------------------------------------------
    def sweep_orphans(self, grace: float = _ORPHAN_GRACE) -> int:
        """Delete payload files that no entry references and that are older than ``grace``
        seconds (left by writers killed before they committed). Returns how many."""
        try:
            referenced = {
                name
                for (name,) in self._index.connection().execute(
                    "SELECT filename FROM entries WHERE filename IS NOT NULL"
                )
            }
        except sqlite3.Error as error:
            self._backend_failed("sweep", None, error)
            return 0
        removed = files.sweep_orphans(self.root, referenced, grace)
        if removed:
            logger.info("%s: removed %d orphaned payload files", self.name, removed)
        return removed

    def _maybe_sweep(self) -> None:
        """Sweep orphans at most once a day across all processes sharing the directory."""
        conn = self._index.connection()
        now = self._clock()
        try:
            conn.execute("BEGIN IMMEDIATE")
            (last,) = conn.execute("SELECT value FROM meta WHERE name = 'last_sweep'").fetchone()
            due = now - last > _SWEEP_EVERY
            if due:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'last_sweep'", (now,))
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            self._backend_failed("sweep", None, error)
            return
        if due:
            self.sweep_orphans()

    def flush(self) -> None:
        """Write the buffered access times of recent reads into the index."""
        conn = self._index.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._flush_access(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            self._backend_failed("flush", None, error)

    def close(self) -> None:
        """Flush access times and close this process's connections."""
        if self._pending_access:
            self.flush()
        self._index.close()

    # -- helpers -------------------------------------------------------------------------
    def _note_access(self, key: str) -> None:
        now = self._clock()
        with self._pending_lock:
            self._pending_access[key] = now
            due = (
                len(self._pending_access) >= _ACCESS_PENDING_MAX
                or now - self._last_flush > _ACCESS_FLUSH_AFTER
            )
        if due:
            self._try_flush_from_read()

    def _try_flush_from_read(self) -> None:
        """Flush access times without waiting: a read must not queue behind a writer."""
        conn = self._index.connection()
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            self._last_flush = self._clock()  # busy: try again later, keep what is pending
            return
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self._index_busy_ms()}")
        try:
            self._flush_access(conn)
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()

    def _index_busy_ms(self) -> int:
        return self._index._busy_ms

    def _flush_access(self, conn: sqlite3.Connection) -> None:
        with self._pending_lock:
            pending, self._pending_access = self._pending_access, {}
            self._last_flush = self._clock()
        if pending:
            conn.executemany(
                "UPDATE entries SET accessed = ? WHERE key = ? AND accessed < ?",
                [(when, key, when) for key, when in pending.items()],
            )

    def _rollback(self) -> None:
        try:
            self._index.connection().execute("ROLLBACK")
        except sqlite3.Error:  # no transaction open, or the connection is broken: nothing to undo
            pass

    def _remove_files(self, names: Iterable[str]) -> None:
        for name in names:
            files.remove_quietly(self.root / name)

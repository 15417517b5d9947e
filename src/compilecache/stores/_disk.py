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

import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import ConfigError, CorruptEntryError, UntrustedDirectoryError
from .._ratelimit import RateLimitedLog
from . import _disk_files as files
from . import _frame
from ._base import BaseStore, LockFactory, check_value
from ._disk_index import Index, transaction
from ._disk_salvage import DAMAGE_RECORD, read_damage_records, salvage
from ._keys import check_key
from ._private_dir import directory_problem, make_private_directory, untrusted_directory_message
from ._stats import StoreStats

if TYPE_CHECKING:
    from ._disk_maintenance import DiskMaintenance

logger = logging.getLogger("compilecache.store.disk")

GiB = 1 << 30
_EVICT_BATCH = 64
_SWEEP_EVERY = 24 * 3600.0
_ORPHAN_GRACE = 3600.0
_ACCESS_FLUSH_AFTER = 10.0
_ACCESS_PENDING_MAX = 1024

T = TypeVar("T")
Row = tuple[str, int, "bytes | None", "str | None", float]
_SELECT_ENTRY = "SELECT rowid, value, filename, accessed FROM entries WHERE key = ?"


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


#: Bounds from this size on count the index's own files (its pages beyond the inline
#: values, free pages aside, and the WAL); SQLite's files take about 100 KiB of their own,
#: which a smaller bound leaves out (it then bounds the entries only).
_INDEX_COUNTED_FROM = 1 << 20


class DiskStore(BaseStore):
    """A size-bounded store under the directory ``path``.

    Arguments:
        path: the directory; created if missing.
        max_bytes: bound on what the directory holds: the entries (frames included) and, for
            bounds of 1 MiB and more, the index's own files (its pages and its WAL, which is
            checkpointed at a sixteenth of the bound, 64 KiB to 4 MiB, and truncated back
            after). Eviction brings the store down to ``low_water`` of it (default 90 %) so
            that a full store does not evict on every write, and gives the index's free pages
            back to the file system (an index made before this version keeps them for reuse).
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
        private: require the directory to be the current user's alone (owned by them, not
            writable by group or others, nor anything directly under it); a new directory is
            created with mode 0700. ``False`` only for a directory shared on purpose, behind
            :class:`Signing` (docs/trust.md).

    Raises :class:`ConfigError` for a bad argument or an unusable directory, and its subclass
    :class:`UntrustedDirectoryError` for a directory that is not private, before reading it.

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
        private: bool = True,
    ) -> None:
        super().__init__(name=name, strict=strict)
        if type(max_bytes) is not int or max_bytes <= 0:
            raise ConfigError(f"DiskStore: max_bytes must be a positive int, got {max_bytes!r}")
        if not 0 < low_water <= 1:
            raise ConfigError(f"DiskStore: low_water must be in (0, 1], got {low_water!r}")
        if type(inline_limit) is not int or inline_limit < 0:
            raise ConfigError(f"DiskStore: inline_limit must be an int >= 0, got {inline_limit!r}")
        # Resolved once: every later path is under the directory that was checked, even if a
        # link on the way is pointed elsewhere afterwards.
        self.root = Path(os.path.realpath(path))
        self._root = os.fspath(self.root)
        try:
            make_private_directory(self.root)
        except OSError as error:
            raise ConfigError(
                f"DiskStore: cannot create the cache directory {str(self.root)!r}: {error}; "
                "choose a writable directory (COMPILECACHE_DIR)",
                setting="COMPILECACHE_DIR",
            ) from error
        problem = directory_problem(self.root) if private else None
        if problem is not None:
            raise UntrustedDirectoryError(
                untrusted_directory_message(self.root, problem), setting="COMPILECACHE_DIR"
            )
        self.max_bytes = max_bytes
        self.durable = durable
        self._tag = tag.encode("utf-8")
        self._inline_limit = inline_limit
        self._low_water = int(max_bytes * low_water)
        self._overhead = 0  # the index's own bytes (see Index.overhead), measured at eviction
        self._clock = clock
        self._access_resolution = access_resolution
        self._corrupt_log = RateLimitedLog(logger, interval=300.0)
        # Reads record access times here; writes, a full buffer or a timer flush them into the
        # index. Writing on every hit would turn each read into a write transaction.
        self._pending_access: dict[str, float] = {}
        self._pending_lock = threading.Lock()
        self._last_flush = clock()
        try:
            # The WAL's share of the bound: a sixteenth, between 64 KiB and 4 MiB.
            wal = min(4 << 20, max(64 << 10, max_bytes // 16))
            self._index = Index(
                self.root, durable=durable, busy_timeout=busy_timeout, wal_bytes=wal
            )
        except (sqlite3.Error, OSError) as error:
            raise ConfigError(
                f"DiskStore: cannot open the index in {str(self.root)!r}: {error}",
                setting="COMPILECACHE_DIR",
            ) from error
        if self._index.recovered is not None:
            # Before any sweep could take the files.
            salvage(
                self.root,
                self._tag,
                self._index,
                recovered=self._index.recovered,
                counters=self._counters,
                record=self.damage_record_path,
            )
        self._maybe_sweep()

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        check_key(key)
        try:
            try:
                row = self._index.connection().execute(_SELECT_ENTRY, (key,)).fetchone()
            except sqlite3.ProgrammingError:  # closed under us by a fork in another thread
                row = self._index.connection().execute(_SELECT_ENTRY, (key,)).fetchone()
            if row is None:
                payload = None
            elif row[1] is not None:  # inline: decode here, the common small-value hit
                try:
                    payload = _frame.decode(row[1], self._tag)
                except CorruptEntryError as error:
                    self._discard_bad_entry(key, row, error)
                    payload = None
            else:
                payload = self._payload(key, row)
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

    def file_tags(self, key: str) -> tuple[bytes, bytes]:
        """The frame tags ``key``'s payload file may carry: its own (new files), the store's
        (files written before keys were in their tags)."""
        return files.file_tag(self._tag, key), self._tag

    @property
    def damage_record_path(self) -> Path:
        """Where recoveries from a damaged index are recorded (see :meth:`damage_records`)."""
        return self.root / DAMAGE_RECORD

    def damage_records(self) -> list[dict[str, Any]]:
        """What each recovery from a damaged index found (see :mod:`._disk_salvage`)."""
        return read_damage_records(self.damage_record_path)

    def _payload(self, key: str, row: tuple[int, bytes | None, str | None, float]) -> bytes | None:
        """The verified payload of ``row``, or None after removing a bad entry."""
        _rowid, value, filename, _accessed = row
        try:
            if value is not None:
                return _frame.decode(value, self._tag)
            assert filename is not None
            try:
                return files.read_payload_file(self._root, filename, self.file_tags(key))
            except FileNotFoundError:
                # A concurrent put or eviction may have replaced the row and deleted the file
                # between our SELECT and open: look again before calling the entry broken.
                again = self._index.connection().execute(_SELECT_ENTRY, (key,)).fetchone()
                if again is None:
                    return None
                if tuple(again[:3]) != tuple(row[:3]):
                    return self._payload(key, again)
                raise CorruptEntryError("entry file is missing") from None
        except (CorruptEntryError, OSError) as error:
            self._discard_bad_entry(key, row, error)
            return None

    def _discard_bad_entry(
        self, key: str, row: tuple[int, bytes | None, str | None, float], error: BaseException
    ) -> None:
        rowid, value, filename, _accessed = row
        self._counters.add("corrupt")
        self._corrupt_log.log(
            logging.WARNING,
            f"corrupt:{key}",
            "%s: entry %r is unreadable (%s); removed, the next write replaces it",
            self.name,
            key,
            error,
        )

        def remove(conn: sqlite3.Connection) -> int:
            # Only the row we read: an upsert keeps the rowid, so match the contents too (file
            # names are random, inline frames compare exactly); a concurrent good write stays.
            with transaction(conn):
                return conn.execute(
                    "DELETE FROM entries WHERE rowid = ? AND key = ? AND value IS ? "
                    "AND filename IS ?",
                    (rowid, key, value, filename),
                ).rowcount

        removed = self._run("remove corrupt entry", key, remove, 0)
        if removed and filename is not None:
            files.remove_quietly(self.root / filename)

    def __contains__(self, key: object) -> bool:
        key = check_key(key)
        return self._run(
            "contains",
            key,
            lambda conn: (
                conn.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone() is not None
            ),
            False,
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(check_key(key) for key in keys))
        found: dict[str, bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))

            def select(conn: sqlite3.Connection, sql: str, chunk: list[str]) -> list[Row]:
                return conn.execute(sql, chunk).fetchall()

            sql = (
                f"SELECT key, rowid, value, filename, accessed FROM entries WHERE key IN ({marks})"
            )
            no_rows: list[Row] = []
            work = functools.partial(select, sql=sql, chunk=chunk)
            for key, rowid, value, filename, accessed in self._run(
                "get_many", chunk[0], work, no_rows
            ):
                try:
                    payload = self._payload(key, (rowid, value, filename, accessed))
                except sqlite3.Error as error:
                    self._backend_failed("get_many", key, error)
                    continue
                if payload is not None:
                    found[key] = payload
                    self._counters.hit(len(payload))
                    if self._clock() - accessed > self._access_resolution:
                        self._note_access(key)
        self._counters.add("misses", len(wanted) - len(found))
        return found

    def keys(self) -> Iterator[str]:
        none: list[tuple[str]] = []
        rows = self._run(
            "keys", None, lambda conn: conn.execute("SELECT key FROM entries").fetchall(), none
        )
        return iter([key for (key,) in rows])

    def stats(self) -> StoreStats:
        unknown: tuple[int | None, int | None] = (None, None)
        entries, size = self._run(
            "stats",
            None,
            lambda conn: conn.execute("SELECT count, size FROM totals").fetchone(),
            unknown,
        )
        return self._counters.snapshot(self.name, entries=entries, size=size)

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
        operation = "put" if overwrite else "insert"
        prepared: list[tuple[str, bytes | None, str | None, int]] = []
        new_files: list[str] = []
        try:
            # Payload files first, outside the transaction: the lock is held only for row work.
            for key, value in items.items():
                if len(value) > self._inline_limit:
                    relative = files.new_relative_name()
                    new_files.append(relative)
                    size = files.write_payload_file(
                        self.root,
                        relative,
                        files.file_tag(self._tag, key),
                        value,
                        durable=self.durable,
                    )
                    prepared.append((key, None, relative, size))
                else:
                    framed = _frame.encode(self._tag, value)
                    prepared.append((key, framed, None, len(framed)))
        except BaseException as error:
            self._remove_files(new_files)
            if not isinstance(error, OSError):
                raise
            self._backend_failed(operation, next(iter(items)), error)
            return 0

        try:
            written, written_bytes, obsolete, evicted = self._run_or_raise(
                functools.partial(
                    self._publish, items=items, prepared=prepared, overwrite=overwrite
                )
            )
        except sqlite3.Error as error:
            self._remove_files(new_files)
            self._backend_failed(operation, next(iter(items)), error)
            return 0
        except BaseException:
            self._remove_files(new_files)
            raise
        # Files of replaced, evicted or losing entries go only after the commit: until then a
        # reader may still be directed to them.
        self._remove_files(obsolete)
        self._counters.add("writes", written)
        self._counters.add("bytes_written", written_bytes)
        self._counters.add("evictions", evicted)
        return written

    def _publish(
        self,
        conn: sqlite3.Connection,
        *,
        items: dict[str, bytes],
        prepared: list[tuple[str, bytes | None, str | None, int]],
        overwrite: bool,
    ) -> tuple[int, int, list[str], int]:
        """The transaction of a write: rows in, access times flushed, eviction. Returns rows
        and bytes written, files that became obsolete (to remove after commit), rows evicted."""
        now = self._clock()
        written = written_bytes = 0
        unused: list[str] = []
        superseded: list[str] = []
        with transaction(conn):
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
            doomed, evicted = self._evict(conn, protect=set(items))
        if evicted:
            self._index.release_free_pages(conn)
        return written, written_bytes, unused + superseded + doomed, evicted

    def _evict(self, conn: sqlite3.Connection, protect: set[str]) -> tuple[list[str], int]:
        """Delete least recently used rows until the store is under ``low_water``; return the
        files to remove after the commit and how many rows went. Reads one row when
        nothing needs evicting."""
        (size,) = conn.execute("SELECT size FROM totals").fetchone()
        # What the directory holds: the entries (inline or in files) plus the index's own
        # overhead, as last measured (measured again here when the bound is reached).
        if size + self._overhead <= self.max_bytes:
            return [], 0
        if self.max_bytes >= _INDEX_COUNTED_FROM:
            self._overhead = self._index.overhead(conn)
            if size + self._overhead <= self.max_bytes:
                return [], 0
        doomed: list[str] = []
        evicted = 0
        low_water = self._low_water - self._overhead
        while size > low_water:
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
                if size <= low_water:
                    break
        return doomed, evicted

    def delete(self, key: str) -> bool:
        check_key(key)

        def remove(conn: sqlite3.Connection) -> tuple[bool, str | None]:
            with transaction(conn):
                row = conn.execute("SELECT filename FROM entries WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    conn.execute("DELETE FROM entries WHERE key = ?", (key,))
            return row is not None, None if row is None else row[0]

        nothing: tuple[bool, str | None] = (False, None)
        removed, filename = self._run("delete", key, remove, nothing)
        if filename is not None:
            files.remove_quietly(self.root / filename)
        return removed

    def clear(self) -> int:
        """Remove every entry; return how many were removed."""

        def remove_all(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            with transaction(conn):
                names = [n for (n,) in conn.execute("SELECT filename FROM entries") if n]
                removed = conn.execute("DELETE FROM entries").rowcount
            return int(removed), names

        nothing: tuple[int, list[str]] = (0, [])
        removed, names = self._run("clear", None, remove_all, nothing)
        self._remove_files(names)
        return removed

    # -- maintenance ---------------------------------------------------------------------
    def sweep_orphans(self, grace: float = _ORPHAN_GRACE) -> int:
        """Delete payload files that no entry references and that are older than ``grace``
        seconds (left by writers killed before they committed). Returns how many."""
        referenced: set[str] | None = self._run(
            "sweep",
            None,
            lambda conn: {
                name
                for (name,) in conn.execute(
                    "SELECT filename FROM entries WHERE filename IS NOT NULL"
                )
            },
            None,
        )
        if referenced is None:
            return 0
        removed = files.sweep_orphans(self.root, referenced, grace)
        if removed:
            logger.info("%s: removed %d orphaned payload files", self.name, removed)
        return removed

    def _maybe_sweep(self) -> None:
        """Sweep orphans at most once a day across all processes sharing the directory."""
        now = self._clock()

        def claim(conn: sqlite3.Connection) -> bool:
            (last,) = conn.execute("SELECT last_sweep FROM totals").fetchone()
            if now - last <= _SWEEP_EVERY:
                return False  # the common case: decided without taking the write lock
            with transaction(conn):
                (last,) = conn.execute("SELECT last_sweep FROM totals").fetchone()
                if now - last <= _SWEEP_EVERY:
                    return False
                conn.execute("UPDATE totals SET last_sweep = ?", (now,))
            return True

        if self._run("sweep", None, claim, False):
            self.sweep_orphans()

    def flush(self, timeout: float | None = None) -> bool:
        """Write the buffered access times of recent reads into the index."""
        if not self._pending_access:
            return True

        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                self._flush_access(conn)

        self._run("flush", None, write, None)
        return True

    def lock_factory(self, ttl: float, *, shared: bool = True) -> LockFactory | None:
        """File locks in this store's ``locks/`` directory (they span the processes that share
        the directory)."""
        from .._locks import FileLock

        directory = self.root / "locks"
        return lambda name: FileLock(directory, name, ttl=ttl)

    def local_directory(self) -> Path | None:
        return self.root

    def maintenance(self) -> DiskMaintenance:
        from ._disk_maintenance import DiskMaintenance

        return DiskMaintenance(self)

    def close(self) -> None:
        """Flush access times and close this process's connections."""
        if self._pending_access:
            self.flush()
        self._index.close()

    # -- helpers -------------------------------------------------------------------------
    def _run_or_raise(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)``, once more on a fresh connection if a fork in another thread
        closed this thread's connection under it."""
        try:
            return work(self._index.connection())
        except sqlite3.ProgrammingError:
            return work(self._index.connection())

    def _run(
        self,
        operation: str,
        key: str | None,
        work: Callable[[sqlite3.Connection], T],
        default: T,
    ) -> T:
        """``work(connection)``; a database failure is counted, logged and gives ``default``."""
        try:
            return self._run_or_raise(work)
        except sqlite3.Error as error:
            self._backend_failed(operation, key, error)
            return default

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
        try:
            conn = self._index.connection()
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                with transaction(conn):
                    self._flush_access(conn)
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self._index.busy_ms}")
        except sqlite3.Error:
            # Busy (another writer) or failing: keep serving; the access times wait for the
            # next write. They are an LRU hint, not data.
            self._last_flush = self._clock()

    def _flush_access(self, conn: sqlite3.Connection) -> None:
        with self._pending_lock:
            pending, self._pending_access = self._pending_access, {}
            self._last_flush = self._clock()
        if pending:
            conn.executemany(
                "UPDATE entries SET accessed = ? WHERE key = ? AND accessed < ?",
                [(when, key, when) for key, when in pending.items()],
            )

    def _remove_files(self, names: Iterable[str]) -> None:
        for name in names:
            files.remove_quietly(self.root / name)

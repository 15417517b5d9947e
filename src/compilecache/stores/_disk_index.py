"""The SQLite index of the disk store: schema, connections, fork safety, recovery.

The index holds one row per entry: small values inline (framed), large ones as the name of a
payload file. It runs in WAL mode, so readers never block each other or wait on a writer, and a
writer waits on another writer for at most ``busy_timeout``. Triggers keep the entry count and
total size in the one row of ``totals`` (one UPDATE per write), so the size check before
eviction is one row read, not a scan.

The file name carries the schema version: a future layout gets a new file beside this one, and
two compilecache versions sharing a directory do not fight over one index.

Fork: SQLite keeps per-process lock bookkeeping that a forked child inherits without the locks
themselves (POSIX locks are not inherited). A child that opens connections while the parent's are
still open believes it holds locks it does not; if the parent then closes its last connection,
SQLite checkpoints and deletes the WAL under the child, and the child's commits are lost. So
before every ``fork`` each index closes its idle connections (they reopen on next use), and in
the child the parent's connections are kept referenced but never used or closed (closing one
could checkpoint the parent's WAL). If a connection was inside a write transaction at the moment
of the fork, the child cannot use the index safely: its calls fail (open) with a clear message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("compilecache.store.disk")

INDEX_NAME = "index-v1.sqlite3"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        key TEXT NOT NULL UNIQUE,
        value BLOB,
        filename TEXT,
        size INTEGER NOT NULL,
        created REAL NOT NULL,
        accessed REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entries_by_access ON entries (accessed)",
    """CREATE TABLE IF NOT EXISTS totals (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        count INTEGER NOT NULL,
        size INTEGER NOT NULL,
        last_sweep REAL NOT NULL
    )""",
    "INSERT OR IGNORE INTO totals VALUES (0, 0, 0, 0)",
    """CREATE TRIGGER IF NOT EXISTS entries_insert AFTER INSERT ON entries BEGIN
        UPDATE totals SET count = count + 1, size = size + new.size WHERE id = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries BEGIN
        UPDATE totals SET count = count - 1, size = size - old.size WHERE id = 0;
    END""",
    """CREATE TRIGGER IF NOT EXISTS entries_update AFTER UPDATE OF size ON entries BEGIN
        UPDATE totals SET size = size + new.size - old.size WHERE id = 0;
    END""",
)
_SCHEMA_OBJECTS = 6  # two tables, one index, three triggers

# Result codes that mean the file itself is damaged (not busy, full or unreadable for now).
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception, even one that is not a
    database error (a KeyboardInterrupt in a notebook must not leave the write lock held)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Index:
    """Per-thread, per-process SQLite connections to one index file."""

    def __init__(
        self, root: Path, *, durable: bool, busy_timeout: float, wal_bytes: int = 4 << 20
    ) -> None:
        self.path = root / INDEX_NAME
        self._durable = durable
        self.wal_bytes = wal_bytes
        self.busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[sqlite3.Connection] = []  # this process's connections
        self._inherited: list[sqlite3.Connection] = []  # a parent's: never used, never closed
        self._pid = os.getpid()
        self._token = object()
        self._unusable: str | None = None
        self._busy_at_fork = False
        self.recovered: dict[str, object] | None = None  # set when a damaged file was set aside
        _LIVE.add(self)
        self._open_or_recover()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use in this process (and after a fork)."""
        # The token changes on close, before a fork and in a forked child, so one identity test
        # replaces a getpid() system call on every read.
        local = self._local
        if getattr(local, "token", None) is self._token:
            conn: sqlite3.Connection = local.conn
            return conn
        return self._reconnect()

    def _reconnect(self) -> sqlite3.Connection:
        with self._lock:
            if self._pid != os.getpid():
                self._adopt_fork()
            if self._unusable:
                raise sqlite3.OperationalError(self._unusable)
            conn = self._connect()
            self._open.append(conn)
            self._local.conn, self._local.token = conn, self._token
        return conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE for writes),
        # so a read never holds a transaction open.
        conn = sqlite3.connect(
            self.path, timeout=self.busy_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {self.busy_ms}")
        # Not durable: OFF. Every commit still reaches the OS before it returns, so a killed
        # process loses nothing; only a power loss or kernel crash can lose recent commits or
        # damage the file, which is then moved aside at open (a cache may forget, never lie).
        # That saves about a third of an insert's cost; durable=True pays for FULL.
        conn.execute(f"PRAGMA synchronous = {'FULL' if self._durable else 'OFF'}")
        # The WAL is checkpointed at ``wal_bytes`` (SQLite's 1,000 pages, 4 MiB, at most:
        # measured here, a larger WAL made hits slower, pages still in the WAL being read with
        # syscalls and the database file through mmap, and saved nothing on inserts, since
        # checkpoints do not sync with synchronous=OFF) and truncated back to it afterwards
        # (SQLite otherwise keeps the file at its largest): it is part of the store's bound.
        (page,) = conn.execute("PRAGMA page_size").fetchone()
        conn.execute(f"PRAGMA wal_autocheckpoint = {max(16, self.wal_bytes // page)}")
        conn.execute(f"PRAGMA journal_size_limit = {self.wal_bytes}")
        conn.execute("PRAGMA mmap_size = 268435456")
        return conn

    # -- fork ----------------------------------------------------------------------------
    def before_fork(self) -> None:
        """Close idle connections so that the child inherits no SQLite lock bookkeeping."""
        with self._lock:
            if self._pid != os.getpid():
                return
            keep = []
            for conn in self._open:
                if conn.in_transaction:
                    keep.append(conn)
                else:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
            self._open = keep
            self._token = object()  # every thread reopens on next use
            self._busy_at_fork = bool(keep)

    def _adopt_fork(self) -> None:
        """First use in a forked child: set the parent's connections aside for good."""
        self._inherited.extend(self._open)
        self._open = []
        self._pid = os.getpid()
        self._token = object()
        if self._busy_at_fork:
            self._unusable = (
                f"disk store index {self.path} was in a write transaction when this process "
                "was forked; it is unusable here (reads miss, writes are skipped). Fork before "
                "using the store, or use the spawn start method"
            )
            logger.warning("%s", self._unusable)

    # -- opening -------------------------------------------------------------------------
    def _open_or_recover(self) -> None:
        """Create the schema; move a file that is not a usable database aside and start over."""
        try:
            self._initialise()
        except sqlite3.DatabaseError as error:
            code = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF
            if code not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            self.close()
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._initialise()
            # The owner (the disk store) rebuilds what it can from its payload files, and says
            # what was lost: see _disk_salvage.
            self.recovered = {"aside": str(aside), "error": str(error), **_rows_of(aside)}

    def _initialise(self) -> None:
        conn = self.connection()
        # Before anything is written to a new file: free pages can then be given back to the
        # file system, so that the bound on the store holds for the index file too (on an
        # existing file, a no-op).
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        # WAL is a property of the file, set once; it is what lets readers run during writes.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            logger.warning("disk store index %s runs in %s mode, not WAL", self.path, mode)
        (present,) = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name IN "
            "('entries', 'totals', 'entries_by_access', 'entries_insert', 'entries_delete', "
            "'entries_update')"
        ).fetchone()
        if present == _SCHEMA_OBJECTS:
            return  # the common case: no write lock needed to open an existing store
        with transaction(conn):
            for statement in _SCHEMA:
                conn.execute(statement)

    def overhead(self, conn: sqlite3.Connection) -> int:
        """The bytes the index's files hold beyond the inline values (pages of keys and
        access times, free pages, the WAL and its shared memory)."""
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        (page,) = conn.execute("PRAGMA page_size").fetchone()
        pages -= free  # reused by the next writes, and given back by release_free_pages
        (inline,) = conn.execute(
            "SELECT total(size) FROM entries WHERE filename IS NULL"
        ).fetchone()
        wal = 0
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                wal += os.stat(f"{self.path}{suffix}").st_size
        # (The WAL grows to its checkpoint size between checkpoints: counted at that size.)
        return max(0, int(pages * page - inline)) + max(wal, self.wal_bytes)

    def release_free_pages(self, conn: sqlite3.Connection) -> None:
        """Shrink the index file by its free pages (after an eviction): indexes created by
        this version vacuum incrementally; older ones keep their free pages for reuse."""
        # (executescript: a plain execute steps the pragma once, which frees one page.)
        conn.executescript("PRAGMA incremental_vacuum;")
        # In WAL mode the file shrinks when a checkpoint copies the WAL back: do one now (it
        # does not wait for readers; one that cannot finish leaves it to the next).
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        """Close every connection this process opened; later calls reopen."""
        with self._lock:
            conns = self._open if self._pid == os.getpid() else []
            self._open = []
            self._token = object()
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _rows_of(path: Path) -> dict[str, int | None]:
    """How many entries a damaged index held (and how many inline), if SQLite can still
    count them; None where it cannot."""
    counts: dict[str, int | None] = {"entries": None, "inline": None}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (counts["entries"],) = conn.execute("SELECT count(*) FROM entries").fetchone()
            (counts["inline"],) = conn.execute(
                "SELECT count(*) FROM entries WHERE filename IS NULL"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        pass
    return counts


_LIVE: weakref.WeakSet[Index] = weakref.WeakSet()


def _before_fork() -> None:
    for index in list(_LIVE):
        index.before_fork()


def _after_fork_in_child() -> None:
    for index in list(_LIVE):
        index._token = object()  # the child's threads must not reuse the parent's connections


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)

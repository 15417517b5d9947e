"""The SQLite index of the disk store: schema, connections, and recovery from a broken file.

The index holds one row per entry: small values inline (framed), large ones as the name of a
payload file. It runs in WAL mode, so readers never block each other or wait on a writer, and a
writer waits on another writer for at most ``busy_timeout``. Triggers keep the entry count and
total size in ``meta``, so the size check before eviction is one row read, not a scan.

The file name carries the schema version: a future layout gets a new file beside this one, and
two compilecache versions sharing a directory do not fight over one index.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

logger = logging.getLogger("compilecache.store.disk")

INDEX_NAME = "index-v1.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT NOT NULL UNIQUE,
    value BLOB,
    filename TEXT,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    accessed REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_access ON entries (accessed);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('count', 0), ('size', 0), ('last_sweep', 0);
CREATE TRIGGER IF NOT EXISTS entries_insert AFTER INSERT ON entries BEGIN
    UPDATE meta SET value = value + 1 WHERE name = 'count';
    UPDATE meta SET value = value + new.size WHERE name = 'size';
END;
CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries BEGIN
    UPDATE meta SET value = value - 1 WHERE name = 'count';
    UPDATE meta SET value = value - old.size WHERE name = 'size';
END;
CREATE TRIGGER IF NOT EXISTS entries_update AFTER UPDATE OF size ON entries BEGIN
    UPDATE meta SET value = value + new.size - old.size WHERE name = 'size';
END;
"""


class Index:
    """Per-thread, per-process SQLite connections to one index file.

    A connection is never shared between threads, and never used in a child process after
    ``fork`` (SQLite forbids carrying a connection across fork): each (process, thread) pair
    opens its own on first use.
    """

    def __init__(self, root: Path, *, durable: bool, busy_timeout: float) -> None:
        self.path = root / INDEX_NAME
        self._durable = durable
        self._busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._pid = os.getpid()
        self._open_or_recover()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use in this process."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        conn = self._connect()
        local.conn, local.pid = conn, os.getpid()
        return conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE for writes),
        # so a read never holds a transaction open.
        conn = sqlite3.connect(
            self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        # Not durable: OFF. Every commit still reaches the OS before it returns, so a killed
        # process loses nothing; only a power loss or kernel crash can lose recent commits or
        # damage the file, which is then moved aside at open (a cache may forget, never lie).
        # That saves about a third of an insert's cost; durable=True pays for FULL.
        conn.execute(f"PRAGMA synchronous = {'FULL' if self._durable else 'OFF'}")
        # Fewer, larger checkpoints: each one syncs, so this amortises better (WAL up to 16 MB).
        conn.execute("PRAGMA wal_autocheckpoint = 4000")
        conn.execute("PRAGMA mmap_size = 268435456")
        with self._all_lock:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours
                self._all, self._pid = [], os.getpid()
            self._all.append(conn)
        return conn

    def _open_or_recover(self) -> None:
        """Create the schema; move a file that is not a usable database aside and start over."""
        try:
            self._initialise()
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.warning(
                "disk store index %s is unreadable (%s); moved to %s and starting empty "
                "(payload files it referenced are swept later)",
                self.path,
                error,
                aside,
            )
            self.close()
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._initialise()

    def _initialise(self) -> None:
        conn = self.connection()
        # WAL is a property of the file, set once; it is what lets readers run during writes.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            logger.warning("disk store index %s runs in %s mode, not WAL", self.path, mode)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split(_SCHEMA):
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection this process opened."""
        with self._all_lock:
            conns = self._all if self._pid == os.getpid() else []
            self._all = []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # closing must not fail; a broken file is handled elsewhere
                pass
        self._local = threading.local()


def _split(script: str) -> list[str]:
    """Split the schema into statements, keeping trigger bodies whole."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current)
        if text.rstrip().endswith(";") and (
            "TRIGGER" not in text or text.rstrip().endswith("END;")
        ):
            statements.append(text)
            current = []
    return statements

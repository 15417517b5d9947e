"""Counters that outlive the process: a small SQLite database beside the disk store's index.

Processes add *deltas* (``add``): one transaction of ``INSERT ... ON CONFLICT DO UPDATE SET
value = value + excluded.value`` statements, so concurrent processes never lose a count (SQLite
serializes the writers; each waits up to ``busy_timeout``). Three tables:

- ``totals (scope, name, value)``: since the last ``zero``; scopes are ``tier:<name>``,
  ``artifacts``, ``bypass``, ``function:<module:qualname>``.
- ``series (bucket, scope, name, value)``: the same deltas per five-minute bucket, for charts
  over time; buckets older than ``keep_days`` are dropped (the totals are not).
- ``entries (key, function, loads, last_load)``: how often each stored entry was loaded.
- ``sizes (bucket, entries, bytes)``: the disk store's size when a process flushed.

Counters are advisory: a database that cannot be opened or written (a read-only directory, a
full disk) is logged once and ignored; it never fails a call.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

DB_NAME = "counters-v1.sqlite3"
BUCKET_SECONDS = 300

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS totals (scope TEXT NOT NULL, name TEXT NOT NULL, "
    "value REAL NOT NULL, PRIMARY KEY (scope, name))",
    "CREATE TABLE IF NOT EXISTS series (bucket INTEGER NOT NULL, scope TEXT NOT NULL, "
    "name TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (bucket, scope, name))",
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, function TEXT, "
    "loads INTEGER NOT NULL, last_load REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sizes (bucket INTEGER PRIMARY KEY, entries INTEGER NOT NULL, "
    "bytes INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL)",
)

_ADD_TOTAL = (
    "INSERT INTO totals VALUES (?, ?, ?) ON CONFLICT (scope, name) "
    "DO UPDATE SET value = value + excluded.value"
)
_ADD_SERIES = (
    "INSERT INTO series VALUES (?, ?, ?, ?) ON CONFLICT (bucket, scope, name) "
    "DO UPDATE SET value = value + excluded.value"
)
_ADD_LOAD = (
    "INSERT INTO entries VALUES (?, ?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET loads = loads + excluded.loads, last_load = max(last_load, excluded.last_load)"
)


@dataclass
class Delta:
    """What one process adds in one flush."""

    counts: dict[tuple[str, str], float] = field(default_factory=dict)
    loads: dict[str, tuple[str, int, float]] = field(default_factory=dict)  # key: fn, n, when
    size: tuple[int, int] | None = None  # (entries, bytes) of the disk store now

    def add(self, scope: str, name: str, value: float) -> None:
        if value:
            self.counts[scope, name] = self.counts.get((scope, name), 0) + value

    def __bool__(self) -> bool:
        return bool(self.counts or self.loads or self.size)


class CountersDB:
    """The counters database of one store directory (see the module docstring)."""

    def __init__(self, directory: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(directory) / DB_NAME
        self._busy_timeout = busy_timeout

    @contextlib.contextmanager
    def _connect(self, busy_timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        # A connection per operation: flushes are rare (seconds apart), and a short-lived
        # connection is fork-safe and holds no lock between flushes.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        timeout = self._busy_timeout if busy_timeout is None else busy_timeout
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            yield conn
        finally:
            conn.close()

    def add(
        self,
        delta: Delta,
        *,
        now: float | None = None,
        keep_days: float = 30,
        busy_timeout: float | None = None,
    ) -> None:
        """Add ``delta`` in one transaction (waiting at most ``busy_timeout`` seconds for
        another writer; default: the database's)."""
        now = time.time() if now is None else now
        bucket = int(now // BUCKET_SECONDS * BUCKET_SECONDS)
        with self._connect(busy_timeout) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for (scope, name), value in delta.counts.items():
                    conn.execute(_ADD_TOTAL, (scope, name, value))
                    if not scope.startswith("function:"):
                        conn.execute(_ADD_SERIES, (bucket, scope, name, value))
                for key, (function, loads, when) in delta.loads.items():
                    conn.execute(_ADD_LOAD, (key, function, loads, when))
                if delta.size is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO sizes VALUES (?, ?, ?)", (bucket, *delta.size)
                    )
                conn.execute("DELETE FROM series WHERE bucket < ?", (bucket - keep_days * 86400,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def totals(self) -> dict[str, dict[str, float]]:
        """``{scope: {name: value}}`` since the last :meth:`zero`. Readers return nothing for
        a store no process counted in (and create no database)."""
        found: dict[str, dict[str, float]] = {}
        if not self.path.exists():
            return found
        with self._connect() as conn:
            for scope, name, value in conn.execute("SELECT scope, name, value FROM totals"):
                found.setdefault(scope, {})[name] = value
        return found

    def series(self) -> list[tuple[int, str, str, float]]:
        """(bucket start, scope, name, value) rows, oldest first."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            return list(conn.execute("SELECT * FROM series ORDER BY bucket, scope, name"))

    def sizes(self) -> list[tuple[int, int, int]]:
        """(bucket start, entries, bytes) rows, oldest first."""
        if not self.path.exists():
            return []
        with self._connect() as conn:
            return list(conn.execute("SELECT * FROM sizes ORDER BY bucket"))

    def entry_loads(self) -> dict[str, tuple[int, float]]:
        """{store key digest: (loads, last load time)}."""
        if not self.path.exists():
            return {}
        with self._connect() as conn:
            rows = conn.execute("SELECT key, loads, last_load FROM entries")
            return {key: (loads, last) for key, loads, last in rows}

    def zeroed_at(self) -> float | None:
        if not self.path.exists():
            return None
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = 'zeroed_at'").fetchone()
        return None if row is None else float(row[0])

    def zero(self, *, now: float | None = None) -> None:
        """Reset every counter (the cache's entries are untouched)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            for table in ("totals", "series", "entries", "sizes"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('zeroed_at', ?)",
                (time.time() if now is None else now,),
            )
            conn.execute("COMMIT")


def merged(rows: Mapping[str, Mapping[str, float]], scope_prefix: str) -> dict[str, float]:
    """Sum the totals of every scope starting with ``scope_prefix``, by name."""
    result: dict[str, float] = {}
    for scope, values in rows.items():
        if scope.startswith(scope_prefix):
            for name, value in values.items():
                result[name] = result.get(name, 0) + value
    return result

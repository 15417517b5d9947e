"""Maintenance of a disk store for the ``compilecache`` command: list, verify, quarantine.

Separate from the store's hot paths. Everything here is safe while other processes use the
store: entries are read through the index like any reader; removing one deletes its row in a
transaction that matches the row read, then unlinks its file. A reader that had already opened
the file keeps reading it to the end (POSIX keeps an unlinked file alive while it is open), and
one that had only read the row finds the file gone, reads the row again, and sees a miss: no
reader ever gets part of a value.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._errors import CorruptEntryError
from . import _disk_files as files
from . import _frame
from ._disk import DiskStore
from ._disk_index import transaction

QUARANTINE = "quarantine"


@dataclass(frozen=True)
class EntryInfo:
    """One row of a disk store's index."""

    key: str
    size: int
    created: float
    accessed: float
    inline: bool


def entries(store: DiskStore) -> list[EntryInfo]:
    """Every entry's size and times (the access time may lag reads by up to the store's
    ``access_resolution``)."""
    store.flush()  # this process's pending access times first
    nothing: list[tuple[str, int, float, float, int]] = []
    rows = store._run(
        "list",
        None,
        lambda conn: conn.execute(
            "SELECT key, size, created, accessed, value IS NOT NULL FROM entries"
        ).fetchall(),
        nothing,
    )
    return [EntryInfo(k, s, c, a, bool(i)) for k, s, c, a, i in rows]


def read_raw(store: DiskStore, key: str) -> tuple[bytes | None, str | None]:
    """(the payload after the frame check, None) or (None, what is wrong with it); (None,
    None) when the entry is gone. Nothing is removed here."""
    row = (
        store._index.connection()
        .execute("SELECT value, filename FROM entries WHERE key = ?", (key,))
        .fetchone()
    )
    if row is None:
        return None, None
    value, filename = row
    try:
        if value is not None:
            return _frame.decode(value, store._tag), None
        return files.read_payload_file(store._root, filename, store._tag), None
    except FileNotFoundError:
        return None, "its payload file is missing"
    except (CorruptEntryError, OSError) as error:
        return None, str(error)


def raw_frame(store: DiskStore, key: str) -> bytes | None:
    """The stored bytes of ``key`` as they are on disk (for quarantine), or None."""
    row = (
        store._index.connection()
        .execute("SELECT value, filename FROM entries WHERE key = ?", (key,))
        .fetchone()
    )
    if row is None:
        return None
    value: bytes | None = row[0]
    if value is not None:
        return bytes(value)
    filename: str = row[1]
    try:
        return (store.root / filename).read_bytes()
    except OSError:
        return None


def quarantine(store: DiskStore, key: str, reason: str) -> Path | None:
    """Move ``key``'s bytes into ``<store>/quarantine/`` with a note of ``reason``, and remove
    the entry. Returns the quarantined file (None if the entry was gone)."""
    raw = raw_frame(store, key)
    directory = store.root / QUARANTINE
    directory.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:120]
    target = directory / f"{stamp}-{os.getpid()}-{safe}"
    if raw is not None:
        target.with_suffix(".bad").write_bytes(raw)
    note = {"key": key, "reason": reason, "quarantined": time.time()}
    target.with_suffix(".json").write_text(json.dumps(note, indent=2))
    store.delete(key)
    return target.with_suffix(".bad") if raw is not None else None


def delete_many(store: DiskStore, keys: list[str]) -> int:
    """Remove ``keys`` in one transaction (files after the commit); return how many."""
    if not keys:
        return 0

    def remove(conn: sqlite3.Connection) -> tuple[int, list[str]]:
        removed, names = 0, []
        with transaction(conn):
            for key in keys:
                row = conn.execute("SELECT filename FROM entries WHERE key = ?", (key,)).fetchone()
                if row is None:
                    continue
                conn.execute("DELETE FROM entries WHERE key = ?", (key,))
                removed += 1
                if row[0]:
                    names.append(row[0])
        return removed, names

    nothing: tuple[int, list[str]] = (0, [])
    removed, names = store._run("delete", None, remove, nothing)
    for name in names:
        files.remove_quietly(store.root / name)
    return removed


def iter_keys(store: DiskStore, prefix: str) -> Iterator[str]:
    return (key for key in store.keys() if key.startswith(prefix))

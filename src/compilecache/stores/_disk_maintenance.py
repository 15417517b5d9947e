"""Maintenance of a disk store for the ``compilecache`` command: list, verify, quarantine.

:class:`DiskMaintenance` is the handle (a :class:`~._maintenance.Maintenance`) a store offers
through ``store.maintenance()``: the local disk store, the codecs above it (to decode what it
holds) and whether it may be changed.

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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import CacheUsageError, CorruptEntryError
from . import _disk_files as files
from . import _frame
from ._codecs import Codec
from ._disk_index import transaction
from ._maintenance import EntryInfo, RawRead

if TYPE_CHECKING:
    from ._disk import DiskStore
from ._stats import StoreStats

QUARANTINE = "quarantine"


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


def read_raw(store: DiskStore, key: str) -> RawRead:
    """Read ``key`` as a reader would, but record no access and remove nothing."""
    row = (
        store._index.connection()
        .execute("SELECT rowid, value, filename FROM entries WHERE key = ?", (key,))
        .fetchone()
    )
    if row is None:
        return RawRead(None, None, None)
    identity = (int(row[0]), row[1], row[2])
    value, filename = row[1], row[2]
    try:
        if value is not None:
            return RawRead(_frame.decode(value, store._tag), None, identity)
        payload = files.read_payload_file(store._root, filename, store.file_tags(key))
        return RawRead(payload, None, identity)
    except FileNotFoundError:
        return RawRead(None, "its payload file is missing", identity)
    except (CorruptEntryError, OSError) as error:
        return RawRead(None, str(error), identity)


def quarantine(
    store: DiskStore, key: str, reason: str, row: tuple[int, bytes | None, str | None]
) -> Path | None:
    """Move the value of ``key`` read as ``row`` into ``<store>/quarantine/`` with a note of
    ``reason``, and remove it from the store: only that very row, so a good value written
    since by another process stays. Returns the quarantined file, or None when the entry
    changed or went meanwhile (nothing is moved then)."""
    rowid, value, filename = row
    raw: bytes | None = bytes(value) if value is not None else None
    if raw is None and filename is not None:
        try:
            raw = (store.root / filename).read_bytes()
        except OSError:
            raw = None

    def remove(conn: sqlite3.Connection) -> int:
        with transaction(conn):
            return conn.execute(
                "DELETE FROM entries WHERE rowid = ? AND key = ? AND value IS ? AND filename IS ?",
                (rowid, key, value, filename),
            ).rowcount

    if not store._run("quarantine", key, remove, 0):
        return None
    if filename is not None:
        files.remove_quietly(store.root / filename)
    directory = store.root / QUARANTINE
    directory.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:120]
    target = directory / f"{stamp}-{os.getpid()}-{safe}"
    if raw is not None:
        target.with_suffix(".bad").write_bytes(raw)
    note = {"key": key, "reason": reason, "quarantined": time.time()}
    target.with_suffix(".json").write_text(json.dumps(note, indent=2))
    return target.with_suffix(".bad")


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


class DiskMaintenance:
    """The maintenance handle of a local disk store, as seen through the store it is in.

    ``decoders`` are the codec chains between the outermost store and the disk store,
    outermost first; ``writable`` is False behind a read-only view, and then every call that
    removes something raises :class:`CacheUsageError`.
    """

    def __init__(
        self,
        disk: DiskStore,
        decoders: Sequence[Sequence[Codec]] = (),
        *,
        writable: bool = True,
    ) -> None:
        self.disk = disk
        self.decoders = tuple(tuple(codecs) for codecs in decoders)
        self.writable = writable

    def through(self, codecs: Sequence[Codec]) -> DiskMaintenance:
        """This handle as seen from a codec store of ``codecs`` over it."""
        return DiskMaintenance(self.disk, (tuple(codecs), *self.decoders), writable=self.writable)

    def read_only(self) -> DiskMaintenance:
        """This handle as seen from a read-only view of it."""
        return DiskMaintenance(self.disk, self.decoders, writable=False)

    @property
    def root(self) -> Path:
        """The disk store's directory."""
        return self.disk.root

    @property
    def quarantine_dir(self) -> Path:
        return self.disk.root / QUARANTINE

    def stats(self) -> StoreStats:
        return self.disk.stats()

    def keys(self) -> list[str]:
        return list(self.disk.keys())

    def entries(self) -> list[EntryInfo]:
        return entries(self.disk)

    def read_raw(self, key: str) -> RawRead:
        """The frame-checked payload of ``key``, not decoded; no access is recorded."""
        return read_raw(self.disk, key)

    def decode(self, key: str, payload: bytes) -> bytes:
        """Undo every codec above the disk store on ``payload``: the innermost store's first,
        each store's codecs in reverse. Raises :class:`RejectedEntryError` or
        :class:`CorruptEntryError`."""
        for codecs in reversed(self.decoders):
            for codec in reversed(codecs):
                payload = codec.decode(key, payload)
        return payload

    def delete_many(self, keys: list[str]) -> int:
        self._check_writable("delete entries")
        return delete_many(self.disk, keys)

    def quarantine(
        self, key: str, reason: str, row: tuple[int, bytes | None, str | None]
    ) -> Path | None:
        self._check_writable("quarantine entries")
        return quarantine(self.disk, key, reason, row)

    def clear(self) -> int:
        self._check_writable("clear it")
        return self.disk.clear()

    def damage_records(self) -> list[dict[str, Any]]:
        return self.disk.damage_records()

    def set_aside_damage_record(self) -> Path | None:
        """Move the record of index damage into quarantine/ (it has been reported)."""
        self._check_writable("move its damage record")
        source = self.disk.damage_record_path
        target = self.quarantine_dir / f"{source.name}.{int(time.time())}"
        try:
            target.parent.mkdir(mode=0o700, exist_ok=True)
            source.rename(target)
        except OSError:
            return None
        return target

    def _check_writable(self, what: str) -> None:
        if not self.writable:
            raise CacheUsageError(
                f"the local store in {self.disk.root} is configured read-only: cannot {what}; "
                "open it without the read-only view to change it"
            )

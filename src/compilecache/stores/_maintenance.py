"""The maintenance handle a store offers (``store.maintenance()``): what the command line and
verify use to list, read raw, delete and quarantine entries of the local store, seen through
the codecs of the store it is in. The disk store's is :class:`~._disk_maintenance.DiskMaintenance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._codecs import Codec
    from ._stats import StoreStats


@dataclass(frozen=True)
class EntryInfo:
    """One row of a disk store's index."""

    key: str
    size: int
    created: float
    accessed: float
    inline: bool


@dataclass(frozen=True)
class RawRead:
    """A value as read by maintenance: ``payload`` after the frame check, or ``problem``
    saying what is wrong; ``row`` identifies the very row read (None: the entry is gone)."""

    payload: bytes | None
    problem: str | None
    row: tuple[int, bytes | None, str | None] | None


class Maintenance(Protocol):
    """A local store's maintenance handle. With ``writable`` False (behind a read-only view)
    every call that removes something raises :class:`CacheUsageError`."""

    writable: bool

    @property
    def root(self) -> Path:
        """The local store's directory (where telemetry and quarantine live)."""
        ...

    @property
    def quarantine_dir(self) -> Path: ...

    def through(self, codecs: Sequence[Codec]) -> Maintenance:
        """This handle as seen from a codec store of ``codecs`` over it."""
        ...

    def read_only(self) -> Maintenance:
        """This handle as seen from a read-only view of it."""
        ...

    def stats(self) -> StoreStats: ...

    def keys(self) -> list[str]: ...

    def entries(self) -> list[EntryInfo]:
        """Every entry's key, size and times."""
        ...

    def read_raw(self, key: str) -> RawRead:
        """The frame-checked payload of ``key``, not decoded; no access is recorded."""
        ...

    def decode(self, key: str, payload: bytes) -> bytes:
        """Undo every codec above the local store; raises :class:`RejectedEntryError` or
        :class:`CorruptEntryError`."""
        ...

    def delete_many(self, keys: list[str]) -> int:
        """Remove ``keys`` in one transaction; return how many were there."""
        ...

    def quarantine(
        self, key: str, reason: str, row: tuple[int, bytes | None, str | None]
    ) -> Path | None:
        """Move the value read as ``row`` into quarantine/ (None: it changed meanwhile)."""
        ...

    def clear(self) -> int: ...

    def damage_records(self) -> list[dict[str, Any]]: ...

    def set_aside_damage_record(self) -> Path | None: ...

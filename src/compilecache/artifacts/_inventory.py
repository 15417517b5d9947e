"""What a store holds, entry by entry (a manifest and its artifact), for the command line:
list, find by key prefix, read the per-function indexes, prune.

Entries are read through the store's maintenance handle (so signatures are checked); sizes and
times come from the local disk store's index when the store has one (a Redis-only store has no
access times).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import CacheUsageError
from . import _layout as layout
from ._manifest import Manifest, ManifestError

MANIFESTS = f"{layout.PREFIX}/m/"
ARTIFACTS = f"{layout.PREFIX}/a/"
INDEXES = f"{layout.PREFIX}/i/"


@dataclass
class StoredEntry:
    """One stored compiled entry. ``manifest`` is None when it does not read back
    (``problem`` says why)."""

    key: str
    manifest: Manifest | None
    size: int = 0
    created: float | None = None
    last_used: float | None = None
    loads: int = 0
    problem: str | None = None

    @property
    def function(self) -> str:
        return self.manifest.function if self.manifest else "?"

    @property
    def backend(self) -> str:
        return self.manifest.backend if self.manifest else "?"

    @property
    def compile_seconds(self) -> float:
        return self.manifest.compile_seconds if self.manifest else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "function": self.function,
            "backend": self.backend,
            "size": self.size,
            "created": self.created,
            "last_used": self.last_used,
            "loads": self.loads,
            "compile_seconds": self.compile_seconds,
            "problem": self.problem,
        }


def read_value(store: Any, key: str) -> tuple[bytes | None, str | None]:
    """(the value of ``key``, None) or (None, what is wrong), read from the local disk store
    without recording an access or removing a bad value (that is verify's job, with
    quarantine); from the store itself when it has no local store or the key is not there."""
    from .._errors import CorruptEntryError, RejectedEntryError

    local = store.maintenance()
    if local is None:
        return store.get(key), None
    read = local.read_raw(key)
    if read.row is None:
        return store.get(key), None
    if read.problem is not None:
        return None, read.problem
    assert read.payload is not None
    try:
        return local.decode(key, read.payload), None
    except (RejectedEntryError, CorruptEntryError) as error:
        return None, str(error)


def stored_entries(
    store: Any, loads: dict[str, tuple[int, float]] | None = None
) -> list[StoredEntry]:
    """Every entry of ``store`` with its manifest, size, times and (from ``loads``, the
    persisted counters) how often it was loaded."""
    local = store.maintenance()
    rows: dict[str, Any] = {}
    if local is not None:
        rows = {row.key: row for row in local.entries()}
        keys = [k[len(MANIFESTS) :] for k in rows if k.startswith(MANIFESTS)]
    else:
        keys = [k[len(MANIFESTS) :] for k in store.keys() if k.startswith(MANIFESTS)]
    found = []
    for digest in sorted(keys):
        entry = read_entry(store, digest)
        manifest_row = rows.get(layout.manifest_key(digest))
        artifact_row = rows.get(layout.artifact_key(digest))
        if manifest_row is not None:
            entry.size = manifest_row.size + (artifact_row.size if artifact_row else 0)
            entry.created = manifest_row.created
            used = [r.accessed for r in (manifest_row, artifact_row) if r is not None]
            entry.last_used = max(used)
        elif entry.manifest is not None:
            entry.size = entry.manifest.artifact_size
            entry.created = entry.manifest.created
        if loads and digest in loads:
            entry.loads, last_load = loads[digest]
            entry.last_used = max(entry.last_used or 0.0, last_load)
        found.append(entry)
    return found


def read_entry(store: Any, digest: str) -> StoredEntry:
    data, problem = read_value(store, layout.manifest_key(digest))
    if data is None:
        return StoredEntry(digest, None, problem=f"manifest unusable: {problem or 'gone'}")
    try:
        return StoredEntry(digest, Manifest.from_bytes(data, digest))
    except ManifestError as error:
        return StoredEntry(digest, None, problem=str(error))


def resolve_key(store: Any, prefix: str) -> str:
    """The one stored key starting with ``prefix``. Raises :class:`CacheUsageError` when none
    or several do."""
    prefix = prefix.strip().lower()
    if len(prefix) < 4:
        raise CacheUsageError(f"key prefix {prefix!r} is too short: give at least 4 characters")
    matches = sorted(
        {k[len(MANIFESTS) :] for k in store.keys() if k.startswith(MANIFESTS + prefix)}
    )
    if not matches:
        raise CacheUsageError(f"no stored entry has a key starting with {prefix!r}")
    if len(matches) > 1:
        shown = ", ".join(m[:16] for m in matches[:5])
        raise CacheUsageError(f"key prefix {prefix!r} is ambiguous: {shown}; give more of it")
    found: str = matches[0]
    return found


def function_indexes(store: Any, function: str | None = None) -> list[dict[str, Any]]:
    """The per-function indexes (recorded keys and their components), optionally only those
    of ``function`` (``module:qualname``)."""
    found = []
    for key in store.keys():
        if not key.startswith(INDEXES):
            continue
        raw = store.get(key)
        try:
            index = json.loads(raw) if raw else None
        except ValueError:
            continue
        if not isinstance(index, dict) or not isinstance(index.get("entries"), dict):
            continue
        if function is None or index.get("function") == function:
            found.append(index)
    return found


@dataclass
class PruneReport:
    removed: int = 0
    freed: int = 0
    kept: int = 0
    size_after: int = 0
    orphans: int = 0


#: An artifact without its manifest younger than this may be a writer's, between its two
#: writes; older ones are left by a writer that died (or a manifest quarantined): garbage.
ORPHAN_GRACE = 60.0


def prune(
    store: Any,
    *,
    max_size: int | None = None,
    older_than: float | None = None,
    function: str | None = None,
    now: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PruneReport:
    """Remove from the local disk store: artifacts left without a manifest; the entries of
    ``function`` (``module:qualname``, or a qualname); entries unused for ``older_than``
    seconds; then least recently used entries until the disk store holds at most ``max_size``
    bytes. ``progress(done, total)`` is called as entries are removed. A remote tier is left
    alone (other machines share it).

    Entries being read are safe: see :mod:`compilecache.stores._disk_maintenance`.
    Raises :class:`CacheUsageError` when ``store`` has no disk store.
    """
    local = store.maintenance()
    if local is None:
        raise CacheUsageError("prune works on a local disk store, and this store has none")
    if not local.writable:
        raise CacheUsageError(
            f"the local store in {local.root} is configured read-only: nothing was pruned"
        )
    now = time.time() if now is None else now
    listed = stored_entries(store)
    manifests = {entry.key for entry in listed}
    orphans = [
        row
        for row in local.entries()
        if row.key.startswith(ARTIFACTS)
        and row.key[len(ARTIFACTS) :] not in manifests
        and now - row.created > ORPHAN_GRACE
    ]
    doomed: list[StoredEntry] = []
    kept: list[StoredEntry] = []
    for entry in listed:
        last = entry.last_used or entry.created or now
        if (
            function is not None and function in (entry.function, entry.function.split(":")[-1])
        ) or (older_than is not None and now - last > older_than):
            doomed.append(entry)
        else:
            kept.append(entry)
    total = (local.stats().size or 0) - sum(row.size for row in orphans)
    total -= sum(entry.size for entry in doomed)
    if max_size is not None:
        kept.sort(key=lambda e: e.last_used or e.created or 0.0)  # least recently used first
        while kept and total > max_size:
            entry = kept.pop(0)
            total -= entry.size
            doomed.append(entry)
        if total > max_size:  # still over: young orphans too (a writer mid-way recompiles)
            young = [
                row
                for row in local.entries()
                if row.key.startswith(ARTIFACTS)
                and row.key[len(ARTIFACTS) :] not in manifests
                and row not in orphans
            ]
            orphans += young
            total -= sum(row.size for row in young)
    report = PruneReport(kept=len(kept), size_after=max(total, 0), orphans=len(orphans))
    if orphans:
        local.delete_many([row.key for row in orphans])
        report.freed = sum(row.size for row in orphans)
    for done, entry in enumerate(doomed, 1):
        # The manifest and the artifact in one transaction: the manifest is what publishes.
        local.delete_many([layout.manifest_key(entry.key), layout.artifact_key(entry.key)])
        report.removed += 1
        report.freed += entry.size
        if progress is not None:
            progress(done, len(doomed))
    return report

"""``verify``: check every entry of a disk store, and quarantine the bad ones.

Three checks, in order, each on what the previous one passed:

1. the frame: magic, tag, version, length and checksum (a truncated or corrupt entry);
2. the codecs of the configured store: the signature (a forged entry, or one signed with
   another secret) and decompression;
3. entries as a whole: a manifest that parses, names its own key, and whose artifact exists
   and has the size and SHA-256 the manifest records.

A bad value is moved to ``<store>/quarantine/`` (its bytes and a note of why) and removed from
the store, so the next compile replaces it; quarantined files are never read again. When
*every* signed entry fails its signature, the secret is more likely wrong than the entries:
then nothing is quarantined for its signature (a wrong secret must not empty a cache).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import CacheUsageError, CorruptEntryError, RejectedEntryError
from ..stores import Maintenance
from . import _layout as layout
from ._inventory import MANIFESTS
from ._manifest import Manifest, ManifestError


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    inconsistent: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    secret_suspect: bool = False
    #: The local store is read-only (behind a ``ReadOnly`` view): nothing is quarantined.
    read_only: bool = False
    #: Each recovery from a damaged index since the last verify that quarantined: what was
    #: re-adopted from payload files and what was lost (``DiskStore.damage_records``).
    index_damage: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bad_entries(self) -> int:
        return len(self.corrupt) + len(self.rejected) + len(self.inconsistent)

    @property
    def bad(self) -> int:
        """Bad entries, and damage to the index (entries lost with it)."""
        return self.bad_entries + len(self.index_damage)

    def as_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "corrupt": [{"key": k, "reason": r} for k, r in self.corrupt],
            "rejected": [{"key": k, "reason": r} for k, r in self.rejected],
            "inconsistent": [{"key": k, "reason": r} for k, r in self.inconsistent],
            "quarantined": self.quarantined,
            "secret_suspect": self.secret_suspect,
            "read_only": self.read_only,
            "index_damage": self.index_damage,
        }


def verify_store(
    store: Any,
    *,
    quarantine: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify every entry of the disk store in ``store`` (see the module docstring).

    Raises :class:`CacheUsageError` when ``store`` has no disk store.
    """
    local = store.maintenance()
    if local is None:
        raise CacheUsageError("verify checks a local disk store, and this store has none")
    report = VerifyReport(index_damage=local.damage_records(), read_only=not local.writable)
    keys = sorted(local.keys())
    values: dict[str, bytes] = {}
    rows: dict[str, Any] = {}  # the very row each value was read from
    signed_ok = 0
    for done, key in enumerate(keys, 1):
        read = local.read_raw(key)
        payload, problem = read.payload, read.problem
        if read.row is None:
            continue  # removed meanwhile
        rows[key] = read.row
        report.checked += 1
        if problem is not None:
            report.corrupt.append((key, problem))
        else:
            assert payload is not None
            try:
                values[key] = local.decode(key, payload)
                signed_ok += 1
            except RejectedEntryError as error:
                report.rejected.append((key, str(error)))
            except CorruptEntryError as error:
                report.corrupt.append((key, str(error)))
        if progress is not None:
            progress(done, len(keys))
    for key, value in values.items():
        if key.startswith(MANIFESTS):
            digest = key[len(MANIFESTS) :]
            problem = _entry_problem(digest, value, values.get(layout.artifact_key(digest)))
            if problem is not None:
                report.inconsistent.append((key, problem))
    report.ok = report.checked - report.bad_entries
    if report.rejected and not signed_ok:
        report.secret_suspect = True
    if quarantine and local.writable:
        _quarantine(local, report, values, rows)
        if report.index_damage:  # reported once: the record joins the quarantined entries
            moved = local.set_aside_damage_record()
            if moved is not None:
                report.quarantined.append(str(moved))
    return report


def _quarantine(
    local: Maintenance, report: VerifyReport, values: dict[str, bytes], rows: dict[str, Any]
) -> None:
    doomed = report.corrupt + report.inconsistent
    if not report.secret_suspect:
        doomed = doomed + report.rejected
    for key, reason in doomed:
        moved = local.quarantine(key, reason, rows[key])
        if moved is not None:
            report.quarantined.append(str(moved))
        if key.startswith(MANIFESTS):  # its artifact is unusable without it
            artifact = layout.artifact_key(key[len(MANIFESTS) :])
            if artifact in values:
                why = f"its manifest was quarantined: {reason}"
                local.quarantine(artifact, why, rows[artifact])


def _entry_problem(digest: str, manifest_bytes: bytes, artifact: bytes | None) -> str | None:
    try:
        manifest = Manifest.from_bytes(manifest_bytes, digest)
    except ManifestError as error:
        return str(error)
    if artifact is None:
        return "its artifact is missing"
    try:
        manifest.check_artifact(artifact)
    except ManifestError as error:
        return str(error)
    return None


def quarantine_dir(store: Any) -> Path | None:
    local = store.maintenance()
    return None if local is None else local.quarantine_dir

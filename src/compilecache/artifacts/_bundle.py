"""Bundles: stored entries packed into one file, to carry a warm cache to another machine.

Layout::

    b"\\x89CCBUNDLE\\n"            magic (10 bytes)
    u64 big-endian                header length H
    H bytes                       header (JSON): format, environment, signed, entries
                                  [{key, manifest, artifact (sizes), manifest_sha256,
                                  artifact_sha256, function}]
    ...                           each entry's manifest then artifact bytes, in header order
    32 bytes (when signed)        HMAC-SHA256 of everything before, with COMPILECACHE_SECRET

Import checks everything before writing anything: the magic, the header's bounds, the
signature, every size and digest, every manifest against its key; then entries built for
another Python or platform, or already present, are skipped with a reason, and the rest are
written in one batch (one transaction on the disk store). A bad bundle raises
:class:`BundleError` and leaves the store as it was. Nothing in a bundle is a file path: keys
are hex digests, checked as such, so a bundle cannot write outside the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mmap
import os
import re
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import CacheUsageError
from ..keys._key import environment_component
from ..stores import BaseStore
from . import _layout as layout
from ._manifest import Manifest, ManifestError

MAGIC = b"\x89CCBUNDLE\n"
FORMAT = 1
MAX_HEADER = 16 << 20
MAX_ENTRIES = 100_000
_KEY = re.compile(r"[0-9a-f]{64}\Z")
_LENGTH = struct.Struct(">Q")


class BundleError(CacheUsageError):
    """A bundle that cannot be imported (truncated, forged, malformed): nothing was imported."""


@dataclass
class BundleReport:
    """What an export or import did: keys written, and keys skipped with the reason."""

    path: str
    imported: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    exported: list[str] = field(default_factory=list)
    bytes: int = 0

    def __str__(self) -> str:
        lines = [f"bundle {self.path}: {self.bytes} bytes"]
        if self.exported:
            lines.append(f"  exported {len(self.exported)} entries")
        if self.imported or self.skipped:
            lines.append(f"  imported {len(self.imported)}, skipped {len(self.skipped)}")
        lines.extend(f"    skipped {key[:16]}: {reason}" for key, reason in self.skipped)
        return "\n".join(lines)


def _environment() -> dict[str, Any]:
    summary = environment_component(None).summary
    return {k: v for k, v in summary.items() if k != "packages"}


def _secret_bytes(secret: bytes | str | None) -> bytes | None:
    if secret is None:
        return None
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def export_bundle(
    path: str | os.PathLike[str],
    *,
    store: BaseStore,
    functions: list[str] | None = None,
    secret: bytes | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BundleReport:
    """Write the entries of ``store`` (those of ``functions``, ``module:qualname`` names, if
    given) into the bundle file ``path``, atomically; sign it with ``secret`` if given.
    ``progress(done, total)`` is called per stored entry examined."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    names = sorted(n for n in store.keys() if n.startswith(f"{layout.PREFIX}/m/"))
    for done, name in enumerate(names, 1):
        if progress is not None:
            progress(done, len(names))
        key = name.rsplit("/", 1)[1]
        manifest_bytes = store.get(name)
        artifact = store.get(layout.artifact_key(key))
        if manifest_bytes is None or artifact is None:
            continue
        try:
            manifest = Manifest.from_bytes(manifest_bytes, key)
            manifest.check_artifact(artifact)
        except ManifestError:
            continue  # a broken entry is not worth carrying
        if functions is not None and manifest.function not in functions:
            continue
        entries.append(
            {
                "key": key,
                "function": manifest.function,
                "manifest": len(manifest_bytes),
                "artifact": len(artifact),
                "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                "artifact_sha256": hashlib.sha256(artifact).hexdigest(),
            }
        )
        blobs += [manifest_bytes, artifact]
    key_bytes = _secret_bytes(secret)
    header = json.dumps(
        {
            "format": FORMAT,
            "created": time.time(),
            "environment": _environment(),
            "signed": key_bytes is not None,
            "entries": entries,
        },
        sort_keys=True,
    ).encode()
    body = MAGIC + _LENGTH.pack(len(header)) + header + b"".join(blobs)
    if key_bytes is not None:
        body += hmac.new(key_bytes, body, hashlib.sha256).digest()
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(body)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return BundleReport(str(target), exported=[e["key"] for e in entries], bytes=len(body))


def import_bundle(
    path: str | os.PathLike[str],
    *,
    store: BaseStore,
    secret: bytes | str | None = None,
    previous_secret: bytes | str | None = None,
    max_bytes: int = 8 << 30,
    progress: Callable[[int, int], None] | None = None,
) -> BundleReport:
    """Import the bundle at ``path`` into ``store`` (see the module docstring).

    With ``secret``, the bundle must be signed with it, or with ``previous_secret`` (the secret
    before a rotation, ``COMPILECACHE_SECRET_PREVIOUS``). Raises :class:`BundleError` naming
    what is wrong; nothing is written then.
    """
    source = Path(path)
    try:
        size = source.stat().st_size
    except OSError as error:
        raise BundleError(f"cannot read bundle {str(source)!r}: {error}") from None
    if size > max_bytes:
        raise BundleError(f"bundle {source} is {size} bytes, over the {max_bytes}-byte limit")
    # Mapped, not read: slices of a memoryview are views, so a large bundle is not copied
    # while it is checked; only the entries written become bytes.
    with open(source, "rb") as file:
        if size == 0:
            raise BundleError(f"{source} is not a compilecache bundle (bad magic bytes)")
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    # Not closed explicitly: views into it may still be referenced by an exception's traceback
    # (closing then raises BufferError over the real error); it is unmapped when collected.
    secrets = [s for s in (_secret_bytes(secret), _secret_bytes(previous_secret)) if s]
    return _import(memoryview(mapped), source, store, secrets, progress)


def _import(
    data: memoryview,
    source: Path,
    store: BaseStore,
    secrets: list[bytes],
    progress: Callable[[int, int], None] | None = None,
) -> BundleReport:
    header, body = _parse(data, secrets, source)
    report = BundleReport(str(source), bytes=data.nbytes)
    here = _environment()
    writes: dict[str, bytes] = {}
    offset = 0
    for done, entry in enumerate(header["entries"], 1):
        if progress is not None:
            progress(done, len(header["entries"]))
        key = entry["key"]
        manifest_bytes = body[offset : offset + entry["manifest"]]
        offset += entry["manifest"]
        artifact = body[offset : offset + entry["artifact"]]
        offset += entry["artifact"]
        if hashlib.sha256(manifest_bytes).hexdigest() != entry["manifest_sha256"]:
            raise BundleError(f"bundle {source}: entry {key[:16]} manifest digest mismatch")
        if hashlib.sha256(artifact).hexdigest() != entry["artifact_sha256"]:
            raise BundleError(f"bundle {source}: entry {key[:16]} artifact digest mismatch")
        try:
            manifest = Manifest.from_bytes(bytes(manifest_bytes), key)
            if len(artifact) != manifest.artifact_size or (
                hashlib.sha256(artifact).hexdigest() != manifest.artifact_sha256
            ):
                raise ManifestError("artifact does not match its manifest")
        except ManifestError as error:
            raise BundleError(f"bundle {source}: entry {key[:16]}: {error}") from None
        built = (manifest.components.get("environment") or {}).get("summary") or {}
        mismatch = [
            f"{name} {built.get(name)} (here {value})"
            for name, value in here.items()
            if built.get(name) != value
        ]
        if mismatch:
            report.skipped.append((key, "built for " + ", ".join(mismatch)))
            continue
        if store.get(layout.manifest_key(key)) is not None:
            report.skipped.append((key, "already in the store"))
            continue
        writes[layout.artifact_key(key)] = bytes(artifact)
        writes[layout.manifest_key(key)] = bytes(manifest_bytes)
        report.imported.append(key)
    if writes:
        store.put_many(writes)
    return report


def _parse(
    data: memoryview, secrets: list[bytes], source: Path
) -> tuple[dict[str, Any], memoryview]:
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise BundleError(f"{source} is not a compilecache bundle (bad magic bytes)")
    start = len(MAGIC) + _LENGTH.size
    if data.nbytes < start:
        raise BundleError(f"bundle {source} is truncated (no header)")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    if length > MAX_HEADER or start + length > data.nbytes:
        raise BundleError(f"bundle {source} is truncated or its header length is implausible")
    try:
        header = json.loads(bytes(data[start : start + length]))
    except ValueError:
        raise BundleError(f"bundle {source}: the header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BundleError(f"bundle {source}: unknown bundle format")
    signed = header.get("signed") is True
    end = data.nbytes
    if signed:
        end -= 32
        if end < start + length:
            raise BundleError(f"bundle {source} is truncated (no signature)")
    entries = header.get("entries")
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise BundleError(f"bundle {source}: the entry list is malformed")
    total = 0
    for entry in entries:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and _KEY.match(entry["key"])
            and all(type(entry.get(k)) is int and entry[k] >= 0 for k in ("manifest", "artifact"))
            and all(isinstance(entry.get(k), str) for k in ("manifest_sha256", "artifact_sha256"))
        ):
            raise BundleError(f"bundle {source}: a malformed entry ({str(entry)[:80]})")
        total += entry["manifest"] + entry["artifact"]
    body = data[start + length : end]
    if total != len(body):
        raise BundleError(
            f"bundle {source} is truncated or padded: entries need {total} bytes, it has "
            f"{len(body)}"
        )
    if secrets:
        if not signed:
            raise BundleError(
                f"bundle {source} is not signed, and COMPILECACHE_SECRET requires signed bundles"
            )
        tag = bytes(data[end:])
        if not any(
            hmac.compare_digest(hmac.new(secret, data[:end], hashlib.sha256).digest(), tag)
            for secret in secrets
        ):
            raise BundleError(
                f"bundle {source}: the signature does not verify (forged, altered, or signed "
                "with another secret)"
            )
    return header, body

"""The bytes of a torch entry: a short header (what kind, why) and the payload.

``CCTORCH1\n``, a 4-byte big-endian header length, a JSON header
(``{"mode": "aot"|"jit", "fallback": reason or null, "export fails": bool, "kwargs": [...],
"flat": bool}``; ``export fails``: the fallback holds for every shape), then the
payload: an AOTInductor ``.pt2`` package, or torch's cache artifacts. The store's frame already
checks integrity; this only says how to read what it carries.
"""

from __future__ import annotations

import json
import struct
from typing import Any

MAGIC = b"CCTORCH1\n"


class TorchArtifactError(ValueError):
    """Bytes that are not a torch entry this version can read."""


def pack(header: dict[str, Any], payload: bytes | memoryview) -> bytes:
    text = json.dumps(header, sort_keys=True).encode()
    return b"".join((MAGIC, struct.pack(">I", len(text)), text, payload))


def unpack(data: bytes) -> tuple[dict[str, Any], memoryview]:
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise TorchArtifactError("not a compilecache torch artifact (bad magic)")
    start = len(MAGIC) + 4
    if len(view) < start:
        raise TorchArtifactError("torch artifact truncated in its header")
    (size,) = struct.unpack(">I", view[len(MAGIC) : start])
    try:
        header = json.loads(bytes(view[start : start + size]))
    except ValueError as error:
        raise TorchArtifactError(f"torch artifact header is not JSON: {error}") from None
    if not isinstance(header, dict) or header.get("mode") not in ("aot", "jit"):
        raise TorchArtifactError(f"torch artifact header is malformed: {header!r:.100}")
    return header, view[start + size :]

"""The bytes of a torch entry: a short header (what kind, why) and the payload.

``CCTORCH1\n``, a 4-byte big-endian header length, a JSON header, then the payload.

- AOT: ``{"mode": "aot", "kwargs": [...], "tensor kwargs": [...], "flat": bool,
  "constants": {package name: module name}, "captured bytes": n,
  "int outputs": [position]}``; the payload is ``n`` bytes of the constants forward itself
  made (``torch.save`` of ``{package name: tensor}``, read back with ``weights_only=True``),
  then the AOTInductor ``.pt2`` package.
- AOT training: ``{"mode": "aot-train", "layout": {...}, "forward bytes": n}`` (the
  layout: ``_train_capture.TrainLayout``); the payload is the forward package (``n`` bytes),
  then the backward package.
- JIT: ``{"mode": "jit", "fallback": reason or null, "export fails": bool}`` (``export
  fails``: the fallback holds for every shape); the payload is torch's cache artifacts.

The store's frame already checks integrity; this only says how to read what it carries.
"""

from __future__ import annotations

import io
import json
import struct
from typing import TYPE_CHECKING, Any

from .._errors import CacheError

if TYPE_CHECKING:
    from ._aot_runner import CallLayout
    from ._train_capture import TrainLayout

MAGIC = b"CCTORCH1\n"


class TorchArtifactError(CacheError, ValueError):
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
    if not isinstance(header, dict) or header.get("mode") not in ("aot", "aot-train", "jit"):
        raise TorchArtifactError(f"torch artifact header is malformed: {header!r:.100}")
    return header, view[start + size :]


def layout_header(layout: CallLayout) -> tuple[dict[str, Any], bytes]:
    """The header of an AOT entry with ``layout``, and the bytes of its captured constants."""
    captured = b""
    if layout.captured:
        import torch

        buffer = io.BytesIO()
        torch.save({name: t.detach().cpu() for name, t in layout.captured.items()}, buffer)
        captured = buffer.getvalue()
    header = {
        "mode": "aot",
        "fallback": None,
        "kwargs": list(layout.kwarg_order),
        "tensor kwargs": list(layout.tensor_kwargs),
        "flat": layout.flat,
        "constants": layout.constant_names,
        "captured bytes": len(captured),
        "captured devices": {name: str(t.device) for name, t in layout.captured.items()},
        "int outputs": list(layout.int_outputs),
    }
    return header, captured


def read_layout(header: dict[str, Any], payload: memoryview) -> tuple[CallLayout, memoryview]:
    """The layout an AOT entry's header describes, and its package's bytes."""
    from ._aot_runner import CallLayout

    kwargs = _names(header.get("kwargs") or [], "kwargs")
    tensor_kwargs = header.get("tensor kwargs")
    names = header.get("constants") or {}
    size = header.get("captured bytes") or 0
    devices = header.get("captured devices") or {}
    ints = header.get("int outputs") or []
    if not isinstance(ints, list) or not all(type(i) is int and i >= 0 for i in ints):
        raise TorchArtifactError("torch artifact int outputs are malformed")
    if not isinstance(names, dict) or not isinstance(devices, dict):
        raise TorchArtifactError("torch artifact constants are malformed")
    if type(size) is not int or not 0 <= size <= len(payload):
        raise TorchArtifactError("torch artifact captured constants are malformed")
    captured: dict[str, Any] = {}
    if size:
        import torch

        try:
            loaded = torch.load(io.BytesIO(bytes(payload[:size])), weights_only=True)
        except Exception as error:
            raise TorchArtifactError(f"torch artifact captured constants: {error}") from None
        if not isinstance(loaded, dict):
            raise TorchArtifactError("torch artifact captured constants are malformed")
        captured = {str(k): v.to(str(devices.get(k, "cpu"))) for k, v in loaded.items()}
    layout = CallLayout(
        kwarg_order=kwargs,
        # Entries written before tensor kwargs were recorded had tensors only.
        tensor_kwargs=kwargs if tensor_kwargs is None else _names(tensor_kwargs, "tensor kwargs"),
        flat=bool(header.get("flat", True)),
        constant_names={str(k): str(v) for k, v in names.items()},
        captured=captured,
        int_outputs=tuple(ints),
    )
    return layout, payload[size:]


def train_header(layout: TrainLayout, forward: bytes) -> dict[str, Any]:
    """The header of a training entry (its payload: ``forward`` then the backward package)."""
    return {"mode": "aot-train", "layout": layout.to_json(), "forward bytes": len(forward)}


def read_train(header: dict[str, Any], payload: memoryview) -> tuple[TrainLayout, bytes, bytes]:
    """The layout and the forward and backward packages of a training entry."""
    from ._train_capture import TrainLayout

    size = header.get("forward bytes")
    if type(size) is not int or not 0 < size < len(payload):
        raise TorchArtifactError("torch training artifact's package sizes are malformed")
    try:
        layout = TrainLayout.from_json(header.get("layout"))
    except (TypeError, ValueError) as error:
        raise TorchArtifactError(
            f"torch training artifact's layout is malformed: {error}"
        ) from None
    return layout, bytes(payload[:size]), bytes(payload[size:])


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TorchArtifactError(f"torch artifact {what} are malformed")
    return tuple(value)

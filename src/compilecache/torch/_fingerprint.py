"""The key of a torch module: its structure, never its weights.

A module is keyed by what the compiled code is specialized on: each submodule's class (user
classes by their code, transitively; torch's by torch's version), its non-tensor attributes
(hyperparameters such as ``eps``, ``num_heads``, dropout ``p``, the ``training`` flag), its
forward hooks, and the names, shapes, dtypes, devices and ``requires_grad`` of its parameters
and buffers. Weight *values* are not keyed: compiled packages bind the live tensors at load.
Plain tensor attributes (not parameters or buffers) are compiled in as constants, so they are
keyed by value. Each submodule is recorded as its own dependency, so that a miss names the
submodule that changed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ..keys import Unfingerprintable

# Bookkeeping of nn.Module that does not change what forward computes.
_SKIPPED = frozenset(
    {
        "_parameters",
        "_buffers",
        "_modules",
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_load_state_dict_pre_hooks",
        "_load_state_dict_post_hooks",
        "_compiled_call_impl",
    }
)


def tensor_meta(tensor: torch.Tensor | None) -> tuple[Any, ...] | None:
    if tensor is None:
        return None
    return (
        tuple(tensor.shape),
        str(tensor.dtype),
        str(tensor.device),
        bool(tensor.requires_grad),
        tuple(tensor.stride()),
    )


def _tensor_value(tensor: torch.Tensor, where: str) -> bytes:
    try:
        data = tensor.detach().cpu().contiguous().reshape(-1)  # 0-dim tensors too
        raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
    except Exception as error:  # an exotic dtype or layout numpy cannot hold
        raise Unfingerprintable(f"{where}: a tensor whose value cannot be read ({error})") from None
    return repr(tensor_meta(tensor)).encode() + hashlib.sha256(raw).digest()


def module_fingerprint(module: torch.nn.Module, walker: Any) -> bytes:
    """The structural fingerprint of ``module`` (see the module docstring); each submodule is
    recorded on ``walker`` as a dependency named after its path."""
    parts = [_sharing(module)]
    root = type(module).__qualname__
    for path, sub in module.named_modules(remove_duplicate=False):
        body = _submodule(sub, path or "(root)", walker)
        name = f"module {root}.{path}" if path else f"module {root}"
        walker.add(name, "module", type(sub).__qualname__, body)
        parts.append(path.encode() + b"\0" + hashlib.sha256(body).digest())
    return b"".join(parts)


def _sharing(module: torch.nn.Module) -> bytes:
    """Which parameters, buffers and submodules are one object under several names (tied
    weights): a package compiled for tied weights holds one constant for both."""
    first: dict[int, str] = {}
    aliases = []
    named = [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
        *module.named_modules(remove_duplicate=False),
    ]
    for name, value in named:
        seen = first.setdefault(id(value), name)
        if seen != name:
            aliases.append(f"{name}={seen}")
    return ("shared " + ",".join(aliases)).encode()


def _submodule(sub: torch.nn.Module, path: str, walker: Any) -> bytes:
    parts = [walker.class_digest(type(sub))]
    for name, param in sub._parameters.items():
        parts.append(f"param {name} {tensor_meta(param)}".encode())
    non_persistent: set[str] = getattr(sub, "_non_persistent_buffers_set", set())
    for name, buffer in sub._buffers.items():
        persistent = name not in non_persistent
        parts.append(f"buffer {name} {tensor_meta(buffer)} {persistent}".encode())
    for name, child in sub._modules.items():
        parts.append(f"child {name} {type(child).__qualname__ if child else None}".encode())
    for name, raw in sorted(vars(sub).items()):
        value = raw
        if name in _SKIPPED:
            continue
        where = f"attribute {name} of submodule {path} ({type(sub).__qualname__})"
        if isinstance(value, torch.Tensor):
            parts.append(f"tensor {name}".encode() + _tensor_value(value, where))
            continue
        if name.endswith("hooks") or name.endswith("hooks_with_kwargs"):
            value = list(raw.values()) if hasattr(raw, "values") else raw
        elif name == "_forward_hooks_always_called":
            value = dict(raw)
        try:
            parts.append(name.encode() + b"=" + walker.encode(value, where))
        except Unfingerprintable as error:
            raise Unfingerprintable(
                f"{error.reason}: make it a constant, a parameter or a buffer, or pass it as "
                "an input"
            ) from None
    return b"\n".join(parts)

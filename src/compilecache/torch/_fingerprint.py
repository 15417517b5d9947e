"""The key of a torch module: its structure, never its weights.

A module is keyed by what the compiled code is specialized on: each submodule's class (user
classes by their code, transitively; torch's by torch's version), its non-tensor attributes
(hyperparameters such as ``eps``, ``num_heads``, dropout ``p``, the ``training`` flag), its
forward hooks, and the names, shapes, dtypes, devices and ``requires_grad`` of its parameters
and buffers. Weight *values* are not keyed: compiled packages bind the live tensors at load.
Plain tensor attributes (not parameters or buffers) are compiled in as constants, so they are
keyed by value. Other objects a module holds (a model's configuration) are keyed as data (see
:mod:`compilecache.keys._objects`). Each submodule is recorded as its own dependency, so that a
miss names the submodule that changed.

``key_ignore`` paths (``"config.name_or_path"``, ``"tokenizer"``) leave attributes out of the
key: the user's assertion that they cannot change the compiled code.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from .._errors import CacheUsageError
from ..keys import Unfingerprintable
from ..keys._objects import reader_for

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


class ModelKey:
    """What a compiled model's adapter holds: the module, and the attribute paths its key
    leaves out. Keyed as the module's fingerprint without those attributes."""

    __slots__ = ("ignore", "module")

    def __init__(self, module: torch.nn.Module, ignore: tuple[str, ...] = ()) -> None:
        self.module = module
        self.ignore = ignore
        resolve_ignored(module, ignore)  # a path that names nothing is a usage error now


def model_key_fingerprint(handle: ModelKey, walker: Any) -> bytes:
    for owner, field in resolve_ignored(handle.module, handle.ignore, strict=False):
        walker.ignore(owner, field)
    ignored = ("ignored " + ",".join(sorted(handle.ignore))).encode()
    return ignored + b"\n" + module_fingerprint(handle.module, walker)


def resolve_ignored(
    module: torch.nn.Module, paths: tuple[str, ...], *, strict: bool = True
) -> list[tuple[Any, str]]:
    """``(owner, field)`` for each dotted path from ``module``: each step a submodule, an
    attribute or a mapping's key. A path that names nothing raises :class:`CacheUsageError`
    (``strict``) or is skipped (the attribute went away since: nothing to leave out)."""
    found = []
    for path in paths:
        steps = path.split(".") if isinstance(path, str) and path else []
        if not steps or not all(steps):
            raise CacheUsageError(f"key_ignore: {path!r} is not a dotted attribute path")
        owner: Any = module
        parent: Any = module
        try:
            for step in steps:
                parent, owner = owner, _step(owner, step)
        except LookupError:
            if strict:
                raise CacheUsageError(
                    f"key_ignore: {path!r} names nothing on {type(module).__qualname__} "
                    f"(no stored attribute {step!r} there: a path steps through submodules "
                    "and stored attributes, not properties or keys of a dict); give the "
                    'path a bypass warning names, such as "tokenizer.lock"'
                ) from None
            continue
        found.append((parent, steps[-1]))
    return found


def _step(owner: Any, step: str) -> Any:
    """One step of a key_ignore path: a submodule, an attribute stored on the object, or an
    item of a mapping keyed through its items (a diffusers FrozenDict). Not a property, nor a
    key of a plain dict: those name no field of the state that is keyed."""
    children = getattr(owner, "_modules", None)
    if isinstance(children, dict) and step in children:
        return children[step]
    reader = reader_for(type(owner))
    if reader is not None and reader.read is not None:
        state = reader.read(owner)
        if step in state:
            return state[step]
        raise LookupError(step)
    stored = getattr(owner, "__dict__", None)
    if isinstance(stored, dict) and step in stored:
        return stored[step]
    raise LookupError(step)


def _resolves(owner: Any, path: str) -> bool:
    try:
        for step in path.split("."):
            owner = _step(owner, step)
    except LookupError:
        return False
    return True


def module_fingerprint(module: torch.nn.Module, walker: Any) -> bytes:
    """The structural fingerprint of ``module`` (see the module docstring); each submodule is
    recorded on ``walker`` as a dependency named after its path."""
    parts = [_sharing(module)]
    root = type(module).__qualname__
    for path, sub in module.named_modules(remove_duplicate=False):
        body = _submodule(sub, path, walker)
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
    reader = reader_for(type(sub))
    local = reader.excluded if reader is not None else frozenset()
    for name, raw in sorted(vars(sub).items()):
        value = raw
        if name in _SKIPPED or name in local:
            continue
        where = f"{path}.{name}" if path else name
        if walker.is_ignored(sub, name):
            parts.append(f"ignored {name}".encode())
            continue
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
            path_of = error.where or where
            inner = path_of[len(path) + 1 :] if path else path_of
            if path_of != where and not _resolves(sub, inner):
                path_of = where  # reached through a container: leave out the attribute
            raise Unfingerprintable(
                f"model attribute {error.reason}. Make it a constant, a parameter or a buffer, "
                "or pass it as an input; or, if it cannot change the compiled code, leave it "
                f'out of the key: compile(model, key_ignore=("{path_of}",))',
                where=path_of,
            ) from None
    return b"\n".join(parts)

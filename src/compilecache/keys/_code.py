"""Fingerprints of code objects, and what each code loads, cached per code object.

A code fingerprint covers what the code does: bytecode, constants (nested code recursively),
names, variable names, argument counts, flags, exception table. It leaves out line numbers and
positions, so moving a function or editing a comment above it keeps its fingerprint.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import threading
import types
import weakref
from dataclasses import dataclass
from typing import Any

from ._canonical import encode

_lock = threading.Lock()
_digests: dict[int, tuple[weakref.ref[types.CodeType], bytes]] = {}
_loads: dict[int, tuple[weakref.ref[types.CodeType], CodeLoads]] = {}


@dataclass(frozen=True)
class CodeLoads:
    """The globals a code object (and code nested in it) loads, and ``global.attribute`` pairs
    it reads (``layers.attention``: a helper reached through a module)."""

    globals: tuple[str, ...]
    attributes: tuple[tuple[str, str], ...]


def _cached(
    table: dict[int, tuple[weakref.ref[types.CodeType], object]], code: types.CodeType
) -> object:
    found = table.get(id(code))
    if found is not None and found[0]() is code:
        return found[1]
    return None


def _remember(
    table: dict[int, tuple[weakref.ref[types.CodeType], object]],
    code: types.CodeType,
    value: object,
) -> None:
    key = id(code)
    table[key] = (weakref.ref(code, functools.partial(_forget, table, key)), value)


def _forget(table: dict[int, Any], key: int, _ref: object) -> None:
    table.pop(key, None)


def code_digest(code: types.CodeType) -> bytes:
    """SHA-256 of the canonical encoding of ``code``'s behaviour (not its line numbers)."""
    with _lock:
        cached = _cached(_digests, code)  # type: ignore[arg-type]
    if cached is not None:
        return cached  # type: ignore[return-value]
    parts = (
        code.co_name,
        getattr(code, "co_qualname", code.co_name),
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        getattr(code, "co_exceptiontable", b""),
    )
    body = encode(parts) + encode(code.co_consts, _nested)
    digest = hashlib.sha256(body).digest()
    with _lock:
        _remember(_digests, code, digest)  # type: ignore[arg-type]
    return digest


def _nested(value: object) -> bytes:
    if isinstance(value, types.CodeType):
        return code_digest(value)
    raise TypeError(f"unexpected {type(value).__name__} among code constants")


def code_loads(code: types.CodeType) -> CodeLoads:
    """The globals and global attributes ``code`` and its nested code load (cached)."""
    with _lock:
        cached = _cached(_loads, code)  # type: ignore[arg-type]
    if cached is not None:
        return cached  # type: ignore[return-value]
    names: dict[str, None] = {}
    attributes: dict[tuple[str, str], None] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        previous_global: str | None = None
        for instruction in dis.get_instructions(current):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                previous_global = str(instruction.argval).removeprefix("NULL + ")
                names.setdefault(previous_global)
                continue
            if previous_global is not None and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                attribute = str(instruction.argval).removeprefix("NULL|self + ")
                attributes.setdefault((previous_global, attribute))
            previous_global = None
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    loads = CodeLoads(tuple(names), tuple(attributes))
    with _lock:
        _remember(_loads, code, loads)  # type: ignore[arg-type]
    return loads

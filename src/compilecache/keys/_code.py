"""Fingerprints of code objects, and what each code loads, cached per code object.

A code fingerprint covers what the code does: bytecode, constants (nested code recursively),
names, variable names, argument counts, flags, exception table. It leaves out line numbers and
positions, so moving a function or editing a comment above it keeps its fingerprint.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import sys
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
    """The globals a code object (and code nested in it) loads, and the attribute chains it
    reads from them (``("layers", "attention")``: a helper reached through a module)."""

    globals: tuple[str, ...]
    attributes: tuple[tuple[str, ...], ...]


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
    # These fields hold only str, int and tuples of str: their repr is canonical, and much
    # cheaper than the general encoding (this runs for every function a key reaches).
    plain = (
        code.co_name,
        getattr(code, "co_qualname", code.co_name),
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )
    hasher = hashlib.sha256(repr(plain).encode())
    hasher.update(code.co_code)
    hasher.update(getattr(code, "co_exceptiontable", b""))
    hasher.update(encode(code.co_consts, _nested))
    digest = hasher.digest()
    with _lock:
        _remember(_digests, code, digest)  # type: ignore[arg-type]
    return digest


def _nested(value: object) -> bytes:
    if isinstance(value, types.CodeType):
        return code_digest(value)
    raise TypeError(f"unexpected {type(value).__name__} among code constants")


_NAME_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_ATTR", "LOAD_METHOD"}
# Where the name index sits in the argument: LOAD_GLOBAL (3.11+) and LOAD_ATTR (3.12+) keep a
# flag in the low bit.
_SHIFTED = {"LOAD_GLOBAL"} if sys.version_info < (3, 12) else {"LOAD_GLOBAL", "LOAD_ATTR"}
if sys.version_info < (3, 11):
    _SHIFTED = set()


def _name_loads(code: types.CodeType) -> list[tuple[str, str]]:
    """(opname, name) of the instructions of ``code`` that load names, in order; every other
    instruction as ("", "") so that "a global followed by an attribute" stays adjacent."""
    unpack = getattr(dis, "_unpack_opargs", None)
    if unpack is None:  # a future Python without it: the public (slower) API
        return [
            (i.opname, str(i.argval).split(" + ")[-1]) if i.opname in _NAME_OPS else ("", "")
            for i in dis.get_instructions(code)
        ]
    found: list[tuple[str, str]] = []
    opnames = dis.opname
    for _offset, op, arg in unpack(code.co_code):
        opname = opnames[op]
        if opname in {"CACHE", "EXTENDED_ARG"}:
            continue
        if opname in _NAME_OPS and arg is not None:
            found.append((opname, code.co_names[arg >> 1 if opname in _SHIFTED else arg]))
        else:
            found.append(("", ""))
    return found


def code_loads(code: types.CodeType) -> CodeLoads:
    """The globals and global attributes ``code`` and its nested code load (cached)."""
    with _lock:
        cached = _cached(_loads, code)  # type: ignore[arg-type]
    if cached is not None:
        return cached  # type: ignore[return-value]
    names: dict[str, None] = {}
    attributes: dict[tuple[str, ...], None] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        chain: list[str] = []  # a global followed by attribute loads: pkg.sub.scale
        for opname, name in _name_loads(current):
            if opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                if len(chain) > 1:
                    attributes.setdefault(tuple(chain))
                chain = [name]
                names.setdefault(name)
                continue
            if chain and opname in ("LOAD_ATTR", "LOAD_METHOD"):
                chain.append(name)
                continue
            if len(chain) > 1:
                attributes.setdefault(tuple(chain))
            chain = []
        if len(chain) > 1:
            attributes.setdefault(tuple(chain))
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    loads = CodeLoads(tuple(names), tuple(attributes))
    with _lock:
        _remember(_loads, code, loads)  # type: ignore[arg-type]
    return loads

"""Guards written down as JSON data and read back without evaluating anything as code.

Each kind's stored fields are its row's in the guard-kind table
(:mod:`compilecache.dispatch._guard_kinds`); values and paths are written with explicit type
tags (:mod:`compilecache.dispatch._guard_values`).

Every value a guard compares against is written with an explicit type tag (``{"float":
"0x1.8p+1"}``, ``{"type": "numpy:ndarray"}``, ``{"torch_dtype": "float32"}``); reading resolves
types from modules already imported by walking attribute names, never by ``eval``. Guards that
cannot be written (an argument matched by the identity of an arbitrary object) raise
:class:`Unfingerprintable`: such a call is not persisted. Identity guards on globals and closure
values are written as "the current value": the key's dependency component already pins what
that value is, so on load the guard is re-armed with the live object.
"""

from __future__ import annotations

import json
from typing import Any

from ..dispatch._guard_kinds import ROWS
from ..dispatch._guard_values import GuardFormatError, dump_path, load_path
from ..dispatch._guards import Guard, GuardKind
from ..keys._canonical import Unfingerprintable


def dump_guard(guard: Guard) -> dict[str, Any]:
    """``guard`` as JSON data: its path, kind, depth and cost, and what its kind's row stores
    (raises :class:`Unfingerprintable` for a guard that cannot be stored)."""
    return {
        "path": dump_path(guard.path),
        "kind": guard.kind.value,
        "depth": guard.depth,
        "cost": guard.cost,
        **ROWS[guard.kind].dump(guard),
    }


def load_guard(data: Any, namespace: dict[str, Any], cells: tuple[Any, ...] | None) -> Guard:
    """Read a guard back; ``namespace`` and ``cells`` re-arm "current value" identity guards."""
    try:
        kind = GuardKind(data["kind"])
        path = load_path(data["path"])
        depth, cost = int(data["depth"]), int(data["cost"])
    except (KeyError, TypeError, ValueError) as error:
        raise GuardFormatError(f"bad guard {data!r:.120}: {error}") from None
    return Guard(path, kind, ROWS[kind].load(data, path, namespace, cells), depth, cost)


__all__ = ["GuardFormatError", "describe_stored_guard", "dump_guards", "load_guards"]


def dump_guards(guards: list[Guard]) -> list[dict[str, Any]]:
    return [dump_guard(guard) for guard in guards]


def load_guards(data: Any, namespace: dict[str, Any], cells: tuple[Any, ...] | None) -> list[Guard]:
    if not isinstance(data, list):
        raise GuardFormatError("stored guards are not a list")
    try:
        return [load_guard(item, namespace, cells) for item in data]
    except (GuardFormatError, Unfingerprintable):
        raise
    except Exception as error:  # any malformed detail: the entry is unusable, never half-read
        raise GuardFormatError(f"stored guards do not read back: {error!r}") from error


# -- reading stored guards as text (the command line; nothing is resolved or imported) -------
def describe_stored_guard(data: Any) -> str:
    """One stored guard in words, e.g. ``x: shape (None, 16)``, without resolving any type."""
    try:
        from ..dispatch._guards import path_text

        where = path_text(load_path(data["path"]))
    except Exception:
        where = json.dumps(data.get("path"), separators=(",", ":"))[:80]
    kind = str(data.get("kind", "?"))
    if data.get("current"):
        return f"{where}: {kind} the current value (pinned by the key's dependencies)"
    if "module" in data:
        return f"{where}: {kind} module {data['module']}"
    expected = data.get("expected")
    if kind == "strides" and isinstance(expected, list) and len(expected) == 2:
        expected = expected[1]  # (array family, strides)
    return f"{where}: {kind} {show_value(expected)}"


def show_value(data: Any) -> str:
    """A tagged stored value as text (``{"float": "0x1.8p+1"}`` -> ``1.5``)."""
    if isinstance(data, dict) and len(data) == 1:
        ((tag, body),) = data.items()
        simple = {"none": "None", "ellipsis": "...", "bool": str(body), "int": str(body)}
        if tag in simple:
            return simple[tag]
        if tag == "float" and isinstance(body, str):
            return repr(float.fromhex(body))
        if tag == "str":
            return repr(body)
        if tag in ("type", "torch_device", "numpy_dtype"):
            return str(body)
        if tag == "torch_dtype":
            return f"torch.{body}"
        if tag in ("tuple", "list", "set", "frozenset") and isinstance(body, list):
            inner = ", ".join(show_value(item) for item in body)
            return (
                f"({inner})"
                if tag == "tuple"
                else f"[{inner}]"
                if tag == "list"
                else f"{{{inner}}}"
            )
    if isinstance(data, list):
        items = ["*" if item is None else show_value(item) for item in data]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if data is None:
        return "None"
    if isinstance(data, (int, str, bool)):
        return str(data)
    return json.dumps(data, separators=(",", ":"))[:120]

"""Guards written down as JSON data and read back without evaluating anything as code.

Every value a guard compares against is written with an explicit type tag (``{"float":
"0x1.8p+1"}``, ``{"type": "numpy:ndarray"}``, ``{"torch_dtype": "float32"}``); reading resolves
types by importing a module and walking attribute names, never by ``eval``. Guards that cannot be
written (an argument matched by the identity of an arbitrary object) raise
:class:`Unfingerprintable`: such a call is not persisted. Identity guards on globals and closure
values are written as "the current value": the key's dependency component already pins what
that value is, so on load the guard is re-armed with the live object.
"""

from __future__ import annotations

import base64
import builtins
import enum
import json
import sys
import types
from typing import Any

from .._errors import CacheError
from ..dispatch._guards import Guard, GuardKind, Path
from ..keys._canonical import Unfingerprintable, qualified_name

K = GuardKind


class GuardFormatError(CacheError):
    """Stored guards that do not read back (unknown tag, unresolvable type): the entry is not
    used, never trusted half-read."""


# -- values ----------------------------------------------------------------------------------
def dump_value(value: Any) -> Any:
    kind = type(value)
    if value is None:
        return {"none": None}
    if value is Ellipsis:
        return {"ellipsis": None}
    if kind is bool:
        return {"bool": value}
    if kind is int:
        return {"int": str(value)}
    if kind is float:
        return {"float": value.hex()}
    if kind is complex:
        return {"complex": [value.real.hex(), value.imag.hex()]}
    if kind is str:
        return {"str": value}
    if kind is bytes:
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if kind in (tuple, list):
        return {kind.__name__: [dump_value(item) for item in value]}
    if kind in (frozenset, set):
        items = sorted((dump_value(item) for item in value), key=repr)
        return {kind.__name__: items}
    if kind is range:
        return {"range": [value.start, value.stop, value.step]}
    if isinstance(value, enum.Enum):
        return {"enum": [qualified_name(kind), value.name]}
    if isinstance(value, type):
        return {"type": qualified_name(value)}
    module = kind.__module__
    if module.startswith("torch") and kind.__name__ == "dtype":
        return {"torch_dtype": str(value).removeprefix("torch.")}
    if module.startswith("torch") and kind.__name__ == "device":
        return {"torch_device": str(value)}
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.dtype):
        return {"numpy_dtype": value.str}
    raise Unfingerprintable(f"a guard compares against a {qualified_name(kind)} object")


def load_value(data: Any) -> Any:
    if not isinstance(data, dict) or len(data) != 1:
        raise GuardFormatError(f"not a tagged value: {data!r:.80}")
    ((tag, body),) = data.items()
    if tag == "none":
        return None
    if tag == "ellipsis":
        return Ellipsis
    if tag == "bool" and isinstance(body, bool):
        return body
    if tag == "int":
        return int(body)
    if tag == "float":
        return float.fromhex(body)
    if tag == "complex":
        return complex(float.fromhex(body[0]), float.fromhex(body[1]))
    if tag == "str" and isinstance(body, str):
        return body
    if tag == "bytes":
        return base64.b64decode(body, validate=True)
    if tag in ("tuple", "list", "frozenset", "set"):
        items = [load_value(item) for item in body]
        return {"tuple": tuple, "list": list, "frozenset": frozenset, "set": set}[tag](items)
    if tag == "range":
        return range(*body)
    if tag == "enum":
        return getattr(resolve_type(body[0]), body[1])
    if tag == "type":
        return resolve_type(body)
    if tag == "torch_dtype":
        torch = _module("torch")
        found = getattr(torch, str(body), None)
        if not isinstance(found, torch.dtype):
            raise GuardFormatError(f"unknown torch dtype {body!r}")
        return found
    if tag == "torch_device":
        return _module("torch").device(str(body))
    if tag == "numpy_dtype":
        return _module("numpy").dtype(str(body))
    raise GuardFormatError(f"unknown value tag {tag!r}")


def _module(name: str) -> Any:
    # Only modules already imported: a legitimate guard names the type of a value in the
    # current call, whose module is loaded. Importing what a stored manifest names would run
    # the top-level code of any module on sys.path.
    module = sys.modules.get(name)
    if module is None:
        raise GuardFormatError(f"stored guards name module {name}, which is not imported")
    return module


def resolve_type(name: Any) -> Any:
    """The object named ``module:qualname`` (attribute lookups only; no ``<locals>``)."""
    if not isinstance(name, str) or ":" not in name or "<" in name:
        raise GuardFormatError(f"cannot resolve {name!r}")
    module_name, qualname = name.split(":", 1)
    module = builtins if module_name == "builtins" else _module(module_name)
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise GuardFormatError(f"{name} no longer exists")
    return found


# -- paths and guards ------------------------------------------------------------------------
def dump_path(path: Path) -> list[Any]:
    steps: list[Any] = []
    for step in path:
        if step[0] == "key":
            steps.append(["key", dump_value(step[1])])
        else:
            steps.append(list(step))
    return steps


def load_path(data: Any) -> Path:
    steps: list[tuple[Any, ...]] = []
    for step in data:
        if not isinstance(step, list) or not step:
            raise GuardFormatError(f"bad path step {step!r:.80}")
        head = step[0]
        if head == "key":
            steps.append(("key", load_value(step[1])))
        elif (
            head in ("arg", "global", "attr", "torch")
            and len(step) == 2
            and isinstance(step[1], str)
        ):
            steps.append((head, step[1]))
        elif head == "item" and len(step) == 2 and type(step[1]) is int:
            steps.append(("item", step[1]))
        elif head == "cell" and len(step) == 3 and type(step[1]) is int:
            steps.append(("cell", int(step[1]), str(step[2])))
        else:
            raise GuardFormatError(f"bad path step {step!r:.80}")
    return tuple(steps)


def _is_dependency(path: Path) -> bool:
    """A global or closure value itself (not something inside it): pinned by the key."""
    return len(path) == 1 and path[0][0] in ("global", "cell")


def dump_guard(guard: Guard) -> dict[str, Any]:
    kind, expected = guard.kind, guard.expected
    base = {
        "path": dump_path(guard.path),
        "kind": kind.value,
        "depth": guard.depth,
        "cost": guard.cost,
    }
    if kind is K.IDENTITY:
        if _is_dependency(guard.path):
            return {**base, "current": True}
        if isinstance(expected, (type, types.FunctionType, types.ModuleType)) or expected is None:
            if isinstance(expected, types.ModuleType):
                return {**base, "module": expected.__name__}
            return {
                **base,
                "expected": dump_value(expected)
                if not isinstance(expected, types.FunctionType)
                else {"type": qualified_name(expected)},
            }
        if type(expected) is bool or isinstance(expected, enum.Enum):
            return {**base, "expected": dump_value(expected)}
        raise Unfingerprintable(
            f"{'.'.join(map(str, guard.path[0][1:]))} is matched by the identity of a "
            f"{qualified_name(type(expected))} object"
        )
    if kind is K.WEAK_IDENTITY:
        raise Unfingerprintable(
            f"argument {guard.path[0][1]} is matched by the identity of an object "
            "(pass data: arrays, numbers, strings, containers)"
        )
    if kind in (K.ALIAS,):
        return {**base, "expected": dump_path(expected)}
    if kind is K.DISTINCT:
        return {**base, "expected": [dump_path(p) for p in expected]}
    if kind in (K.LENGTH, K.REQUIRES_GRAD) or kind is K.EMPTY_CELL:
        return {**base, "expected": expected}
    if kind in (K.SHAPE,):
        return {**base, "expected": list(expected)}
    if kind is K.STRIDES:
        return {**base, "expected": [expected[0], list(expected[1])]}
    if kind is K.DENSE:
        return {**base, "expected": [expected[0], list(expected[1])]}
    if kind is K.ABSENT:
        return {**base, "expected": expected}
    if kind in (K.KEYS, K.FLAT):
        return {
            **base,
            "expected": [dump_value(tuple(expected[0])), [qualified_name(t) for t in expected[1]]],
            "list": type(expected[0]) is list,
        }
    if kind is K.TYPED_SET:
        items = sorted(
            ([qualified_name(t), dump_value(v), list(s) if s else None] for t, v, s in expected),
            key=repr,
        )
        return {**base, "expected": items}
    if kind is K.SIGN:
        return {**base, "expected": list(expected)}
    return {**base, "expected": dump_value(expected)}


def load_guard(data: Any, namespace: dict[str, Any], cells: tuple[Any, ...] | None) -> Guard:
    """Read a guard back; ``namespace`` and ``cells`` re-arm "current value" identity guards."""
    try:
        kind = GuardKind(data["kind"])
        path = load_path(data["path"])
        depth, cost = int(data["depth"]), int(data["cost"])
    except (KeyError, TypeError, ValueError) as error:
        raise GuardFormatError(f"bad guard {data!r:.120}: {error}") from None

    def make(expected: Any) -> Guard:
        return Guard(path, kind, expected, depth, cost)

    expected = data.get("expected")
    if kind is K.IDENTITY:
        if data.get("current"):
            head = path[0]
            if head[0] == "global":
                return make(namespace.get(head[1]))
            if cells is None or head[1] >= len(cells):
                raise GuardFormatError("a stored closure guard for a function without it")
            return make(cells[head[1]].cell_contents)
        if "module" in data:
            return make(_module(str(data["module"])))
        return make(load_value(expected))
    if kind is K.ALIAS:
        return make(load_path(expected))
    if kind is K.DISTINCT:
        return make(tuple(load_path(p) for p in expected))
    if kind in (K.LENGTH,):
        return make(int(expected))
    if kind in (K.REQUIRES_GRAD, K.EMPTY_CELL):
        return make(expected if expected is None else bool(expected))
    if kind is K.SHAPE:
        return make(tuple(None if s is None else int(s) for s in expected))
    if kind is K.STRIDES:
        return make((str(expected[0]), tuple(None if s is None else int(s) for s in expected[1])))
    if kind is K.DENSE:
        return make((str(expected[0]), tuple(int(d) for d in expected[1])))
    if kind is K.ABSENT:
        return make(str(expected))
    if kind in (K.KEYS, K.FLAT):
        values = load_value(expected[0])
        values = list(values) if data.get("list") else tuple(values)
        return make((values, tuple(resolve_type(t) for t in expected[1])))
    if kind is K.TYPED_SET:
        return make(
            frozenset(
                (resolve_type(t), load_value(v), tuple(s) if s else None) for t, v, s in expected
            )
        )
    if kind is K.SIGN:
        return make(tuple(float(s) for s in expected))
    if kind is K.KEYSET:
        return make(load_value(expected))
    return make(load_value(expected))


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

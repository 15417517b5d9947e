"""Values and paths of guards written down as JSON data, and read back without evaluating
anything as code.

Every value a guard compares against is written with an explicit type tag (``{"float":
"0x1.8p+1"}``, ``{"type": "numpy:ndarray"}``, ``{"torch_dtype": "float32"}``); reading resolves
types by importing nothing (only modules already imported) and walking attribute names, never by
``eval``. A value that cannot be written raises :class:`~compilecache.keys.Unfingerprintable`.
"""

from __future__ import annotations

import builtins
import enum
import sys
from typing import Any

from .._errors import CacheError
from ._guards import Path

__all__ = [
    "GuardFormatError",
    "dump_path",
    "dump_value",
    "load_path",
    "load_value",
    "module_named",
    "resolve_type",
]


class GuardFormatError(CacheError):
    """Stored guards that do not read back (unknown tag, unresolvable type): the entry is not
    used, never trusted half-read."""


# -- values ----------------------------------------------------------------------------------
def dump_value(value: Any) -> Any:
    """``value`` as tagged JSON data; raises :class:`Unfingerprintable` for what has none."""
    # The key layer's naming, imported when a guard is first written (never at import:
    # ``import compilecache`` does not load the key layer).
    from ..keys._canonical import Unfingerprintable, qualified_name

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
        import base64  # not at import: ``import compilecache`` stays cheap

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
        import base64

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
        torch = module_named("torch")
        found = getattr(torch, str(body), None)
        if not isinstance(found, torch.dtype):
            raise GuardFormatError(f"unknown torch dtype {body!r}")
        return found
    if tag == "torch_device":
        return module_named("torch").device(str(body))
    if tag == "numpy_dtype":
        return module_named("numpy").dtype(str(body))
    raise GuardFormatError(f"unknown value tag {tag!r}")


def module_named(name: str) -> Any:
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
    module = builtins if module_name == "builtins" else module_named(module_name)
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

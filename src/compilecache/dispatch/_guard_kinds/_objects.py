"""Guard kinds about a value itself: its type, identity, equality, NaN-ness, zero signs; a
global that is not defined, a closure cell that is empty; torch's global state."""

from __future__ import annotations

import enum
import types
from typing import TYPE_CHECKING, Any

from .._guard_build import zero_signs
from .._guard_values import GuardFormatError, dump_value, load_value, module_named
from .._guards import MISSING, Guard, GuardKind, Path, path_text, short_repr, type_name
from ._row import GuardKindRow

if TYPE_CHECKING:
    from .._guard_codegen import GuardSource
    from .._guard_eval import Inputs

K = GuardKind


class TypeRow(GuardKindRow):
    kind = K.TYPE

    def describe(self, guard: Guard) -> str:
        return f"type({path_text(guard.path)}) is {type_name(guard.expected)}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return type(value) is guard.expected

    def failure(self, guard: Guard, actual: Any) -> str:
        return (
            f"{path_text(guard.path)}: expected type {type_name(guard.expected)}, "
            f"got {type_name(type(actual))}"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{source.builtin('type')}({value}) is {source.bind(guard.expected)}"


def _is_dependency(path: Path) -> bool:
    """A global or closure value itself (not something inside it): pinned by the key."""
    return len(path) == 1 and path[0][0] in ("global", "cell")


class IdentityRow(GuardKindRow):
    """``v is expected``. Stored as "the current value" for globals and closure values (the
    key's dependency component pins what they are; on load the guard is re-armed with the
    live object), by name for modules, functions and types, as a value for None, booleans
    and enum members; an argument matched by the identity of anything else is not stored."""

    kind = K.IDENTITY

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)} is {short_repr(guard.expected)}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return value is guard.expected

    def failure(self, guard: Guard, actual: Any) -> str:
        return (
            f"{path_text(guard.path)}: expected the same object as when compiled "
            f"({short_repr(guard.expected)}), got {short_repr(actual)}"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value} is {source.bind(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        from ...keys._canonical import Unfingerprintable, qualified_name

        expected = guard.expected
        if _is_dependency(guard.path):
            return {"current": True}
        if isinstance(expected, types.ModuleType):
            return {"module": expected.__name__}
        if isinstance(expected, types.FunctionType):
            return {"expected": {"type": qualified_name(expected)}}
        if isinstance(expected, (type, enum.Enum)) or expected is None or type(expected) is bool:
            return {"expected": dump_value(expected)}
        raise Unfingerprintable(
            f"{'.'.join(map(str, guard.path[0][1:]))} is matched by the identity of a "
            f"{qualified_name(type(expected))} object"
        )

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        if data.get("current"):
            head = path[0]
            if head[0] == "global":
                return namespace.get(head[1])
            if cells is None or head[1] >= len(cells):
                raise GuardFormatError("a stored closure guard for a function without it")
            return cells[head[1]].cell_contents
        if "module" in data:
            return module_named(str(data["module"]))
        return load_value(data.get("expected"))


class WeakIdentityRow(GuardKindRow):
    """``v is expected()``: a weak reference, so the cache keeps no argument alive (the entry
    dies with it). Never stored: an object's identity means nothing in another process."""

    kind = K.WEAK_IDENTITY

    def describe(self, guard: Guard) -> str:
        target = guard.expected()
        shown = short_repr(target) if target is not None else "<dead object>"
        return f"{path_text(guard.path)} is {shown}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return value is guard.expected()

    def failure(self, guard: Guard, actual: Any) -> str:
        target = guard.expected()
        was = short_repr(target) if target is not None else "since garbage-collected"
        where = path_text(guard.path)
        return f"{where}: expected the same object as when compiled ({was}), got another"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value} is {source.bind(guard.expected)}()"

    def dump(self, guard: Guard) -> dict[str, Any]:
        from ...keys._canonical import Unfingerprintable

        raise Unfingerprintable(
            f"argument {guard.path[0][1]} is matched by the identity of an object "
            "(pass data: arrays, numbers, strings, containers)"
        )

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        raise GuardFormatError("a weak identity guard is never stored")


class EqualsRow(GuardKindRow):
    """``v == expected``, after a TYPE guard (the defaults)."""

    kind = K.EQUALS


class NanRow(GuardKindRow):
    kind = K.NAN

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)} is nan"

    def holds(self, guard: Guard, value: Any) -> bool:
        return bool(value != value)  # noqa: PLR0124 - true only for NaN

    def failure(self, guard: Guard, actual: Any) -> str:
        return f"{path_text(guard.path)}: expected nan, got {short_repr(actual)}"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value} != {value}"


class SignRow(GuardKindRow):
    """The signs of a zero float, or of a complex's zero parts (``-0.0 == 0.0``)."""

    kind = K.SIGN

    def describe(self, guard: Guard) -> str:
        return f"signs of {path_text(guard.path)} == {guard.expected}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return bool(zero_signs(value) == guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        return (
            f"{path_text(guard.path)}: expected the zero signs {guard.expected} "
            f"(-0.0 is not 0.0), got {actual!r}"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{source.bind(zero_signs)}({value}) == {source.bind(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": list(guard.expected)}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return tuple(float(sign) for sign in data["expected"])


class AbsentRow(GuardKindRow):
    """A global name is not defined (so the builtin of that name is what the code calls);
    ``expected`` is the name."""

    kind = K.ABSENT

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)} is not defined"

    def holds(self, guard: Guard, value: Any) -> bool:
        return value is MISSING

    def failure(self, guard: Guard, actual: Any) -> str:
        where = path_text(guard.path)
        return f"{where}: was not defined when compiled (the builtin was used), now it is"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{source.bind(guard.expected)} not in {source.globals}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": guard.expected}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return str(data["expected"])


def cell_is_empty(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return True
    return False


class EmptyCellRow(GuardKindRow):
    """A closure cell holds nothing yet (it looks at the cell, not at a value)."""

    kind = K.EMPTY_CELL

    def subject(self, guard: Guard, inputs: Inputs) -> Any:
        return inputs.cells[guard.path[0][1]]

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)} is empty"

    def holds(self, guard: Guard, value: Any) -> bool:
        return cell_is_empty(value)

    def failure(self, guard: Guard, actual: Any) -> str:
        return f"{path_text(guard.path)}: was empty when compiled, now it holds a value"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{source.bind(cell_is_empty)}({source.cells}[{int(guard.path[0][1])}])"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": guard.expected}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        expected = data.get("expected")
        return expected if expected is None else bool(expected)


class TorchStateRow(GuardKindRow):
    """torch's global state named by the path (``("torch", "grad_enabled")``) is
    ``expected``."""

    kind = K.TORCH_STATE

    def holds(self, guard: Guard, value: Any) -> bool:
        return value is guard.expected

    def failure(self, guard: Guard, actual: Any) -> str:
        return (
            f"{path_text(guard.path)}: expected {guard.expected}, got {actual} "
            "(compiled under another setting)"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value} is {source.bind(guard.expected)}"


ROWS = (
    TypeRow(),
    IdentityRow(),
    WeakIdentityRow(),
    EqualsRow(),
    NanRow(),
    SignRow(),
    AbsentRow(),
    EmptyCellRow(),
    TorchStateRow(),
)

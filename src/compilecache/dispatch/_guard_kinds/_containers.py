"""Guard kinds about containers and about several places at once: a length, the keys of a
mapping (with their types), keyword names, a flat sequence of constants, a set with its
items' types, two places holding one object, several places holding distinct ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._guard_build import typed_set
from .._guard_values import dump_path, dump_value, load_path, load_value, resolve_type
from .._guards import Guard, GuardKind, Path, path_text, short_repr, type_name
from ._row import GuardKindRow

if TYPE_CHECKING:
    from .._guard_codegen import GuardSource
    from .._guard_eval import Inputs

K = GuardKind


class LengthRow(GuardKindRow):
    kind = K.LENGTH

    def describe(self, guard: Guard) -> str:
        return f"len({path_text(guard.path)}) == {guard.expected}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return bool(len(value) == guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        return f"len({path_text(guard.path)}): expected {guard.expected}, got {len(actual)}"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{source.builtin('len')}({value}) == {int(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": guard.expected}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return int(data["expected"])


def _dump_items_and_types(expected: Any) -> dict[str, Any]:
    from ...keys._canonical import qualified_name

    return {
        "expected": [dump_value(tuple(expected[0])), [qualified_name(t) for t in expected[1]]],
        "list": type(expected[0]) is list,
    }


def _load_items_and_types(data: dict[str, Any]) -> Any:
    expected = data["expected"]
    values = load_value(expected[0])
    values = list(values) if data.get("list") else tuple(values)
    return (values, tuple(resolve_type(t) for t in expected[1]))


class KeysRow(GuardKindRow):
    """``tuple(v) == expected[0]`` and the keys' types are ``expected[1]``, in order."""

    kind = K.KEYS

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)}.keys() == {short_repr(list(guard.expected[0]))}"

    def holds(self, guard: Guard, value: Any) -> bool:
        keys, types = guard.expected
        return bool(tuple(value) == keys and tuple(map(type, value)) == types)

    def failure(self, guard: Guard, actual: Any) -> str:
        where = path_text(guard.path)
        keys = list(guard.expected[0])
        if keys == list(actual):
            types = [type_name(t) for t in guard.expected[1]]
            got = [type_name(type(k)) for k in actual]
            return f"{where}.keys(): expected keys of types {types}, got {got}"
        return f"{where}.keys(): expected {keys}, got {list(actual)}"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        type_, tuple_, map_ = (source.builtin(n) for n in ("type", "tuple", "map"))
        keys, types = source.bind(guard.expected[0]), source.bind(guard.expected[1])
        return f"{tuple_}({value}) == {keys} and {tuple_}({map_}({type_}, {value})) == {types}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return _dump_items_and_types(guard.expected)

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return _load_items_and_types(data)


class KeysetRow(GuardKindRow):
    """``v.keys() == expected``: keyword arguments, in any order."""

    kind = K.KEYSET

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)}.keys() == {short_repr(guard.expected)}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return bool(value.keys() == guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        return (
            f"{path_text(guard.path)}: expected keywords {sorted(guard.expected)}, "
            f"got {sorted(actual)}"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value}.keys() == {source.bind(guard.expected)}"


class FlatRow(GuardKindRow):
    """A sequence of constants in one ``==``: ``v == expected[0]`` and the items' types are
    ``expected[1]``."""

    kind = K.FLAT

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)} == {short_repr(guard.expected[0])}"

    def holds(self, guard: Guard, value: Any) -> bool:
        values, types = guard.expected
        return bool(value == values) and tuple(map(type, value)) == types

    def failure(self, guard: Guard, actual: Any) -> str:
        expected = short_repr(list(guard.expected[0]))
        return f"{path_text(guard.path)}: expected {expected}, got {short_repr(actual)}"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        type_, tuple_, map_ = (source.builtin(n) for n in ("type", "tuple", "map"))
        values, types = source.bind(guard.expected[0]), source.bind(guard.expected[1])
        return f"{value} == {values} and {tuple_}({map_}({type_}, {value})) == {types}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return _dump_items_and_types(guard.expected)

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return _load_items_and_types(data)


class TypedSetRow(GuardKindRow):
    """The items of a set with their types and zero signs (which ``==`` on sets ignores)."""

    kind = K.TYPED_SET

    def holds(self, guard: Guard, value: Any) -> bool:
        return bool(typed_set(value) == guard.expected)

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{source.bind(typed_set)}({value}) == {source.bind(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        from ...keys._canonical import qualified_name

        items = sorted(
            (
                [qualified_name(kind), dump_value(item), list(signs) if signs else None]
                for kind, item, signs in guard.expected
            ),
            key=repr,
        )
        return {"expected": items}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return frozenset(
            (resolve_type(kind), load_value(item), tuple(signs) if signs else None)
            for kind, item, signs in data["expected"]
        )


class AliasRow(GuardKindRow):
    """The value at the path is the value at the path ``expected`` (one object passed
    twice)."""

    kind = K.ALIAS

    def subject(self, guard: Guard, inputs: Inputs) -> Any:
        return (inputs.resolve(guard.path), inputs.resolve(guard.expected))

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)} is {path_text(guard.expected)}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return value[0] is value[1]

    def failure(self, guard: Guard, actual: Any) -> str:
        return (
            f"{path_text(guard.path)}: expected the same object as "
            f"{path_text(guard.expected)}, got another"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value} is {source.accessor(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": dump_path(guard.expected)}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return load_path(data["expected"])


class DistinctRow(GuardKindRow):
    """The values at the paths ``expected`` are distinct objects."""

    kind = K.DISTINCT

    def subject(self, guard: Guard, inputs: Inputs) -> Any:
        return [inputs.resolve(path) for path in guard.expected]

    def describe(self, guard: Guard) -> str:
        return f"{', '.join(path_text(p) for p in guard.expected)} are distinct objects"

    def holds(self, guard: Guard, value: Any) -> bool:
        return len({id(item) for item in value}) == len(value)

    def failure(self, guard: Guard, actual: Any) -> str:
        return (
            f"{path_text(guard.path)}: expected {len(guard.expected)} distinct arrays, some "
            "are the same object"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        id_ = source.builtin("id")
        ids = ", ".join(f"{id_}({source.accessor(path)})" for path in guard.expected)
        return f"{source.builtin('len')}({{{ids}}}) == {len(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": [dump_path(path) for path in guard.expected]}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return tuple(load_path(p) for p in data["expected"])


ROWS = (
    LengthRow(),
    KeysRow(),
    KeysetRow(),
    FlatRow(),
    TypedSetRow(),
    AliasRow(),
    DistinctRow(),
)

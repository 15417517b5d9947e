"""Evaluating guards one by one, in Python, to say in plain words why a call missed.

This is the slow, explaining path (a miss, ``explain``, tests); the hot path runs the guards
compiled into one function by :mod:`._guard_codegen`. Both read the same :class:`Guard` data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._guard_build import layout_is_dense, torch_state_readers, typed_set, zero_signs
from ._guards import MISSING, Guard, GuardKind, Path, path_text, short_repr, type_name

K = GuardKind


class Inputs:
    """The values a call's guards read: bound arguments, closure cells, globals."""

    def __init__(
        self,
        arguments: Mapping[str, Any],
        cells: tuple[Any, ...] | None,
        namespace: Mapping[str, Any],
    ) -> None:
        self.arguments = arguments
        self.cells = cells or ()
        self.namespace = namespace

    def resolve(self, path: Path) -> Any:
        """The value at ``path``; raises LookupError/AttributeError/TypeError if unreachable."""
        head = path[0]
        if head[0] == "torch":
            return torch_state_readers()[head[1]]()
        if head[0] == "arg":
            value = self.arguments[head[1]]
        elif head[0] == "cell":
            value = self.cells[head[1]].cell_contents
        else:
            value = self.namespace.get(head[1], MISSING)
        for step in path[1:]:
            is_item = step[0] in ("item", "key")
            value = value[step[1]] if is_item else getattr(value, step[1])
        return value


def _subject(guard: Guard, inputs: Inputs) -> Any:
    """What ``guard`` looks at: the value at its path, or for guards about several places or
    about a cell itself, what they compare."""
    if guard.kind is K.EMPTY_CELL:
        return inputs.cells[guard.path[0][1]]
    if guard.kind is K.ALIAS:
        return (inputs.resolve(guard.path), inputs.resolve(guard.expected))
    if guard.kind is K.DISTINCT:
        return [inputs.resolve(path) for path in guard.expected]
    return inputs.resolve(guard.path)


def holds_for(guard: Guard, inputs: Inputs) -> bool:
    """Whether ``guard`` holds for the call ``inputs`` (raises if its place is unreachable)."""
    return holds(guard, _subject(guard, inputs))


def cell_is_empty(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return True
    return False


def holds(guard: Guard, value: Any) -> bool:
    """Whether ``guard`` holds for ``value`` (what :func:`_subject` gives for it)."""
    kind = guard.kind
    if kind is K.EMPTY_CELL:
        return cell_is_empty(value)
    if kind is K.ALIAS:
        return value[0] is value[1]
    if kind is K.DISTINCT:
        return len({id(item) for item in value}) == len(value)
    return _holds(guard, value)


def _holds(guard: Guard, value: Any) -> bool:
    """Whether ``guard`` holds for ``value`` (the value at its path)."""
    kind, expected = guard.kind, guard.expected
    if kind is K.TYPE:
        return type(value) is expected
    if kind in (K.IDENTITY, K.TORCH_STATE):
        return value is expected
    if kind is K.WEAK_IDENTITY:
        return value is expected()
    if kind is K.DENSE:
        return layout_is_dense(value, expected)
    if kind is K.EQUALS:
        return bool(value == expected)
    if kind is K.NAN:
        return bool(value != value)  # noqa: PLR0124 - true only for NaN
    if kind is K.LENGTH:
        return bool(len(value) == expected)
    if kind is K.KEYS:
        same_keys = tuple(value) == expected[0]
        return bool(same_keys and tuple(map(type, value)) == expected[1])
    if kind is K.SIGN:
        return bool(zero_signs(value) == expected)
    if kind is K.TYPED_SET:
        return bool(typed_set(value) == expected)
    if kind is K.KEYSET:
        return bool(value.keys() == expected)
    if kind is K.FLAT:
        return bool(value == expected[0]) and tuple(map(type, value)) == expected[1]
    if kind is K.ABSENT:
        return value is MISSING
    if kind is K.TENSOR_FLAGS:
        flags = (bool(value.is_conj()), bool(value.is_neg()), bool(value.is_inference()))
        return bool(flags == expected)
    if kind is K.DTYPE:
        return bool(value.dtype == expected)
    if kind is K.DEVICE:
        return bool(value.device == expected)
    if kind is K.REQUIRES_GRAD:
        return value.requires_grad is expected
    if kind is K.SHAPE:
        return _matches(tuple(value.shape), expected)
    if kind is K.STRIDES:
        return _matches(strides_of(value, expected[0]), expected[1])
    raise AssertionError(f"unknown guard kind {kind}")


def strides_of(value: Any, family: str) -> tuple[int, ...]:
    return tuple(value.stride()) if family == "torch" else tuple(value.strides)


def _matches(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(actual) == len(expected) and all(
        want is None or want == got for want, got in zip(expected, actual, strict=True)
    )


def first_failure(guards: list[Guard], inputs: Inputs) -> str | None:
    """The first guard of ``guards`` that fails for ``inputs``, in words, or None if all hold."""
    for guard in guards:
        try:
            value = _subject(guard, inputs)
            if holds(guard, value):
                continue
        except Exception as error:
            return f"{path_text(guard.path)}: checking {guard.describe()} raised {error!r}"
        return failure_message(guard, value)
    return None


def failure_message(guard: Guard, actual: Any) -> str:
    """Why ``guard`` fails for ``actual``, e.g. ``x.shape[0]: expected 8, got 16``."""
    where = path_text(guard.path)
    kind, expected = guard.kind, guard.expected
    if kind is K.TYPE:
        return f"{where}: expected type {type_name(expected)}, got {type_name(type(actual))}"
    if kind is K.IDENTITY:
        return (
            f"{where}: expected the same object as when compiled ({short_repr(expected)}), "
            f"got {short_repr(actual)}"
        )
    if kind is K.WEAK_IDENTITY:
        target = expected()
        was = short_repr(target) if target is not None else "since garbage-collected"
        return f"{where}: expected the same object as when compiled ({was}), got another"
    if kind is K.TENSOR_FLAGS:
        flags = (bool(actual.is_conj()), bool(actual.is_neg()), bool(actual.is_inference()))
        return f"{where} (is_conj, is_neg, is_inference): expected {expected}, got {flags}"
    if kind is K.TORCH_STATE:
        return f"{where}: expected {expected}, got {actual} (compiled under another setting)"
    if kind is K.DENSE:
        return (
            f"{where}: expected a dense layout in dimension order {expected[1]} (innermost "
            f"first, as when compiled), got strides {strides_of(actual, expected[0])}"
        )
    if kind is K.LENGTH:
        return f"len({where}): expected {expected}, got {len(actual)}"
    if kind is K.KEYS:
        keys = list(expected[0])
        if keys == list(actual):
            types = [type_name(t) for t in expected[1]]
            got = [type_name(type(k)) for k in actual]
            return f"{where}.keys(): expected keys of types {types}, got {got}"
        return f"{where}.keys(): expected {keys}, got {list(actual)}"
    if kind is K.SIGN:
        return f"{where}: expected the zero signs {expected} (-0.0 is not 0.0), got {actual!r}"
    if kind is K.KEYSET:
        return f"{where}: expected keywords {sorted(expected)}, got {sorted(actual)}"
    if kind is K.ABSENT:
        return f"{where}: was not defined when compiled (the builtin was used), now it is"
    if kind is K.EMPTY_CELL:
        return f"{where}: was empty when compiled, now it holds a value"
    if kind is K.ALIAS:
        return f"{where}: expected the same object as {path_text(expected)}, got another"
    if kind is K.DISTINCT:
        return f"{where}: expected {len(expected)} distinct arrays, some are the same object"
    if kind is K.FLAT:
        return f"{where}: expected {short_repr(list(expected[0]))}, got {short_repr(actual)}"
    if kind is K.SHAPE:
        return _dims_message(f"{where}.shape", expected, tuple(actual.shape))
    if kind is K.STRIDES:
        return _dims_message(f"{where}.stride", expected[1], strides_of(actual, expected[0]))
    if kind is K.NAN:
        return f"{where}: expected nan, got {short_repr(actual)}"
    attribute = {K.DTYPE: "dtype", K.DEVICE: "device", K.REQUIRES_GRAD: "requires_grad"}.get(kind)
    if attribute is not None:
        got = getattr(actual, attribute)
        return f"{where}.{attribute}: expected {expected}, got {got}"
    return f"{where}: expected {short_repr(expected)}, got {short_repr(actual)}"


def _dims_message(where: str, expected: tuple[int | None, ...], actual: tuple[int, ...]) -> str:
    if len(expected) != len(actual):
        return f"{where}: expected {len(expected)} dimensions, got {len(actual)}"
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want is not None and want != got:
            return f"{where}[{index}]: expected {want}, got {got}"
    return f"{where}: matches"  # pragma: no cover - only called for a failing guard

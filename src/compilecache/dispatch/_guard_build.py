"""Building the guards and the specialization of one call, from the values it was made with."""

from __future__ import annotations

import dataclasses
import dis
import enum
import math
import operator
import types
from collections.abc import Mapping
from typing import Any

from ._arrays import TORCH, array_family, array_meta, marked_dims
from ._dynamic import ShapeObservations
from ._guards import Guard, GuardKind, Path, Step
from ._spec import LeafSpec, Specialization

# Values guarded by value (after an exact type check): they compare by value and are immutable.
_SCALARS = (int, float, complex, str, bytes, bool, type(None))
# Values guarded by identity: what they are matters, not what they compare equal to.
_BY_IDENTITY = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    type,
)
_MAX_DEPTH = 8
_DEPTH_THEN_COST = operator.itemgetter(3, 4)  # Guard.depth, Guard.cost

K = GuardKind


def global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` (and code nested in it) may load, in first-use order."""
    names: dict[str, None] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        for instruction in dis.get_instructions(current):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                names.setdefault(str(instruction.argval).removeprefix("NULL + "))
        stack.extend(const for const in current.co_consts if isinstance(const, types.CodeType))
    return tuple(names)


class GuardBuilder:
    """Walks one call's inputs and emits guards and leaf specs.

    ``mode`` is the ``dynamic`` option of ``jit`` (True, False or None for automatic);
    ``shapes`` is the function's :class:`ShapeObservations`.
    """

    def __init__(self, shapes: ShapeObservations, mode: bool | None) -> None:
        self.guards: list[Guard] = []
        self.leaves: list[LeafSpec] = []
        self._shapes = shapes
        self._mode = mode

    def result(self) -> tuple[list[Guard], Specialization]:
        ordered = sorted(self.guards, key=_DEPTH_THEN_COST)
        return ordered, Specialization(tuple(self.leaves))

    def _add(self, path: Path, kind: GuardKind, expected: Any, cost: int) -> None:
        self.guards.append(Guard(path, kind, expected, len(path), cost))

    # -- roots ---------------------------------------------------------------------------
    def argument(self, name: str, value: Any, *, keyword_dict: bool = False) -> None:
        path: Path = (("arg", name),)
        if keyword_dict:  # **kwargs: which keywords were passed matters, not their order
            self._add(path, K.KEYSET, frozenset(value), 2)
            for key, item in value.items():
                self.value((*path, ("key", key)), item)
            return
        self.value(path, value)

    def cell(self, index: int, name: str, cell: types.CellType) -> None:
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell (a variable not yet assigned): nothing to guard
            return
        self.constant_or_identity((("cell", index, name),), contents)

    def global_name(self, name: str, namespace: Mapping[str, Any]) -> None:
        path: Path = (("global", name),)
        if name not in namespace:
            self._add(path, K.ABSENT, name, 0)
        else:
            self.constant_or_identity(path, namespace[name])

    # -- values --------------------------------------------------------------------------
    def constant_or_identity(self, path: Path, value: Any) -> None:
        """Globals and closure values: constants by value, anything else by identity."""
        if type(value) is range:
            self.value(path, value)
        elif _is_constant(value):
            self._constant(path, value)
        else:
            self._add(path, K.IDENTITY, value, 0)

    def value(self, path: Path, value: Any) -> None:
        kind = type(value)
        if value is None or kind is bool or isinstance(value, enum.Enum):
            self._add(path, K.IDENTITY, value, 0)
            self.leaves.append(LeafSpec(path, "constant", kind, value))
            return
        if kind is int:
            self._add(path, K.TYPE, int, 1)
            if self._shapes.int_is_dynamic(path, value, mode=self._mode):
                self.leaves.append(LeafSpec(path, "dynamic-int", int))
            else:
                self._add(path, K.EQUALS, value, 2)
                self.leaves.append(LeafSpec(path, "constant", int, value))
            return
        if kind in _SCALARS:
            self._constant(path, value)
            self.leaves.append(LeafSpec(path, "constant", kind, value))
            return
        if kind is range:  # ranges compare as sequences: range(0, 3, 2) == range(0, 4, 2)
            self._add(path, K.TYPE, range, 1)
            for field_name in ("start", "stop", "step"):
                self._constant((*path, ("attr", field_name)), getattr(value, field_name))
            self.leaves.append(LeafSpec(path, "constant", range, value))
            return
        family = array_family(value)
        if family is not None:
            self._array(path, value, family)
            return
        if len(path) > _MAX_DEPTH or isinstance(value, _BY_IDENTITY):
            self._add(path, K.IDENTITY, value, 0)
            self.leaves.append(LeafSpec(path, "object", kind, value))
            return
        if kind in (tuple, list) or (isinstance(value, tuple) and hasattr(kind, "_fields")):
            self._sequence(path, value)
            return
        if kind is dict:
            self._add(path, K.TYPE, dict, 1)
            # With their types: True == 1 == 1.0 as keys, yet they are different inputs.
            self._add(path, K.KEYS, (tuple(value), tuple(map(type, value))), 2)
            for key, item in value.items():
                self.value((*path, ("key", key)), item)
            return
        if kind in (frozenset, set) and all(_is_constant(item) for item in value):
            self._constant(path, value)
            self.leaves.append(LeafSpec(path, "constant", kind, value))
            return
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            self._add(path, K.TYPE, kind, 1)
            for item in dataclasses.fields(value):
                self.value((*path, ("attr", item.name)), getattr(value, item.name))
            return
        # Anything else: the compiled code may depend on any of its attributes, which a guard
        # cannot enumerate without tracing, so only this very object matches.
        self._add(path, K.IDENTITY, value, 0)
        self.leaves.append(LeafSpec(path, "object", kind, value))

    def _constant(self, path: Path, value: Any) -> None:
        self._add(path, K.TYPE, type(value), 1)
        if _is_nan(value):
            self._add(path, K.NAN, value, 2)
            return
        self._add(path, K.EQUALS, value, 2)
        signs = zero_signs(value)
        if signs is not None:  # -0.0 == 0.0, yet copysign, 1/x and repr tell them apart
            self._add(path, K.SIGN, signs, 3)

    def _sequence(self, path: Path, value: Any) -> None:
        self._add(path, K.TYPE, type(value), 1)
        self._add(path, K.LENGTH, len(value), 2)
        if value and all(_flat_item(item) for item in value):
            # Flat sequences of constants: one comparison instead of two guards per element.
            # (Not with a NaN in them: NaN equals nothing, so the comparison would never hold.)
            # Their ints are static (only ints standing alone become dynamic automatically).
            # A list compares equal only to a list (a tuple, namedtuples included, to a tuple).
            copy = list(value) if type(value) is list else tuple(value)
            self._add(path, K.FLAT, (copy, tuple(map(type, value))), 3)
            for index, item in enumerate(value):
                self.leaves.append(LeafSpec((*path, ("item", index)), "constant", type(item), item))
            return
        for index, item in enumerate(value):
            step: Step = ("item", index)
            self.value((*path, step), item)

    def _array(self, path: Path, value: Any, family: str) -> None:
        meta = array_meta(value, family)
        dynamic, static = marked_dims(value)
        dims, strides = self._shapes.array_dims(
            path, meta, mode=self._mode, marked_dynamic=dynamic, marked_static=static
        )
        depth = len(path)
        add = self.guards.append
        add(Guard(path, K.TYPE, type(value), depth, 1))
        shape = _free(meta.shape, dims) if dims else meta.shape
        add(Guard(path, K.DTYPE, meta.dtype, depth, 5))
        if family == TORCH:
            add(Guard(path, K.DEVICE, meta.device, depth, 5))
            add(Guard(path, K.REQUIRES_GRAD, meta.requires_grad, depth, 5))
        add(Guard(path, K.SHAPE, shape, depth, 5))
        if meta.strides is not None and 0 in meta.shape:
            # An empty array's strides mean nothing (numpy gives several for one shape):
            # not guarded, and the spec says they are free.
            strides = frozenset(range(len(meta.shape)))
        elif meta.strides is not None:
            expected = _free(meta.strides, strides) if strides else meta.strides
            add(Guard(path, K.STRIDES, (family, expected), depth, 5))
        self.leaves.append(LeafSpec(path, "array", type(value), None, meta, dims, strides))


def _free(sizes: tuple[int, ...], positions: frozenset[int]) -> tuple[int | None, ...]:
    """``sizes`` with the entries at ``positions`` replaced by None (any size)."""
    return tuple(None if i in positions else size for i, size in enumerate(sizes))


def zero_signs(value: Any) -> tuple[float, ...] | None:
    """The signs (1.0 or -1.0) that tell a zero float, or a complex with a zero part, from its
    negative; None for values whose == already says everything."""
    if type(value) is float:
        return (math.copysign(1.0, value),) if value == 0.0 else None
    if type(value) is complex and (value.real == 0.0 or value.imag == 0.0):
        return (math.copysign(1.0, value.real), math.copysign(1.0, value.imag))
    return None


def _flat_item(item: Any) -> bool:
    """Whether ``item`` can be checked inside one == on its sequence: a constant that equals
    only what it should (no NaN, no signed zero)."""
    return type(item) in _SCALARS and not _is_nan(item) and zero_signs(item) is None


def _is_nan(value: Any) -> bool:
    """True for float and complex NaNs: the values that do not equal themselves."""
    return bool(value != value)  # noqa: PLR0124


def _is_constant(value: Any) -> bool:
    kind = type(value)
    if kind in _SCALARS or kind is range:
        return True
    if kind in (tuple, frozenset):
        return all(_is_constant(item) for item in value)
    return False

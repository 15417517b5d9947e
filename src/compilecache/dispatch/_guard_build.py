"""Building the guards and the specialization of one call, from the values it was made with."""

from __future__ import annotations

import dataclasses
import dis
import enum
import functools
import itertools
import math
import operator
import types
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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


_state_types: set[type] = set()
_is_state_type: dict[type, bool] = {}


def register_state_type(kind: type) -> None:
    """Guard instances of ``kind`` (and its subclasses) by their type and their instance
    state (each attribute in ``__dict__``, as an argument's value, and the set of attribute
    names), instead of by identity: for objects that are data passed between calls, such as
    a model library's cache of key and value tensors. Process-global and additive."""
    _state_types.add(kind)
    _is_state_type.clear()


def is_state_type(kind: type) -> bool:
    known = _is_state_type.get(kind)
    if known is None:
        known = _is_state_type[kind] = any(base in _state_types for base in kind.__mro__)
    return known


def _dtype_or_device(value: Any) -> bool:
    kind = type(value)
    return kind.__module__ == "torch" and kind.__name__ in ("dtype", "device")


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


class DeathWatch:
    """Makes the entries of weakly guarded objects inert when such an object dies.

    Runs inside garbage collection, possibly while this thread holds a dispatch lock, so it
    takes none: it only marks the entries; the next compile prunes them from the lists.
    """

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def fire(self, _ref: object) -> None:
        for entry in self.entries:
            entry.invalidate()


def _same(value: Any) -> Any:
    return value


#: ``(path, array, within) -> dims``: dimensions to compile dynamic, by where the array is in
#: the call; ``within`` is the types of the state objects (caches) whose attributes lead to it,
#: outermost first (a static cache's tensors have a fixed length, a dynamic cache's grow).
DimsHint = Callable[[Path, Any, tuple[type, ...]], Iterable[int]]


@dataclass(frozen=True)
class DimsPolicy:
    """What decides dynamic dimensions besides automatic dynamic and marks.

    ``static_sizes``: sizes the backend always compiles static (a dimension of such a size in
    the compiling call is compiled and guarded as that size, even where it is dynamic:
    torch.export specializes 0 and 1); ``hint``: the caller's dynamic dimensions by path
    (:func:`~compilecache.jit`'s ``dynamic_dims``).
    """

    static_sizes: frozenset[int] = frozenset()
    hint: DimsHint | None = None


class GuardBuilder:
    """Walks one call's inputs and emits guards and leaf specs.

    ``mode`` is the ``dynamic`` option of ``jit`` (True, False or None for automatic);
    ``shapes`` is the function's :class:`ShapeObservations`; ``dims`` the backend's and the
    caller's say in which dimensions are dynamic.
    """

    def __init__(
        self, shapes: ShapeObservations, mode: bool | None, dims: DimsPolicy | None = None
    ) -> None:
        self._dims = dims or DimsPolicy()
        self.guards: list[Guard] = []
        self.leaves: list[LeafSpec] = []
        self._shapes = shapes
        self._mode = mode
        self._arrays: dict[int, tuple[Path, Any]] = {}  # id -> (first path, the array)
        self._static = False  # walking a global or closure value: nothing becomes dynamic
        self._watch = DeathWatch()
        self._torch_paths: list[Path] = []
        self._within: tuple[type, ...] = ()  # the state objects being walked, outermost first

    @property
    def watch(self) -> DeathWatch:
        """Invalidates the entry built from these guards when a weakly guarded object dies."""
        return self._watch

    def result(self) -> tuple[list[Guard], Specialization]:
        if self._torch_paths:
            # What torch computes also depends on its global state: an entry compiled under
            # no_grad must not run with grad enabled (nor one for another default dtype).
            for name, read in torch_state_readers().items():
                self._add((("torch", name),), K.TORCH_STATE, read(), 0)
        if len(self._torch_paths) > 1:
            # Distinct tensors must stay distinct (torch's TensorGuards checks exactly this for
            # the tensors it is given); said here so that explanations see it too.
            paths = tuple(self._torch_paths)
            self.guards.append(Guard(paths[-1], K.DISTINCT, paths, len(paths[-1]), 6))
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
        path: Path = (("cell", index, name),)
        try:
            contents = cell.cell_contents
        except ValueError:  # a variable not assigned yet: another closure may have it assigned
            self._add(path, K.EMPTY_CELL, None, 0)
            return
        self.constant_or_identity(path, contents)

    def global_name(self, name: str, namespace: Mapping[str, Any]) -> None:
        path: Path = (("global", name),)
        if name not in namespace:
            self._add(path, K.ABSENT, name, 0)
        else:
            self.constant_or_identity(path, namespace[name])

    # -- values --------------------------------------------------------------------------
    def constant_or_identity(self, path: Path, value: Any) -> None:
        """Globals and closure values: constants by value, anything else by identity."""
        if type(value) in (range, tuple, frozenset) and _is_constant(value):
            # Structured constants get the guards of an argument (element types, signs), with
            # every int in them static: a global is not an input.
            self._static = True
            try:
                self.value(path, value)
            finally:
                self._static = False
            return
        if _is_constant(value):
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
            if not self._static and self._shapes.int_is_dynamic(path, value, mode=self._mode):
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
            self.leaves.append(LeafSpec(path, "object", kind, functools.partial(_same, value)))
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
            # Sets compare their elements with ==: {1} == {True} == {1.0}; compare types too.
            self._add(path, K.TYPE, kind, 1)
            self._add(path, K.TYPED_SET, typed_set(value), 2)
            self.leaves.append(LeafSpec(path, "constant", kind, value))
            return
        self._object(path, value, kind)

    def _object(self, path: Path, value: Any, kind: type) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            self._add(path, K.TYPE, kind, 1)
            for item in dataclasses.fields(value):
                self.value((*path, ("attr", item.name)), getattr(value, item.name))
            return
        if _dtype_or_device(value):  # torch.device objects are made anew: compare by value
            self._constant(path, value)
            self.leaves.append(LeafSpec(path, "constant", kind, value))
            return
        if is_state_type(kind) and hasattr(value, "__dict__"):
            self._add(path, K.TYPE, kind, 1)
            state = vars(value)
            # At the object's depth: which attributes it has is checked before any of them.
            names = (*path, ("attr", "__dict__"))
            self.guards.append(Guard(names, K.KEYSET, frozenset(state), len(path), 2))
            outer, self._within = self._within, (*self._within, kind)
            try:
                for name, item in state.items():
                    self.value((*path, ("attr", name)), item)
            finally:
                self._within = outer
            return
        # Anything else: the compiled code may depend on any of its attributes, which a guard
        # cannot enumerate without tracing, so only this very object matches. Weakly, where
        # the object allows it: a cache must not keep a model (or any argument) alive.
        try:
            ref = weakref.ref(value, self._watch.fire)
        except TypeError:
            self._add(path, K.IDENTITY, value, 0)
            self.leaves.append(LeafSpec(path, "object", kind, functools.partial(_same, value)))
            return
        self._add(path, K.TYPE, kind, 0)
        self._add(path, K.WEAK_IDENTITY, ref, 0)
        self.leaves.append(LeafSpec(path, "object", kind, ref))

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
        seen = self._arrays.get(id(value))
        if seen is not None and seen[1] is value:
            # The same array passed twice: compiled code may rely on the aliasing (an in-place
            # update seen through both), so later calls must alias the same way.
            self._add(path, K.ALIAS, seen[0], 0)
            self.leaves.append(LeafSpec(path, "alias", type(value), seen[0]))
            return
        self._arrays[id(value)] = (path, value)
        if family == TORCH:
            self._torch_paths.append(path)
        meta = array_meta(value, family)
        dynamic, static = marked_dims(value)
        hint = self._dims.hint
        if hint is not None and not self._static:
            ndim = len(value.shape)
            dynamic |= {d % ndim for d in hint(path, value, self._within) if -ndim <= d < ndim}
        dims, strides = self._shapes.array_dims(
            path,
            meta,
            mode=self._mode,
            marked_dynamic=dynamic,
            marked_static=static,
            static_sizes=self._dims.static_sizes,
        )
        depth = len(path)
        add = self.guards.append
        add(Guard(path, K.TYPE, type(value), depth, 1))
        shape = _free(meta.shape, dims) if dims else meta.shape
        add(Guard(path, K.DTYPE, meta.dtype, depth, 5))
        if family == TORCH:
            add(Guard(path, K.DEVICE, meta.device, depth, 5))
            add(Guard(path, K.REQUIRES_GRAD, meta.requires_grad, depth, 5))
            # What TensorGuards reads from dispatch keys, spelled out so that it survives being
            # stored: a conjugate, negative or inference view computes differently.
            flags = (bool(value.is_conj()), bool(value.is_neg()), bool(value.is_inference()))
            add(Guard(path, K.TENSOR_FLAGS, flags, depth, 5))
        add(Guard(path, K.SHAPE, shape, depth, 5))
        if meta.strides is not None and 0 in meta.shape:
            # An empty array's strides mean nothing (numpy gives several for one shape):
            # not guarded, and the spec says they are free.
            strides = frozenset(range(len(meta.shape)))
        elif meta.strides is not None:
            order = dense_order(value, family, meta) if strides else None
            if strides and order is None:
                # Freed strides would admit any layout (broadcast, padded, reversed rows): only
                # a dense example can free them, by requiring the same dense layout instead.
                strides = frozenset()
            expected = _free(meta.strides, strides) if strides else meta.strides
            add(Guard(path, K.STRIDES, (family, expected), depth, 5))
            if order is not None:
                add(Guard(path, K.DENSE, (family, order), depth, 6))
        self.leaves.append(LeafSpec(path, "array", type(value), None, meta, dims, strides))


def dense_order(value: Any, family: str, meta: Any) -> tuple[int, ...] | None:
    """If ``value`` is laid out densely (no gaps, no overlap, no negative strides): its
    dimensions of size other than 1, innermost first in memory (a dimension of size 1 has
    no place in the order: any stride fits it). Else None."""
    if family == "torch":
        unit = 1  # torch strides count elements
    elif family == "numpy":
        unit = int(value.itemsize)  # numpy strides count bytes
    else:
        return None  # a duck-typed array's stride unit is unknown
    order = memory_order(meta.shape, meta.strides)
    return order if is_dense(meta.shape, meta.strides, order, unit) else None


def memory_order(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    """The dimensions of size other than 1, innermost (smallest stride) first."""
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    return tuple(sorted(dims, key=lambda d: (abs(strides[d]), -d)))


def is_dense(
    shape: tuple[int, ...], strides: tuple[int, ...], order: tuple[int, ...], unit: int
) -> bool:
    """Whether ``strides`` chain densely through ``order`` (size-1 dimensions may be anything)."""
    expected = unit
    for dim in order:
        if shape[dim] == 1:
            continue
        if strides[dim] != expected:
            return False
        expected *= shape[dim]
    return True


def layout_is_dense(value: Any, layout: tuple[str, tuple[int, ...]]) -> bool:
    """Whether ``value`` is laid out densely (no gaps, no overlap, no negative strides) with
    its dimensions in the memory order ``layout`` names (family; the dimensions of size
    other than 1 when compiled, innermost first). Compiled code computes each free stride from
    the sizes in that order, so a transposed input of the same shape would be read wrongly.
    Dimensions of size 1, then or now, fit any order."""
    family, order = layout
    if family == "torch":
        if value.is_contiguous() and _descending(order):  # row-major, answered in C
            return True
        shape, strides, unit = tuple(value.shape), tuple(value.stride()), 1
    else:
        flags = value.flags
        if (flags.c_contiguous and _descending(order)) or (
            flags.f_contiguous and _descending(order[::-1])
        ):
            return True
        shape, strides, unit = tuple(value.shape), tuple(value.strides), int(value.itemsize)
    now = memory_order(shape, strides)
    if not is_dense(shape, strides, now, unit):
        return False
    place = {dim: index for index, dim in enumerate(now)}
    kept = [place[dim] for dim in order if dim in place]
    return kept == sorted(kept)


@functools.lru_cache(maxsize=256)
def _descending(order: tuple[int, ...]) -> bool:
    """Whether ``order`` (innermost first) is row-major: outer dimensions have lower numbers."""
    return all(a > b for a, b in itertools.pairwise(order))


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


def torch_state_readers() -> dict[str, Any]:
    """The parts of torch's global state that guards check, each with its reader."""
    import torch  # only called when torch tensors are among the inputs: torch is imported

    return {"grad_enabled": torch.is_grad_enabled, "default_dtype": torch.get_default_dtype}


def typed_set(value: Any) -> frozenset[tuple[Any, ...]]:
    """The elements of a set with their types and zero signs, which == on sets ignores."""
    return frozenset((type(item), item, zero_signs(item)) for item in value)


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

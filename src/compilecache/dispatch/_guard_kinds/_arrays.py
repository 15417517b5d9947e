"""Guard kinds about arrays (torch tensors, numpy arrays): dtype, device, requires_grad,
sizes and strides (None: any), a dense layout where strides are free, and a tensor's
conjugate/negative/inference flags. The generated guard function checks torch tensors'
dtype, device, requires_grad, sizes, strides and flags together in torch's C++
``TensorGuards`` where it can (see :mod:`.._guard_codegen`); these clauses are the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._guard_build import layout_is_dense
from .._guards import Guard, GuardKind, Path, path_text, short_repr
from ._row import GuardKindRow, dims_match

if TYPE_CHECKING:
    from .._guard_codegen import GuardSource

K = GuardKind

#: The kinds ``TensorGuards`` checks for a torch tensor.
TENSOR_KINDS = (K.DTYPE, K.DEVICE, K.REQUIRES_GRAD, K.SHAPE, K.STRIDES, K.TENSOR_FLAGS)


def strides_of(value: Any, family: str) -> tuple[int, ...]:
    return tuple(value.stride()) if family == "torch" else tuple(value.strides)


def _flags(value: Any) -> tuple[bool, bool, bool]:
    return (bool(value.is_conj()), bool(value.is_neg()), bool(value.is_inference()))


def _dims_message(where: str, expected: tuple[int | None, ...], actual: tuple[int, ...]) -> str:
    if len(expected) != len(actual):
        return f"{where}: expected {len(expected)} dimensions, got {len(actual)}"
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want is not None and want != got:
            return f"{where}[{index}]: expected {want}, got {got}"
    return f"{where}: matches"  # pragma: no cover - only called for a failing guard


def _dims_clause(actual: str, expected: tuple[int | None, ...], source: GuardSource) -> str:
    if None not in expected:
        return f"{actual} == {source.bind(tuple(expected))}"
    parts = [f"{source.builtin('len')}({actual}) == {len(expected)}"]
    parts += [
        f"{actual}[{i}] == {int(size)}" for i, size in enumerate(expected) if size is not None
    ]
    return " and ".join(parts)


def _load_dims(sizes: Any) -> tuple[int | None, ...]:
    return tuple(None if size is None else int(size) for size in sizes)


class _AttributeRow(GuardKindRow):
    """``v.<attribute> == expected``."""

    attribute: str

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)}.{self.attribute} == {short_repr(guard.expected)}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return bool(getattr(value, self.attribute) == guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        got = getattr(actual, self.attribute)
        where = path_text(guard.path)
        return f"{where}.{self.attribute}: expected {guard.expected}, got {got}"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value}.{self.attribute} == {source.bind(guard.expected)}"


class DtypeRow(_AttributeRow):
    kind = K.DTYPE
    attribute = "dtype"


class DeviceRow(_AttributeRow):
    kind = K.DEVICE
    attribute = "device"


class RequiresGradRow(_AttributeRow):
    kind = K.REQUIRES_GRAD
    attribute = "requires_grad"

    def holds(self, guard: Guard, value: Any) -> bool:
        return value.requires_grad is guard.expected

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{value}.requires_grad is {source.bind(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": guard.expected}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        expected = data.get("expected")
        return expected if expected is None else bool(expected)


class ShapeRow(GuardKindRow):
    """``tuple(v.shape)`` matches ``expected``, None matching any size."""

    kind = K.SHAPE

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)}.shape == {short_repr(guard.expected)}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return dims_match(tuple(value.shape), guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        return _dims_message(f"{path_text(guard.path)}.shape", guard.expected, tuple(actual.shape))

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return _dims_clause(f"{value}.shape", guard.expected, source)

    def dump(self, guard: Guard) -> dict[str, Any]:
        return {"expected": list(guard.expected)}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        return _load_dims(data["expected"])


class StridesRow(GuardKindRow):
    """``expected`` is (array family, strides): ``v.stride()`` for torch, ``v.strides`` for
    numpy, matching, None matching any."""

    kind = K.STRIDES

    def describe(self, guard: Guard) -> str:
        return f"{path_text(guard.path)}.strides == {short_repr(guard.expected)}"

    def holds(self, guard: Guard, value: Any) -> bool:
        family, strides = guard.expected
        return dims_match(strides_of(value, family), strides)

    def failure(self, guard: Guard, actual: Any) -> str:
        family, strides = guard.expected
        where = f"{path_text(guard.path)}.stride"
        return _dims_message(where, strides, strides_of(actual, family))

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        family, strides = guard.expected
        actual = f"{value}.stride()" if family == "torch" else f"{value}.strides"
        return _dims_clause(actual, strides, source)

    def dump(self, guard: Guard) -> dict[str, Any]:
        family, strides = guard.expected
        return {"expected": [family, list(strides)]}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        family, strides = data["expected"]
        return (str(family), _load_dims(strides))


class DenseRow(GuardKindRow):
    """Laid out densely in the dimension order ``expected[1]`` (innermost first), for the
    array family ``expected[0]``: required where strides are free."""

    kind = K.DENSE

    def describe(self, guard: Guard) -> str:
        order = guard.expected[1]
        return f"{path_text(guard.path)} is laid out densely in dimension order {order}"

    def holds(self, guard: Guard, value: Any) -> bool:
        return layout_is_dense(value, guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        family, order = guard.expected
        return (
            f"{path_text(guard.path)}: expected a dense layout in dimension order {order} "
            f"(innermost first, as when compiled), got strides {strides_of(actual, family)}"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        return f"{source.bind(layout_is_dense)}({value}, {source.bind(guard.expected)})"

    def dump(self, guard: Guard) -> dict[str, Any]:
        family, order = guard.expected
        return {"expected": [family, list(order)]}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        family, order = data["expected"]
        return (str(family), tuple(int(d) for d in order))


class TensorFlagsRow(GuardKindRow):
    """(is_conj, is_neg, is_inference) of a torch tensor."""

    kind = K.TENSOR_FLAGS

    def holds(self, guard: Guard, value: Any) -> bool:
        return bool(_flags(value) == guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        where = path_text(guard.path)
        return (
            f"{where} (is_conj, is_neg, is_inference): expected {guard.expected}, "
            f"got {_flags(actual)}"
        )

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        flags = f"({value}.is_conj(), {value}.is_neg(), {value}.is_inference())"
        return f"{flags} == {source.bind(guard.expected)}"


ROWS = (
    DtypeRow(),
    DeviceRow(),
    RequiresGradRow(),
    ShapeRow(),
    StridesRow(),
    DenseRow(),
    TensorFlagsRow(),
)

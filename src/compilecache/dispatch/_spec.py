"""The specialization spec handed to a backend: what each input is, what is static, what dynamic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._arrays import ArrayMeta
from ._guards import Path, path_text, short_repr, type_name


class LeafSpec(NamedTuple):
    """One input leaf: a constant (``value``), an object matched by identity (``value()`` gives
    it, or None once it is gone: held weakly), an alias of another leaf (``value`` is that
    leaf's path), a dynamic int, or
    an array (``array``) whose ``dynamic_dims`` may take any size and whose strides at
    ``dynamic_strides`` any value."""

    path: Path
    kind: str  # "constant", "object", "dynamic-int", "array"
    type: type
    value: Any = None
    array: ArrayMeta | None = None
    dynamic_dims: frozenset[int] = frozenset()
    dynamic_strides: frozenset[int] = frozenset()

    def describe(self) -> str:
        where = path_text(self.path)
        if self.kind == "array" and self.array is not None:
            shape = tuple(
                None if i in self.dynamic_dims else size for i, size in enumerate(self.array.shape)
            )
            return f"{where}: {self.array.family} {self.array.dtype} shape {shape}"
        if self.kind == "dynamic-int":
            return f"{where}: any int"
        if self.kind == "constant":
            return f"{where} = {short_repr(self.value)}"
        if self.kind == "alias":
            return f"{where}: the same object as {path_text(self.value)}"
        target = self.value() if callable(self.value) else self.value
        return f"{where}: the {type_name(self.type)} object {short_repr(target)}"


@dataclass(frozen=True)
class Specialization:
    """Everything a backend may specialize on, leaf by leaf, in argument order.

    ``dynamic`` is True when any dimension or int is dynamic.
    """

    leaves: tuple[LeafSpec, ...] = ()
    _by_path: dict[Path, LeafSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_path.update({leaf.path: leaf for leaf in self.leaves})

    @property
    def dynamic(self) -> bool:
        return any(leaf.dynamic_dims or leaf.kind == "dynamic-int" for leaf in self.leaves)

    def leaf(self, path: Path) -> LeafSpec | None:
        """The leaf at ``path``, e.g. ``(("arg", "x"),)``."""
        return self._by_path.get(path)

    def dynamic_dims(self, path: Path) -> frozenset[int]:
        leaf = self._by_path.get(path)
        return leaf.dynamic_dims if leaf is not None else frozenset()

    def describe(self) -> list[str]:
        return [leaf.describe() for leaf in self.leaves]

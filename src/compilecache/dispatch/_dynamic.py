"""Automatic dynamic: which dimensions and ints a function's next compile treats as dynamic.

Like Dynamo's frame state: the first compile is static and records every array's sizes and
strides and every int's value, per input path. When a later call misses and a recorded size,
stride or int differs, that one becomes dynamic for every later compile of the function (it
stays dynamic), so a function called with twelve batch sizes compiles at most twice.
``dynamic=True`` makes every dimension and int dynamic from the start; ``dynamic=False`` never
makes anything dynamic except what :func:`mark_dynamic` marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._arrays import ArrayMeta
from ._guards import Path


@dataclass
class _Seen:
    shape: tuple[int, ...]
    strides: tuple[int, ...] | None
    dynamic_dims: set[int] = field(default_factory=set)
    dynamic_strides: set[int] = field(default_factory=set)


class ShapeObservations:
    """Per code object: what was seen, and what became dynamic. Not thread-safe on its own:
    the dispatch layer uses it under the state's compile lock."""

    def __init__(self) -> None:
        self._arrays: dict[Path, _Seen] = {}
        self._ints: dict[Path, int] = {}
        self._dynamic_ints: set[Path] = set()

    def array_dims(
        self,
        path: Path,
        meta: ArrayMeta,
        *,
        mode: bool | None,
        marked_dynamic: set[int],
        marked_static: set[int],
        static_sizes: frozenset[int] = frozenset(),
    ) -> tuple[frozenset[int], frozenset[int]]:
        """Record ``meta`` at ``path``; return its (dynamic dims, dynamic stride positions).
        A dimension whose size is in ``static_sizes`` is compiled static this time (it stays
        dynamic for the compiles after)."""
        ndim = len(meta.shape)
        seen = self._arrays.get(path)
        if seen is None or len(seen.shape) != ndim:
            seen = self._arrays[path] = _Seen(meta.shape, meta.strides)
        elif mode is None:
            seen.dynamic_dims |= {i for i in range(ndim) if seen.shape[i] != meta.shape[i]}
            if seen.strides is not None and meta.strides is not None:
                seen.dynamic_strides |= {
                    i for i in range(ndim) if seen.strides[i] != meta.strides[i]
                }
            seen.shape, seen.strides = meta.shape, meta.strides
        dims = set(range(ndim)) if mode is True else set(seen.dynamic_dims)
        dims = (dims | marked_dynamic) - marked_static
        dims = {d for d in dims if meta.shape[d] not in static_sizes}
        strides = set(seen.dynamic_strides) if mode is None else set()
        if dims and meta.strides is not None:
            # A stride is a product of the sizes of the dimensions laid out inside it in memory
            # (those with smaller strides), so it can vary with any of them that is dynamic.
            # Memory order, not index order: transposed and other views are laid out otherwise.
            magnitude = [abs(s) for s in meta.strides]
            strides |= {
                i for i in range(ndim) if any(d != i and magnitude[d] <= magnitude[i] for d in dims)
            }
        return frozenset(dims), frozenset(strides)

    def int_is_dynamic(self, path: Path, value: int, *, mode: bool | None) -> bool:
        """Record ``value`` at ``path``; return whether ints there are dynamic."""
        if mode is True:
            return True
        seen = self._ints.get(path)
        self._ints[path] = value
        if mode is None and seen is not None and seen != value:
            self._dynamic_ints.add(path)
        return path in self._dynamic_ints

    def snapshot(self) -> tuple[dict[Path, _Seen], dict[Path, int], set[Path]]:
        """A copy of what was seen, to :meth:`restore` if the compile it informs fails."""
        arrays = {
            path: _Seen(seen.shape, seen.strides, set(seen.dynamic_dims), set(seen.dynamic_strides))
            for path, seen in self._arrays.items()
        }
        return arrays, dict(self._ints), set(self._dynamic_ints)

    def restore(self, saved: tuple[dict[Path, _Seen], dict[Path, int], set[Path]]) -> None:
        """Forget what was seen since :meth:`snapshot`: a call that failed to compile (its
        inputs were wrong) must not make dimensions dynamic for the calls after it."""
        self._arrays, self._ints, self._dynamic_ints = saved

    def clear(self) -> None:
        self._arrays.clear()
        self._ints.clear()
        self._dynamic_ints.clear()

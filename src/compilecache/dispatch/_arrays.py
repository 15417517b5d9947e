"""Recognising tensors and arrays, and reading their metadata, without importing their libraries.

torch and numpy are looked up in ``sys.modules``: if a program has not imported them, none of its
arguments can be their arrays, so compilecache never imports them itself. Anything else that
exposes ``shape`` and ``dtype`` (JAX, CuPy, ...) is treated as a duck-typed array.
"""

from __future__ import annotations

import functools
import sys
import weakref
from dataclasses import dataclass
from typing import Any

TORCH, NUMPY, DUCK = "torch", "numpy", "array"


@dataclass(frozen=True)
class ArrayMeta:
    """What a guard and a specialization need to know of one tensor or array."""

    family: str  # TORCH, NUMPY or DUCK
    dtype: Any
    device: Any  # None where the family has no devices
    requires_grad: bool | None  # None where the family has no autograd
    shape: tuple[int, ...]
    strides: tuple[int, ...] | None  # in elements for torch, bytes for numpy; None: unknown


def array_family(value: object) -> str | None:
    """TORCH, NUMPY or DUCK for a tensor or array, else None."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return TORCH
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return NUMPY
    if isinstance(value, type):
        return None
    try:
        shape = value.shape  # type: ignore[attr-defined]
        value.dtype  # type: ignore[attr-defined]  # noqa: B018
    except Exception:
        return None
    if isinstance(shape, tuple) and all(type(size) is int for size in shape):
        return DUCK
    return None


def array_meta(value: Any, family: str) -> ArrayMeta:
    if family == TORCH:
        return ArrayMeta(
            family,
            value.dtype,
            value.device,
            bool(value.requires_grad),
            tuple(value.shape),
            tuple(value.stride()),
        )
    strides = getattr(value, "strides", None)
    return ArrayMeta(
        family,
        value.dtype,
        getattr(value, "device", None) if family == DUCK else None,
        None,
        tuple(value.shape),
        tuple(strides) if isinstance(strides, tuple) else None,
    )


# -- mark_dynamic / mark_static ---------------------------------------------------------------
# torch tensors carry the marks as attributes (as Dynamo's marks do); numpy arrays cannot hold
# attributes and are unhashable, so their marks live in a table keyed by id, dropped by a weak
# reference callback when the array dies.
_MARKS: dict[int, tuple[weakref.ref[Any], set[int], set[int]]] = {}
_DYNAMIC_ATTR = "_compilecache_dynamic_dims"
_STATIC_ATTR = "_compilecache_static_dims"


def _forget(key: int, _ref: object) -> None:
    _MARKS.pop(key, None)


def _marks(value: Any) -> tuple[set[int], set[int]] | None:
    found = _MARKS.get(id(value))
    if found is not None and found[0]() is value:
        return found[1], found[2]
    return None


def _mark(value: Any, dims: set[int], *, dynamic: bool) -> None:
    family = array_family(value)
    if family is None:
        raise TypeError(f"can only mark tensors and arrays, not {type(value).__name__}")
    ndim = len(value.shape)
    for dim in dims:
        if not -ndim <= dim < ndim:
            raise IndexError(f"dimension {dim} out of range for a {ndim}-d array")
    dims = {dim % ndim for dim in dims} if ndim else set()
    try:
        attr = _DYNAMIC_ATTR if dynamic else _STATIC_ATTR
        setattr(value, attr, set(getattr(value, attr, set())) | dims)
        return
    except (AttributeError, TypeError):
        pass
    marks = _marks(value)
    if marks is None:
        key = id(value)
        marks = (set(), set())
        _MARKS[key] = (weakref.ref(value, functools.partial(_forget, key)), *marks)
    (marks[0] if dynamic else marks[1]).update(dims)


def mark_dynamic(value: Any, dim: int | list[int] | tuple[int, ...]) -> None:
    """Compile ``value``'s dimension(s) ``dim`` as dynamic from the first compile on.

    >>> import numpy as np
    >>> x = np.zeros((8, 3)); mark_dynamic(x, 0)
    """
    _mark(value, {dim} if isinstance(dim, int) else set(dim), dynamic=True)


def mark_static(value: Any, dim: int | list[int] | tuple[int, ...] | None = None) -> None:
    """Never make ``value``'s dimension(s) ``dim`` (default: all) dynamic."""
    dims = (
        set(range(len(value.shape))) if dim is None else {dim} if isinstance(dim, int) else set(dim)
    )
    _mark(value, dims, dynamic=False)


def marked_dims(value: Any) -> tuple[set[int], set[int]]:
    """The (dynamic, static) dimension marks of ``value`` (torch's own marks included)."""
    dynamic = set(getattr(value, _DYNAMIC_ATTR, ()))
    dynamic |= set(getattr(value, "_dynamo_dynamic_indices", ()))
    static = set(getattr(value, _STATIC_ATTR, ()))
    marks = _marks(value)
    if marks is not None:
        dynamic |= marks[0]
        static |= marks[1]
    return dynamic - static, static

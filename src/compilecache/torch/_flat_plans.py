"""Between a call's structures and a package's flat tensors, fast: the inputs flattened, the
outputs rebuilt.

A package returns flat tensors; ``pytree.tree_unflatten`` turns them back into forward's
output (a ``ModelOutput`` holding a cache, say). For transformers' types that costs about
0.2 ms per call, most of it transformers' unflatten functions importing classes by dotted
path on every call: as much as the package itself takes for a decode step of a small model.

:class:`OutputPlan` unflattens the first call's outputs with pytree and reads, from the
result, a plan: where each flat output sits in it, and how to make each container again
(tuples, lists, dicts, ``ModelOutput`` s and state objects such as caches, made anew on every
call with the same attributes). Later calls follow the plan. The plan is used only when it
reproduces the first result exactly (the same types and attributes, the flat tensors at the
same places, every other value an immutable constant); otherwise every call unflattens with
pytree, as before.

:class:`InputPlan` does the converse for the inputs: on the first call it finds where each
tensor that ``pytree.tree_leaves`` gives sits in the call (by item, key and attribute), and
later calls read them from there. That is sound because a package serves only calls whose
structure its guards matched: the same types, keys, attributes and lengths.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from ..dispatch._guard_build import is_state_type

Build = Callable[[list[Any]], Any]
_CONSTANTS = (type(None), bool, int, float, str, torch.dtype, torch.device, type)
_DEPTH = 12


class _Unplannable(Exception):
    """The result holds something the plan cannot make again."""


class OutputPlan:
    """``plan(flat)``: forward's output structure holding ``flat`` (see the module docstring)."""

    def __init__(self, spec: Any) -> None:
        self._spec = spec
        self._build: Build | None = None
        self._planned = False

    def __call__(self, flat: list[Any]) -> Any:
        if self._build is not None:
            return self._build(flat)
        from torch.utils import _pytree as pytree

        result = pytree.tree_unflatten(flat, self._spec)
        if not self._planned:
            self._planned = True
            self._build = plan_for(result, flat)
        return result


def plan_for(result: Any, flat: list[Any]) -> Build | None:
    """A function making ``result`` again from flat outputs like ``flat``, or None when
    ``result`` holds what it cannot make again (or the plan does not reproduce it)."""
    places = {id(value): index for index, value in enumerate(flat)}
    if len(places) != len(flat):
        return None  # a tensor returned twice: where it goes is ambiguous
    try:
        build = _plan(result, places, 0)
    except _Unplannable:
        return None
    return build if _same(build(flat), result, 0) else None


def _plan(value: Any, places: dict[int, int], depth: int, restored: bool = False) -> Build:
    """``restored``: inside an object that transformers' generic unflatten makes again,
    which restores every object within by ``__dict__`` too."""
    if depth > _DEPTH:
        raise _Unplannable
    place = places.get(id(value))
    if place is not None:
        return operator.itemgetter(place)
    kind = type(value)
    if isinstance(value, torch.Tensor):
        raise _Unplannable  # a tensor that is not one of the outputs
    if kind in _CONSTANTS:
        return lambda flat: value
    if kind is tuple or kind is list:
        parts = [_plan(item, places, depth + 1, restored) for item in value]
        return lambda flat: kind(part(flat) for part in parts)
    if kind is dict:
        items = [(key, _plan(item, places, depth + 1, restored)) for key, item in value.items()]
        return lambda flat: {key: part(flat) for key, part in items}
    if isinstance(value, OrderedDict) and hasattr(kind, "__dataclass_fields__"):
        # A transformers ModelOutput: made by keyword, as its own unflatten does.
        fields = [(key, _plan(item, places, depth + 1, restored)) for key, item in value.items()]
        return lambda flat: kind(**{key: part(flat) for key, part in fields})
    if ((restored and not _has_slots(kind)) or _restored_by_dict(kind)) and type(
        getattr(value, "__dict__", None)
    ) is dict:
        attributes = [
            (name, _plan(item, places, depth + 1, True)) for name, item in vars(value).items()
        ]
        new = object.__new__

        def make(flat: list[Any]) -> Any:
            made = new(kind)
            made.__dict__.update({name: part(flat) for name, part in attributes})
            return made

        return make
    raise _Unplannable


def _restored_by_dict(kind: type) -> bool:
    """Whether pytree makes a ``kind`` again by restoring its ``__dict__`` (transformers'
    generic cache unflatten), so that a plan doing the same makes what pytree makes. Not a
    type with slots (a slot is not in ``__dict__``), nor one whose own unflatten may derive
    values (a length from a tensor's shape) that a plan would freeze."""
    if not is_state_type(kind) or _has_slots(kind):
        return False
    from torch.utils import _pytree as pytree

    node = pytree.SUPPORTED_NODES.get(kind)
    unflatten = getattr(node, "unflatten_fn", None)
    return (
        getattr(unflatten, "__module__", "") == "transformers.exporters.exporter_dynamo"
        and getattr(unflatten, "__name__", "") == "_pytree_unflatten"
    )


def _has_slots(kind: type) -> bool:
    """Whether ``kind`` keeps data in slots (``ABC``'s empty ``__slots__`` keeps none)."""
    return any(vars(k).get("__slots__") not in (None, ()) for k in kind.__mro__[:-1])


def _same(made: Any, want: Any, depth: int) -> bool:
    if isinstance(want, torch.Tensor) or type(want) in _CONSTANTS:
        return made is want or (type(want) in _CONSTANTS and made == want)
    if type(made) is not type(want) or depth > _DEPTH:
        return False
    if isinstance(want, (tuple, list)):
        return len(made) == len(want) and all(
            _same(a, b, depth + 1) for a, b in zip(made, want, strict=True)
        )
    if isinstance(want, dict):
        return (
            list(made) == list(want)
            and all(_same(made[key], want[key], depth + 1) for key in want)
            and _same_attributes(made, want, depth)
        )
    return _same_attributes(made, want, depth)


def _same_attributes(made: Any, want: Any, depth: int) -> bool:
    mine, theirs = getattr(made, "__dict__", {}), getattr(want, "__dict__", {})
    return list(mine) == list(theirs) and all(
        _same(mine[name], theirs[name], depth + 1) for name in theirs
    )


Step = tuple[bool, Any]  # (by attribute, name or index)


class InputPlan:
    """``plan(root)``: the tensors of ``root`` (the call's ``(args, kwargs)``) in
    ``pytree.tree_leaves`` order (see the module docstring)."""

    def __init__(self) -> None:
        self._paths: list[list[Step]] | None = None
        self._planned = False

    def __call__(self, root: Any) -> list[Any]:
        paths = self._paths
        if paths is not None:
            return [_follow(root, path) for path in paths]
        from torch.utils._pytree import tree_leaves

        leaves = [leaf for leaf in tree_leaves(root) if isinstance(leaf, torch.Tensor)]
        if not self._planned:
            self._planned = True
            self._paths = paths_for(root, leaves)
        return leaves


def paths_for(root: Any, leaves: list[Any]) -> list[list[Step]] | None:
    """Where each of ``leaves`` sits in ``root``, or None when one is not found exactly once."""
    found: dict[int, list[Step]] = {}
    twice: set[int] = set()
    _find(root, [], found, twice, 0)
    paths = []
    for leaf in leaves:
        if id(leaf) not in found or id(leaf) in twice:
            return None
        paths.append(found[id(leaf)])
    if any(_follow(root, path) is not leaf for path, leaf in zip(paths, leaves, strict=True)):
        return None
    return paths


def _find(
    value: Any, path: list[Step], found: dict[int, list[Step]], twice: set[int], depth: int
) -> None:
    if depth > _DEPTH:
        return
    if isinstance(value, torch.Tensor):
        if id(value) in found:
            twice.add(id(value))
        found[id(value)] = path
        return
    kind = type(value)
    if kind is tuple or kind is list:
        for index, item in enumerate(value):
            _find(item, [*path, (False, index)], found, twice, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _find(item, [*path, (False, key)], found, twice, depth + 1)
    elif is_state_type(kind) and type(getattr(value, "__dict__", None)) is dict:
        for name, item in vars(value).items():
            _find(item, [*path, (True, name)], found, twice, depth + 1)


def _follow(value: Any, path: list[Step]) -> Any:
    for by_attribute, step in path:
        value = value.__dict__[step] if by_attribute else value[step]
    return value

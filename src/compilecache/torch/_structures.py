"""Structured inputs and outputs of AOT packages: nesting, constants and state objects.

A package takes a flat list of tensors and returns one. The call around it may be structured:
keyword arguments, containers, constants (``None``, bools, ints, strings: guarded by the
dispatch layer and baked into the package by export), and objects registered with torch's
pytree, such as a model library's cache of key and value tensors. Inputs are flattened with
torch's pytree (the order export saw), outputs rebuilt from the package's output spec (so a
``ModelOutput`` comes back with its type and fields).

**State objects** (types registered with :func:`compilecache.dispatch.register_state_type`: a
``DynamicCache``) are updated in place by eager code: ``model(ids, past_key_values=cache)``
appends to ``cache`` and returns that very object. A package returns a new one instead, so
:func:`carry_state_back` moves the new state into the object the caller passed and puts that
object in the result: the caller sees what eager mode gives.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import torch

from ..dispatch import Specialization
from ..dispatch._guard_build import is_dense, is_state_type, memory_order

#: Constants a call may pass besides tensors (guarded, baked into the package).
SCALARS = (bool, int, float, str, type(None))
_DEPTH = 6


class InputUnsupported(Exception):
    """An input an AOT package cannot take (``reason`` says which and why)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_inputs(args: tuple[Any, ...], kwargs: dict[str, Any], spec: Specialization) -> None:
    """Raise :class:`InputUnsupported` unless every input leaf is a tensor or a constant that
    the guards pin (an int that varies between calls cannot be baked into a package)."""
    from torch.utils._pytree import tree_leaves

    for leaf in spec.leaves:
        if leaf.kind == "dynamic-int":
            raise InputUnsupported(
                "an int input varies between calls (AOT packages bake ints in; pass it as a "
                "tensor, or mark it static)"
            )
    for value in tree_leaves((args, kwargs)):
        if not isinstance(value, (torch.Tensor, *SCALARS)):
            raise InputUnsupported(
                f"an input is a {type(value).__name__}, which is neither a tensor, a constant, "
                "nor a structure registered with torch's pytree"
            )


def dynamic_shapes(value: Any, dims: dict[int, frozenset[int]]) -> Any:
    """The ``dynamic_shapes`` entry of torch.export mirroring ``value``: a tensor gets its
    dynamic dimensions (``dims``, by the tensor's identity), containers and pytree nodes the
    entries of their children, in the order of their flattening."""
    from torch.utils import _pytree as pytree

    if isinstance(value, torch.Tensor):
        found = dims.get(id(value))
        if not found:
            return None
        from torch.export import Dim

        return dict.fromkeys(sorted(found), Dim.DYNAMIC)
    kind = type(value)
    if kind in (dict, collections.OrderedDict, collections.defaultdict):
        return {key: dynamic_shapes(item, dims) for key, item in value.items()}
    if isinstance(value, (tuple, list)):  # named tuples too: export takes a tuple for them
        items = [dynamic_shapes(item, dims) for item in value]
        return items if isinstance(value, list) else tuple(items)
    node = pytree.SUPPORTED_NODES.get(kind)
    if node is not None:
        children, _ = node.flatten_fn(value)
        return [dynamic_shapes(child, dims) for child in children]
    return None


def dims_by_identity(
    args: tuple[Any, ...], kwargs: dict[str, Any], spec: Specialization
) -> dict[int, frozenset[int]]:
    """The dynamic dimensions of each input tensor, by its identity (the spec names tensors
    by their paths in the adapter's ``(*args, **kwargs)``, through containers and state)."""
    roots = {"args": args, "kwargs": kwargs}
    found: dict[int, frozenset[int]] = {}
    for leaf in spec.leaves:
        if leaf.kind != "array" or not leaf.dynamic_dims or leaf.path[0][0] != "arg":
            continue
        value: Any = roots.get(leaf.path[0][1])
        try:
            for step in leaf.path[1:]:
                value = value[step[1]] if step[0] in ("item", "key") else getattr(value, step[1])
        except (LookupError, AttributeError, TypeError):
            continue
        if isinstance(value, torch.Tensor):
            found[id(value)] = leaf.dynamic_dims
    return found


def carry_state_back(inputs: Any, result: Any) -> Any:
    """Move the state of each state object in ``result`` into the input object of the same
    type, and return ``result`` holding the input objects. Only where that pairing is
    unambiguous: one input and one output object of the type (two caches of one type in and
    out are left as the package returned them)."""
    given: list[Any] = []
    _collect(inputs, given, 0)
    if not given:
        return result
    returned: list[Any] = []
    _collect(result, returned, 0)
    pairs = {}
    for kind in {type(value) for value in returned}:
        ins = [value for value in given if type(value) is kind]
        outs = [value for value in returned if type(value) is kind]
        if len(ins) == 1 and len(outs) == 1 and ins[0] is not outs[0]:
            pairs[id(outs[0])] = ins[0]
    if not pairs:
        return result
    return _replace(result, pairs, 0)


def _collect(value: Any, found: list[Any], depth: int) -> None:
    if depth > _DEPTH:
        return
    if is_state_type(type(value)):
        found.append(value)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _collect(item, found, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found, depth + 1)


def _replace(value: Any, pairs: dict[int, Any], depth: int) -> Any:
    if depth > _DEPTH:
        return value
    target = pairs.get(id(value))
    if target is not None:
        merge_state(target, value)
        return target
    if type(value) is tuple:
        return tuple(_replace(item, pairs, depth + 1) for item in value)
    if isinstance(value, list):
        value[:] = [_replace(item, pairs, depth + 1) for item in value]
    elif isinstance(value, dict):  # ModelOutput too: setting an item sets the attribute
        for key, item in list(value.items()):
            new = _replace(item, pairs, depth + 1)
            if new is not item:
                value[key] = new
    return value


def merge_state(target: Any, new: Any, depth: int = 0) -> None:
    """Make ``target`` hold ``new``'s state, updating nested state objects (an
    ``EncoderDecoderCache``'s caches, a cache's layers) in place rather than replacing them,
    as eager code does: a caller holding an inner object sees it updated."""
    state = target.__dict__
    for name, value in vars(new).items():
        old = state.get(name)
        if depth < _DEPTH and _same_state_kind(old, value):
            merge_state(old, value, depth + 1)
        elif (
            depth < _DEPTH
            and isinstance(old, list)
            and isinstance(value, list)
            and len(old) == len(value)
            and all(map(_same_state_kind, old, value))
        ):
            for inner, item in zip(old, value, strict=True):
                merge_state(inner, item, depth + 1)
        else:
            state[name] = value
    for name in [name for name in state if name not in vars(new)]:
        del state[name]


def _same_state_kind(old: Any, new: Any) -> bool:
    return old is not new and type(old) is type(new) and is_state_type(type(new))


def densify_states(values: Iterable[Any]) -> None:
    """Make dense the keys and values of transformers' dynamic cache layers among ``values``
    that are views with gaps (what ``DynamicCache.crop`` leaves: assisted decoding,
    contrastive search): the same values, one copy, as eager's next ``torch.cat`` of the cache
    makes anyway. Without this, each cropped length has strides of its own, so a package of
    its own. Nothing else is touched: a static layer's tensors, updated in place, or any
    other state tensor a caller may hold a view of."""
    for value in values:
        if is_state_type(type(value)):
            _densify(value, 0)


def _densify(state: Any, depth: int) -> None:
    if depth > _DEPTH:
        return
    attributes = getattr(state, "__dict__", None)
    if type(attributes) is not dict:
        return
    grows = _grows_by_concatenation(type(state))
    for name, item in attributes.items():
        if isinstance(item, torch.Tensor):
            # Only a dynamic layer's keys and values, which eager replaces by torch.cat: any
            # other state tensor may be updated in place through a view the caller holds.
            if grows and name in _GROWN and not item.is_contiguous() and not _dense(item):
                attributes[name] = item.contiguous()
        elif isinstance(item, (list, tuple)):
            for inner in item:
                if is_state_type(type(inner)):
                    _densify(inner, depth + 1)
        elif is_state_type(type(item)):
            _densify(item, depth + 1)


_GROWN = frozenset({"keys", "values"})


def _grows_by_concatenation(kind: type) -> bool:
    """transformers' dynamic layers (``DynamicLayer`` and subclasses), not static ones."""
    names = {k.__name__ for k in kind.__mro__}
    return "DynamicLayer" in names and "StaticLayer" not in names


def _dense(tensor: torch.Tensor) -> bool:
    shape, strides = tuple(tensor.shape), tuple(tensor.stride())
    return is_dense(shape, strides, memory_order(shape, strides), 1)

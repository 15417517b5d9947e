"""Guards as data: what must hold of a call for a compiled specialization to be valid.

A guard names a place in the call (a :data:`Path` of steps from an argument, a closure cell or
a global) and a check on the value found there. Guards are declarative, so that they can be
compiled into one Python function (:mod:`._guard_codegen`), explained in plain words on a miss,
and (in the artifact layer) written down and read back without evaluating anything as code.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

# A path step: ("arg", name) | ("cell", index, name) | ("global", name) | ("item", index)
# | ("key", key) | ("attr", name)
Step = tuple[Any, ...]
Path = tuple[Step, ...]


class _Missing:
    """What a global that is not defined reads as (``None`` would be ambiguous)."""

    def __repr__(self) -> str:
        return "<not defined>"


MISSING = _Missing()


class GuardKind(enum.Enum):
    """What a guard checks of the value at its path."""

    TYPE = "type"  # type(v) is expected
    IDENTITY = "identity"  # v is expected
    WEAK_IDENTITY = "weak_identity"  # v is expected() (a weak reference: the cache does not
    # keep a model or other argument alive; the entry dies with it)
    EQUALS = "equals"  # v == expected (after a TYPE guard)
    NAN = "nan"  # v != v (a float or complex NaN, which equals nothing)
    SIGN = "sign"  # the signs of a zero float (or of a complex's parts) are expected
    LENGTH = "length"  # len(v) == expected
    KEYS = "keys"  # tuple(v) == expected[0] and their types == expected[1] (in order)
    KEYSET = "keyset"  # v.keys() == expected (keyword arguments, any order)
    FLAT = "flat"  # v == expected[0] and tuple(map(type, v)) == expected[1]
    TYPED_SET = "typed_set"  # {(type(x), x, zero signs of x)} of the set v == expected
    ABSENT = "absent"  # a global name is not defined (so the builtin is what is called)
    EMPTY_CELL = "empty_cell"  # a closure cell holds nothing yet
    ALIAS = "alias"  # v is the value at the path ``expected`` (the same object passed twice)
    DISTINCT = "distinct"  # the values at the paths in ``expected`` are distinct objects
    TENSOR_FLAGS = "tensor_flags"  # (is_conj, is_neg, is_inference) of a torch tensor
    TORCH_STATE = "torch_state"  # torch's global state named by the path is expected
    DENSE = "dense"  # laid out densely in the dimension order expected[1] (innermost first),
    # for the array family expected[0]: required where strides are free
    DTYPE = "dtype"  # v.dtype == expected
    DEVICE = "device"  # v.device == expected
    REQUIRES_GRAD = "requires_grad"  # v.requires_grad is expected
    SHAPE = "shape"  # tuple(v.shape) matches expected, None matching any size
    STRIDES = "strides"  # v.stride() / v.strides matches expected, None matching any


class Guard(NamedTuple):
    """One check: ``kind`` of the value at ``path`` against ``expected``.

    ``depth`` orders guards so that a container's type and length are checked before its
    elements; ``cost`` orders guards of one depth cheapest first. (A named tuple: a miss builds
    dozens of these before its compile starts, and a tuple is several times cheaper to make
    than a frozen dataclass.) Everything a kind means is in its row of the guard-kind table
    (:mod:`._guard_kinds`); ``describe_guard`` puts one in words.
    """

    path: Path
    kind: GuardKind
    expected: Any
    depth: int
    cost: int


def path_text(path: Path) -> str:
    """A path as a person reads it: ``x[0]['k'].field``, ``global scale``, ``closure n``."""
    if not path:
        return "<call>"
    head = path[0]
    if head[0] == "arg":
        text = str(head[1])
    elif head[0] == "torch":
        text = f"torch {head[1]}"
    elif head[0] == "cell":
        text = f"closure {head[2]}"
    else:
        text = f"global {head[1]}"
    for step in path[1:]:
        if step[0] == "item":
            text += f"[{step[1]}]"
        elif step[0] == "key":
            text += f"[{short_repr(step[1])}]"
        else:
            text += f".{step[1]}"
    return text


def type_name(kind: Any) -> str:
    module = getattr(kind, "__module__", "")
    name = getattr(kind, "__qualname__", repr(kind))
    return name if module in ("builtins", "") else f"{module}.{name}"


def short_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break an explanation
        text = f"<{type_name(type(value))} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."

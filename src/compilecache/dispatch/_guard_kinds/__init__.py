"""The guard-kind table: one row per :class:`~compilecache.dispatch.GuardKind`, holding
everything about that kind (how it reads in words, what it looks at, whether it holds, why it
failed, its clause in a generated guard function, how it is stored and read back).

A new guard kind goes here: a member of ``GuardKind`` (``_guards.py``), a
:class:`GuardKindRow` subclass in the module of its family (``_objects``, ``_containers``,
``_arrays``), and the place in ``_guard_build.py`` that emits it for some values. The
evaluator, the code generator and the stored format read the table; the table's completeness
is checked at import, and ``tests/test_guard_kinds.py`` checks each row's generated clause
against its evaluator on random values.
"""

from __future__ import annotations

from .._guards import Guard, GuardKind
from . import _arrays, _containers, _objects
from ._arrays import TENSOR_KINDS as TENSOR_KINDS
from ._arrays import strides_of as strides_of
from ._objects import cell_is_empty as cell_is_empty
from ._row import GuardKindRow as GuardKindRow

ROWS: dict[GuardKind, GuardKindRow] = {
    row.kind: row for row in (*_objects.ROWS, *_containers.ROWS, *_arrays.ROWS)
}

_missing = [kind.name for kind in GuardKind if kind not in ROWS]
if _missing:  # a kind without a row would fail at its first use, far from here
    raise ImportError(f"guard kinds without a row in the guard-kind table: {_missing}")


def row_of(kind: GuardKind) -> GuardKindRow:
    return ROWS[kind]


def describe_guard(guard: Guard) -> str:
    """The guard in words, e.g. ``x.shape == (8, None)`` (None: any size)."""
    return ROWS[guard.kind].describe(guard)

"""Evaluating guards one by one, in Python, to say in plain words why a call missed.

This is the slow, explaining path (a miss, ``explain``, tests); the hot path runs the guards
compiled into one function by :mod:`._guard_codegen`. Both read the same :class:`Guard` data,
and what each kind means comes from its row of the guard-kind table (:mod:`._guard_kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._guard_build import torch_state_readers
from ._guard_kinds import ROWS
from ._guards import MISSING, Guard, Path, path_text


class Inputs:
    """The values a call's guards read: bound arguments, closure cells, globals."""

    def __init__(
        self,
        arguments: Mapping[str, Any],
        cells: tuple[Any, ...] | None,
        namespace: Mapping[str, Any],
    ) -> None:
        self.arguments = arguments
        self.cells = cells or ()
        self.namespace = namespace

    def resolve(self, path: Path) -> Any:
        """The value at ``path``; raises LookupError/AttributeError/TypeError if unreachable."""
        head = path[0]
        if head[0] == "torch":
            return torch_state_readers()[head[1]]()
        if head[0] == "arg":
            value = self.arguments[head[1]]
        elif head[0] == "cell":
            value = self.cells[head[1]].cell_contents
        else:
            value = self.namespace.get(head[1], MISSING)
        for step in path[1:]:
            is_item = step[0] in ("item", "key")
            value = value[step[1]] if is_item else getattr(value, step[1])
        return value


def holds_for(guard: Guard, inputs: Inputs) -> bool:
    """Whether ``guard`` holds for the call ``inputs`` (raises if its place is unreachable)."""
    row = ROWS[guard.kind]
    return row.holds(guard, row.subject(guard, inputs))


def holds(guard: Guard, value: Any) -> bool:
    """Whether ``guard`` holds for ``value`` (what its row's ``subject`` gives for it)."""
    return ROWS[guard.kind].holds(guard, value)


def first_failure(guards: list[Guard], inputs: Inputs) -> str | None:
    """The first guard of ``guards`` that fails for ``inputs``, in words, or None if all hold."""
    for guard in guards:
        row = ROWS[guard.kind]
        try:
            value = row.subject(guard, inputs)
            if row.holds(guard, value):
                continue
        except Exception as error:
            where = path_text(guard.path)
            return f"{where}: checking {row.describe(guard)} raised {error!r}"
        return row.failure(guard, value)
    return None


def failure_message(guard: Guard, actual: Any) -> str:
    """Why ``guard`` fails for ``actual``, e.g. ``x.shape[0]: expected 8, got 16``."""
    return ROWS[guard.kind].failure(guard, actual)

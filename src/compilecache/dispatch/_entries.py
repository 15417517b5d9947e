"""Cache entries: one compiled specialization of a function, with the guard that admits calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._guard_kinds import describe_guard
from ._guards import Guard
from ._spec import Specialization


def _never(*args: Any, **kwargs: Any) -> bool:
    return False


@dataclass(eq=False)
class CacheEntry:
    """A compiled specialization: ``check(*call)`` says whether it applies, ``compiled`` runs it.

    ``compile_id`` is ``"<function index>/<compile count>"``; ``annotation`` says in words what
    it was compiled for; ``hits`` counts the calls it served (approximately, under threads).
    ``precompiled`` marks entries loaded from a store rather than compiled in this process.
    """

    check: Callable[..., bool]
    compiled: Callable[..., Any]
    backend: Any
    backend_name: str
    compile_id: str
    guards: list[Guard]
    spec: Specialization
    annotation: str
    compile_seconds: float = 0.0
    precompiled: bool = False
    hits: int = 0
    valid: bool = True
    artifact: Any = field(default=None, repr=False)
    view: Any = field(default=None, repr=False)  # the BackendView it belongs to

    def invalidate(self) -> None:
        """Make the entry inert: its guard never passes again, so it is never selected.

        Safe to call while another thread is checking or running the entry: its compiled
        callable is left in place, so a call whose guard already passed finishes normally.
        """
        self.valid = False
        self.check = _never

    def describe_guards(self) -> list[str]:
        """The entry's guards in words, in the order they are checked."""
        return [describe_guard(guard) for guard in self.guards]

"""Cache entries: one compiled specialization of a function, with the guard that admits calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import CacheError
from ._guards import Guard
from ._spec import Specialization


def _never(*args: Any, **kwargs: Any) -> bool:
    return False


def _invalidated(*args: Any, **kwargs: Any) -> Any:
    raise CacheError("this cache entry was invalidated; call the jit function instead")


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

    def invalidate(self) -> None:
        """Make the entry inert: its guard never passes and calling it raises a clear error.

        Safe to call on an entry that another thread is about to run or is running: the run in
        flight finishes with the callable it already holds.
        """
        self.valid = False
        self.check = _never
        self.compiled = _invalidated

    def describe_guards(self) -> list[str]:
        """The entry's guards in words, in the order they are checked."""
        return [guard.describe() for guard in self.guards]

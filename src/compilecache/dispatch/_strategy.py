"""Execution strategies: whether a jit function compiles, only runs what is compiled, or runs
its plain Python, for the current call and, separately, for the jit functions it calls.

Like Dynamo's frame execution strategy (DEFAULT, SKIP, RUN_ONLY, for the frame and for the
frames it calls). The active strategy lives in a :class:`contextvars.ContextVar`, so it is per
thread and per asyncio task, never global.
"""

from __future__ import annotations

import contextvars
import enum
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Action(enum.Enum):
    """DEFAULT: look up, compile on a miss. SKIP: run the plain function without looking.
    RUN_ONLY: look up, run the plain function on a miss (never compile)."""

    DEFAULT = "default"
    SKIP = "skip"
    RUN_ONLY = "run_only"


@dataclass(frozen=True)
class Strategy:
    """What to do for the current call (``current``) and for jit functions it calls
    (``callees``)."""

    current: Action
    callees: Action


ACTIVE: contextvars.ContextVar[Strategy | None] = contextvars.ContextVar(
    "compilecache_strategy", default=None
)

# The tokens of the scopes entered in this context, innermost last (scopes nest properly
# within one context, so a stack shared by all scope objects is enough).
_SCOPE_TOKENS: contextvars.ContextVar[tuple[contextvars.Token[Strategy | None], ...]] = (
    contextvars.ContextVar("compilecache_scope_tokens", default=())
)

_RANK = {Action.DEFAULT: 0, Action.RUN_ONLY: 1, Action.SKIP: 2}


def stricter(first: Action, second: Action) -> Action:
    """The more restrictive of two actions (SKIP over RUN_ONLY over DEFAULT)."""
    return first if _RANK[first] >= _RANK[second] else second


class _Scope:
    """A strategy usable as a context manager and as a decorator.

    One scope object may be entered in several threads or tasks at once (``d = disable()``
    shared): the tokens to restore are kept per context, not on the object.
    """

    def __init__(self, strategy: Strategy) -> None:
        self._strategy = strategy

    def __enter__(self) -> None:
        token = ACTIVE.set(self._strategy)
        _SCOPE_TOKENS.set((*_SCOPE_TOKENS.get(), token))

    def __exit__(self, *exc_info: object) -> None:
        tokens = _SCOPE_TOKENS.get()
        _SCOPE_TOKENS.set(tokens[:-1])
        ACTIVE.reset(tokens[-1])

    def __call__(self, fn: F) -> F:
        strategy = self._strategy

        @functools.wraps(fn)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            token = ACTIVE.set(strategy)
            try:
                return fn(*args, **kwargs)
            finally:
                ACTIVE.reset(token)

        return scoped  # type: ignore[return-value]


def disable() -> _Scope:
    """Run jit functions as plain Python (no lookup, no compile) in this scope.

    >>> with disable():
    ...     pass
    """
    return _Scope(Strategy(Action.SKIP, Action.SKIP))


def run_only() -> _Scope:
    """Use what is already compiled, never compile, in this scope (a miss runs plain Python)."""
    return _Scope(Strategy(Action.RUN_ONLY, Action.RUN_ONLY))


@contextmanager
def strategy_for_callees(action: Action) -> Iterator[None]:
    """Run the enclosed code with ``action`` for jit functions it calls."""
    token = ACTIVE.set(Strategy(action, action))
    try:
        yield
    finally:
        ACTIVE.reset(token)

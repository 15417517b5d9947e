"""Where persistence plugs into dispatch, without changing dispatch's API.

On a miss, before compiling, the dispatch layer asks the function's hooks to ``load`` entries
for the call (the artifact layer looks them up in a store); loaded entries become precompile
entries, their guards evaluated before use. After a compile it hands the new entry to ``save``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import CacheUsageError
from ._entries import CacheEntry
from ._guard_eval import Inputs
from ._guards import Guard
from ._spec import Specialization


@dataclass
class CompileRequest:
    """One miss: the function, the call, its guards and specialization, and the backend."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    signature: inspect.Signature
    inputs: Inputs
    guards: list[Guard]
    spec: Specialization
    backend: Any
    backend_name: str
    #: The hooks' own state for this miss (the dispatch layer never reads it).
    hook_state: Any = None


@dataclass
class LoadedEntry:
    """A compiled specialization brought back by a hook: its own guards decide where it
    applies (they are checked against the call before it is used)."""

    guards: list[Guard]
    compiled: Callable[..., Any]
    spec: Specialization
    annotation: str = "loaded"
    compile_seconds: float = 0.0
    artifact: Any = None


class DispatchHooks(Protocol):
    """Persistence for one jit function (see the module docstring). ``finish(request)`` is
    called after every miss the hooks saw, whatever happened (a load, a compile, a failed
    compile), to release what they hold for it (a compile lock)."""

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]: ...

    def save(self, request: CompileRequest, entry: CacheEntry) -> None: ...

    def finish(self, request: CompileRequest) -> None: ...


def check_hooks(hooks: Any) -> Any:
    """``hooks``, if it has the :class:`DispatchHooks` methods; else :class:`CacheUsageError`
    naming the missing ones."""
    missing = [
        name for name in ("load", "save", "finish") if not callable(getattr(hooks, name, None))
    ]
    if missing:
        raise CacheUsageError(
            f"hooks {hooks!r} lack {', '.join(missing)}: persistence hooks define load(request), "
            "save(request, entry) and finish(request) (see compilecache.dispatch.DispatchHooks)"
        )
    return hooks


class NoHooks:
    """Nothing is loaded or saved (the default until a store is configured)."""

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        return ()

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        return None

    def finish(self, request: CompileRequest) -> None:
        return None

"""Where persistence plugs into dispatch, without changing dispatch's API.

On a miss, before compiling, the dispatch layer asks the function's hooks to ``load`` entries
for the call (the artifact layer looks them up in a store); loaded entries become precompile
entries, their guards evaluated before use. After a compile it hands the new entry to ``save``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    options: dict[str, Any] = field(default_factory=dict)


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
    """Persistence for one jit function (see the module docstring). A hook may also define
    ``finish(request)``, called after every miss it saw, whatever happened (to release locks)."""

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]: ...

    def save(self, request: CompileRequest, entry: CacheEntry) -> None: ...


class NoHooks:
    """Nothing is loaded or saved (the default until a store is configured)."""

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        return ()

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        return None

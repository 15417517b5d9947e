"""Per-code-object dispatch state: the entries, precompile entries, shape observations,
execution strategy and counters shared by every function made from one ``def``.

States are found by code object identity. A state holds its code object, and is itself held by
the jit wrappers using it; the registry holds states weakly, so a state lives while any wrapper
of its code does, and nothing leaks once they are gone (closures made by one ``def`` and jitted
separately share it while any of them lives).
"""

from __future__ import annotations

import itertools
import threading
import types
import weakref
from dataclasses import dataclass

from ._dynamic import ShapeObservations
from ._entries import CacheEntry
from ._strategy import Strategy

_function_index = itertools.count()


@dataclass
class DispatchCounters:
    """Per-function counters (hits are counted per entry, on the hot path)."""

    misses: int = 0
    compiles: int = 0
    recompiles: int = 0
    guard_errors: int = 0
    eager_runs: int = 0
    loaded: int = 0


class BackendView:
    """The entries of one backend (by its innermost identity) for one function context.

    Functions made from one ``def`` share a code object but not everything else: defaults,
    keyword-only defaults and globals are part of the function, not of the code, and no guard
    sees them. So a view belongs to one (backend, defaults, keyword defaults, globals)
    combination, held here so that their ids cannot be reused while the view lives; closures
    that differ only in cell contents share a view (the cells are guarded).
    """

    __slots__ = ("backend", "context", "entries", "hot", "limit_reasons", "lookup")

    def __init__(self, backend: object, context: tuple[object, ...]) -> None:
        self.backend = backend
        self.context = context
        self.entries: tuple[CacheEntry, ...] = ()
        self.lookup: tuple[CacheEntry, ...] = ()
        self.hot: tuple[CacheEntry, ...] = ()  # lookup, or () while a strategy is set
        self.limit_reasons: list[str] | None = None  # set when the recompile limit is reached


class CodeState:
    """Everything the dispatch layer keeps for one code object."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code
        self.index = next(_function_index)
        self.compile_count = 0
        # Copy-on-write: readers iterate ``lookup`` without a lock; writers build a new tuple.
        self.precompiled: tuple[CacheEntry, ...] = ()
        self.entries: tuple[CacheEntry, ...] = ()
        self.lookup: tuple[CacheEntry, ...] = ()
        self._views: dict[tuple[int, ...], BackendView] = {}
        self.shapes = ShapeObservations()
        self.strategy: Strategy | None = None
        self.counters = DispatchCounters()
        self.compile_lock = threading.Lock()  # one compile at a time: the single flight
        self._list_lock = threading.Lock()  # guards list mutation only, never held for long

    def __repr__(self) -> str:
        return f"<CodeState {self.code.co_name} entries={len(self.entries)}>"

    def view(self, backend: object, fn: types.FunctionType) -> BackendView:
        """The view of ``backend``'s entries for functions like ``fn`` (created on first use)."""
        context = (fn.__defaults__, fn.__kwdefaults__, fn.__globals__)
        key = (id(backend), *map(id, context))
        with self._list_lock:
            view = self._views.get(key)
            if view is None:
                view = self._views[key] = BackendView(backend, context)
                self._publish()
            return view

    def _publish(self) -> None:
        self.lookup = self.precompiled + self.entries
        for view in self._views.values():
            view.entries = tuple(e for e in self.entries if e.view is view)
            view.lookup = tuple(e for e in self.precompiled if e.view is view) + view.entries
            view.hot = view.lookup if self.strategy is None else ()

    def set_strategy(self, strategy: Strategy | None) -> None:
        """Set the per-function strategy (None: the default)."""
        with self._list_lock:
            self.strategy = strategy
            self._publish()

    def add_entry(self, entry: CacheEntry) -> None:
        """Put a freshly compiled entry first."""
        with self._list_lock:
            self.entries = (entry, *self.entries)
            self._publish()

    def add_precompiled(self, entry: CacheEntry) -> None:
        """Append an entry loaded from a store; precompile entries are looked up first."""
        with self._list_lock:
            self.precompiled = (*self.precompiled, entry)
            self._publish()

    def promote(self, entry: CacheEntry) -> None:
        """Move ``entry`` to the front of the (non-precompiled) entries: most recently used."""
        if not self._list_lock.acquire(blocking=False):
            return  # another thread is changing the list; ordering is only a hint
        try:
            if entry in self.entries and self.entries[0] is not entry:
                self.entries = (entry, *(e for e in self.entries if e is not entry))
                self._publish()
        finally:
            self._list_lock.release()

    def prune(self) -> None:
        """Drop invalidated entries from the lists."""
        with self._list_lock:
            if any(not entry.valid for entry in self.lookup):
                self.entries = tuple(e for e in self.entries if e.valid)
                self.precompiled = tuple(e for e in self.precompiled if e.valid)
                self._publish()

    def invalidate_all(self) -> None:
        """Invalidate every entry and forget shape observations and the recompile limit."""
        with self._list_lock:
            for entry in self.lookup:
                entry.invalidate()
            self.precompiled = self.entries = ()
            self._publish()
            for view in self._views.values():
                view.limit_reasons = None
        self.shapes.clear()

    def next_compile_id(self) -> str:
        compile_id = f"{self.index}/{self.compile_count}"
        self.compile_count += 1
        return compile_id


_states: weakref.WeakValueDictionary[int, CodeState] = weakref.WeakValueDictionary()
_states_lock = threading.Lock()


def state_for(code: types.CodeType) -> CodeState:
    """The state of ``code``, created on first use."""
    with _states_lock:
        state = _states.get(id(code))
        # The state holds its code, so an id found here belongs to a live code object; the
        # identity check guards against an id reused after both died.
        if state is None or state.code is not code:
            state = CodeState(code)
            _states[id(code)] = state
        return state


def live_states() -> list[CodeState]:
    with _states_lock:
        return list(_states.values())


def reset() -> None:
    """Invalidate every compiled entry of every function in this process and forget what was
    observed (shapes that became dynamic, recompile limits reached)."""
    for state in live_states():
        state.invalidate_all()

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
    """The entries of one backend (by its innermost identity): jit wrappers of one code object
    with different backends never run each other's compiled code."""

    __slots__ = ("backend", "entries", "hot", "lookup")

    def __init__(self, backend: object) -> None:
        self.backend = backend
        self.entries: tuple[CacheEntry, ...] = ()
        self.lookup: tuple[CacheEntry, ...] = ()
        self.hot: tuple[CacheEntry, ...] = ()  # lookup, or () while a strategy is set


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
        self._views: dict[int, BackendView] = {}
        self.shapes = ShapeObservations()
        self.strategy: Strategy | None = None
        self.counters = DispatchCounters()
        self.limit_reasons: list[str] | None = None
        self.compile_lock = threading.Lock()  # one compile at a time: the single flight
        self._list_lock = threading.Lock()  # guards list mutation only, never held for long

    def __repr__(self) -> str:
        return f"<CodeState {self.code.co_name} entries={len(self.entries)}>"

    def view(self, backend: object) -> BackendView:
        """The view of ``backend``'s entries (created on first use)."""
        with self._list_lock:
            view = self._views.get(id(backend))
            if view is None:
                view = self._views[id(backend)] = BackendView(backend)
                self._publish()
            return view

    def _publish(self) -> None:
        self.lookup = self.precompiled + self.entries
        for view in self._views.values():
            mine = view.backend
            view.entries = tuple(e for e in self.entries if e.backend is mine)
            view.lookup = tuple(e for e in self.precompiled if e.backend is mine) + view.entries
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

    def invalidate_all(self) -> None:
        """Invalidate every entry and forget shape observations and the recompile limit."""
        with self._list_lock:
            for entry in self.lookup:
                entry.invalidate()
            self.precompiled = self.entries = ()
            self._publish()
        self.shapes.clear()
        self.limit_reasons = None

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

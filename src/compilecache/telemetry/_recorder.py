"""Feed a process's counters into the persisted counters database, cheaply.

A :class:`Recorder` keeps what it last wrote and, at most every ``period`` seconds (checked on
the miss path only, never on a hit) and once at exit, adds the differences to the database in
one transaction: per tier (hits, misses, errors, rejected, corrupt, writes, bytes), the
artifact layer's counts (loaded, saved, load failures, waits, bypasses by reason), per
function (loads, compiles, compile seconds, seconds saved by loading instead of compiling),
and loads per stored entry.

One recorder per store object: hooks sharing a store share its recorder (each store counter
is added once). Tier counters are read without locks or I/O, so that a forked child can take
its parent's counts as its starting point (a child adds only what it counts itself). A flush
made during a call waits at most ``call_timeout`` for a busy database and keeps what it could
not write for the next flush; the flush at exit waits longer. A process killed with SIGKILL
loses what it had not flushed yet.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._counters_db import CountersDB, Delta

logger = logging.getLogger("compilecache.store")

_live: weakref.WeakSet[Recorder] = weakref.WeakSet()
_shared: dict[tuple[str, int], weakref.ReferenceType[Recorder]] = {}
_shared_lock = threading.Lock()


class Recorder:
    """Persists the counters of one store and of the artifact hooks using it (see the module
    docstring). ``artifact_stats``: an :class:`ArtifactStats` (a live object) to include;
    more with :meth:`attach`. ``owner``: flush when it is collected (and at exit)."""

    def __init__(
        self,
        db: CountersDB,
        store: Any,
        artifact_stats: Any = None,
        *,
        owner: Any = None,
        period: float = 5.0,
        call_timeout: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self._store = store
        self._sources: list[Any] = []
        self._period = period
        self._call_timeout = call_timeout
        self._clock = clock
        self._last_flush = clock()
        self._lock = threading.Lock()
        self._written: dict[tuple[str, str], float] = {}
        self._pending = Delta()
        self._failed = False
        _live.add(self)
        if artifact_stats is not None:
            self.attach(artifact_stats, owner)
        else:
            weakref.finalize(self, _flush_at_exit, weakref.ref(self))

    def attach(self, artifact_stats: Any, owner: Any = None) -> None:
        """Include ``artifact_stats`` too; flush when ``owner`` (its hooks) is collected."""
        with self._lock:
            self._sources.append(artifact_stats)
        # At exit, or when the owner goes (finalizers run once each).
        weakref.finalize(owner if owner is not None else artifact_stats, self.flush)

    # -- events the hooks report ----------------------------------------------------------
    def loaded(self, function: str, digest: str, compile_seconds: float) -> None:
        with self._lock:
            pending = self._pending
            pending.add(f"function:{function}", "loads", 1)
            pending.add(f"function:{function}", "seconds saved", compile_seconds)
            pending.add("artifacts", "seconds saved", compile_seconds)
            _, loads, _ = pending.loads.get(digest, (function, 0, 0.0))
            pending.loads[digest] = (function, loads + 1, time.time())

    def compiled(self, function: str, seconds: float) -> None:
        with self._lock:
            self._pending.add(f"function:{function}", "compiles", 1)
            self._pending.add(f"function:{function}", "compile seconds", seconds)

    # -- flushing -------------------------------------------------------------------------
    def maybe_flush(self) -> None:
        """Flush if the period has passed (called on the miss path, in a user's call)."""
        if self._clock() - self._last_flush >= self._period:
            self.flush(timeout=self._call_timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Add everything not yet written to the database; what cannot be written now (a busy
        or unwritable database: logged once) is kept for the next flush."""
        with self._lock:
            self._last_flush = self._clock()
            delta, self._pending = self._pending, Delta()
            current = self._current()
            for name, value in current.items():
                delta.add(*name, value - self._written.get(name, 0))
            delta.size = _disk_size(self._store)
            if not delta:
                return
            try:
                self.db.add(delta, busy_timeout=timeout)
            except Exception as error:  # advisory: never fail a call over statistics
                self._keep(delta)
                if not self._failed:
                    self._failed = True
                    logger.info("counters in %s not updated (yet): %r", self.db.path, error)
                return
            self._written.update(current)

    def _keep(self, delta: Delta) -> None:
        """Put a delta's events (not the store counters: they are recomputed) back."""
        for (scope, name), value in delta.counts.items():
            if scope.startswith("function:") or (scope, name) == ("artifacts", "seconds saved"):
                self._pending.add(scope, name, value)
        for key, (function, loads, when) in delta.loads.items():
            _, already, _ = self._pending.loads.get(key, (function, 0, 0.0))
            self._pending.loads[key] = (function, loads + already, when)

    def _current(self) -> dict[tuple[str, str], float]:
        found: dict[tuple[str, str], float] = {}
        for tier, values in self._store.tier_counters().items():
            for name, value in values.items():
                found[f"tier:{tier}", name] = value
        for artifacts in list(self._sources):
            # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs.
            for name, value in vars(artifacts).items():
                if isinstance(value, dict):
                    scope = "bypass" if name == "bypasses" else name.replace("_", " ")
                    for reason, count in value.items():
                        found[scope, reason] = found.get((scope, reason), 0) + count
                else:
                    key = ("artifacts", name.replace("_", " "))
                    found[key] = found.get(key, 0) + value
        return found

    def _after_fork(self) -> None:
        # The parent's counts are the parent's to write: start from them, with nothing pending.
        self._lock = threading.Lock()
        self._pending = Delta()
        self._written = self._current()


def recorder_for(db: CountersDB, store: Any, artifact_stats: Any, owner: Any) -> Recorder:
    """The recorder of ``store`` in ``db`` (made on first use), with ``artifact_stats``
    included."""
    key = (str(db.path), id(store))
    with _shared_lock:
        found = _shared.get(key)
        recorder = found() if found is not None else None
        if recorder is None or recorder._store is not store:
            recorder = Recorder(db, store)
            _shared[key] = weakref.ref(recorder)
    recorder.attach(artifact_stats, owner)
    return recorder


def _flush_at_exit(reference: weakref.ReferenceType[Recorder]) -> None:
    recorder = reference()
    if recorder is not None:
        recorder.flush()


def _after_fork_in_child() -> None:
    for recorder in list(_live):
        try:
            recorder._after_fork()
        except Exception:  # never break a fork over statistics
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _disk_size(store: Any) -> tuple[int, int] | None:
    local = store.maintenance()
    if local is not None:
        stats = local.stats()
        if stats.entries is not None and stats.size is not None:
            return stats.entries, stats.size
    return None

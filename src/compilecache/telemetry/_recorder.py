"""Feed a process's counters into the persisted counters database, cheaply.

A :class:`Recorder` keeps what it last wrote and, at most every ``period`` seconds (checked on
the miss path only, never on a hit) and once at exit, adds the differences to the database in
one transaction: per tier (hits, misses, errors, rejected, corrupt, writes, bytes), the
artifact layer's counts (loaded, saved, load failures, waits, bypasses by reason), per
function (loads, compiles, compile seconds, seconds saved by loading instead of compiling),
and loads per stored entry. A process killed with SIGKILL loses what it had not flushed yet.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ._counters_db import CountersDB, Delta

logger = logging.getLogger("compilecache.store")

_TIER_FIELDS = (
    "hits",
    "misses",
    "errors",
    "rejected",
    "corrupt",
    "writes",
    "evictions",
    "bytes_read",
    "bytes_written",
)


class Recorder:
    """Persists the counters of one store and one set of artifact hooks (see the module
    docstring). ``artifact_stats`` is the hooks' :class:`ArtifactStats` (a live object).
    ``owner``: flush when it is collected, and at exit."""

    def __init__(
        self,
        db: CountersDB,
        store: Any,
        artifact_stats: Any,
        *,
        owner: Any = None,
        period: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self._store = store
        self._artifact_stats = artifact_stats
        self._period = period
        self._clock = clock
        self._last_flush = clock()
        self._lock = threading.Lock()
        self._written: dict[tuple[str, str], float] = {}
        self._pending = Delta()
        self._failed = False
        # At exit, or when the owner goes: whichever comes first (finalizers run once).
        weakref.finalize(owner if owner is not None else self, self.flush)

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
        if self._clock() - self._last_flush >= self._period:
            self.flush()

    def flush(self) -> None:
        """Add everything not yet written to the database (errors are logged once)."""
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
                self.db.add(delta)
            except Exception as error:  # advisory: never fail a call over statistics
                if not self._failed:
                    self._failed = True
                    logger.info("counters in %s not updated: %r", self.db.path, error)
                return
            self._written.update(current)

    def _current(self) -> dict[tuple[str, str], float]:
        found: dict[tuple[str, str], float] = {}
        try:
            stats = self._store.stats()
        except Exception:
            stats = None
        if stats is not None:
            for tier in stats.tiers or (stats,):
                for name in _TIER_FIELDS:
                    found[f"tier:{tier.name}", name] = getattr(tier, name)
        artifacts = self._artifact_stats
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting them.
        for name, value in vars(artifacts).items():
            if isinstance(value, dict):
                scope = "bypass" if name == "bypasses" else name.replace("_", " ")
                for reason, count in value.items():
                    found[scope, reason] = count
            else:
                found["artifacts", name.replace("_", " ")] = value
        return found


def _disk_size(store: Any) -> tuple[int, int] | None:
    from ..stores import disk_store_of

    disk = disk_store_of(store)
    if disk is not None:
        stats = disk.stats()
        if stats.entries is not None and stats.size is not None:
            return stats.entries, stats.size
    return None


def disk_directory(store: Any) -> Any:
    """The directory of the disk store in ``store`` (unwrapping codecs and tiers), or None."""
    from ..stores import disk_store_of

    disk = disk_store_of(store)
    return None if disk is None else disk.root

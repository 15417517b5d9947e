"""What the artifact hooks count and say: the per-process counts (:class:`ArtifactStats`),
the counters persisted in the local store's directory (:mod:`compilecache.telemetry`), and
messages logged once per topic (a reason repeated on every call is noise)."""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..stores import BaseStore

logger = logging.getLogger("compilecache.artifacts")


@dataclass
class ArtifactStats:
    """What the hooks did in this process."""

    loaded: int = 0
    misses: int = 0
    saved: int = 0
    load_failures: int = 0
    waited: int = 0
    lock_timeouts: int = 0
    admission_skips: collections.Counter[str] = field(default_factory=collections.Counter)
    bypasses: collections.Counter[str] = field(default_factory=collections.Counter)


class HooksTelemetry:
    """The counts and messages of one set of hooks over ``store``. With ``record`` and a
    writable local store, the counters persist in its directory (``recorder``)."""

    def __init__(self, store: BaseStore, owner: Any, *, record: bool = True) -> None:
        self.stats = ArtifactStats()
        self.recorder: Any = _recorder_for(store, self.stats, owner) if record else None
        self._logged: set[str] = set()
        self._log_lock = threading.Lock()

    def note(self, topic: str, message: str, level: int = logging.WARNING) -> None:
        """Log ``message`` once per topic."""
        with self._log_lock:
            if topic in self._logged:
                return
            self._logged.add(topic)
        logger.log(level, "%s", message)

    def loaded(self, function: str, digest: str, compile_seconds: float) -> None:
        self.stats.loaded += 1
        if self.recorder is not None:
            self.recorder.loaded(function, digest, compile_seconds)

    def saved(self, function: str, compile_seconds: float) -> None:
        self.stats.saved += 1
        if self.recorder is not None:
            self.recorder.compiled(function, compile_seconds)

    def bypassed(self, function: str, reason: str, backend: Any) -> None:
        """A call that cannot be keyed: counted, told to the backend (it counts per model),
        logged once per function and reason at WARNING (the user loses the warm start)."""
        self.stats.bypasses[reason] += 1
        told = getattr(backend, "bypassed", None)
        if callable(told):
            told(reason)
        self.note(
            f"bypass:{function}:{reason}",
            f"not persisting {function}, so every process compiles it again: {reason}",
        )

    def maybe_flush(self) -> None:
        if self.recorder is not None:
            self.recorder.maybe_flush()


def _recorder_for(store: BaseStore, stats: ArtifactStats, owner: Any) -> Any:
    """The counters recorder of the local store's directory, or None without a local store
    or when the store is read-only (nothing is written into a read-only store's directory)."""
    from ..telemetry import CountersDB
    from ..telemetry._recorder import recorder_for

    directory = store.local_directory()
    if directory is None:
        return None
    return recorder_for(CountersDB(directory), store, stats, owner)

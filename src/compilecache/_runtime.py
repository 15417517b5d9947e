"""The process's runtime context: the configuration, read once, and what is made from it (the
store and the persistence hooks), shared by jit's default hooks, the torch layer and the
command line.

``runtime()`` reads the configuration (``current_config()``) on first use (never at import);
the store is opened on first need, once, and every set of hooks made here shares it (one disk
store per process, one set of counters). ``use_runtime(config)`` installs another
configuration (the command line does, with its ``--dir`` and ``--remote`` applied);
``reset_runtime()`` forgets everything, so that the next use reads the environment again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._config import Config, current_config, set_current_config

if TYPE_CHECKING:
    from .stores import BaseStore


class Runtime:
    """The configuration ``config`` and what is made from it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._store: BaseStore | None = None
        self._hooks: dict[type, Any] = {}

    def store(self) -> BaseStore:
        """The configured store (opened on first call: see ``open_store``)."""
        with self._lock:
            return self._store_locked()

    def _store_locked(self) -> BaseStore:
        if self._store is None:
            from .stores import open_store

            self._store = open_store(self.config)
        return self._store

    def hooks(self, kind: type | None = None) -> Any:
        """The persistence hooks of class ``kind`` (default: the artifact layer's
        ``ArtifactHooks``) over the configured store, one per class; nothing at all
        (``NoHooks``) when caching is disabled."""
        from .artifacts._persistence import ArtifactHooks
        from .dispatch._hooks import NoHooks

        kind = kind or ArtifactHooks
        with self._lock:
            found = self._hooks.get(kind)
            if found is None:
                config = self.config
                if config.disable:
                    found = NoHooks()
                else:
                    found = kind(
                        self._store_locked(),
                        salt=config.salt,
                        lock_ttl=config.lock_ttl,
                        lock_timeout=config.lock_timeout,
                    )
                self._hooks[kind] = found
            return found


_lock = threading.Lock()
_current: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime context (the configuration read on first call)."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(current_config())
        return _current


def use_runtime(config: Config) -> Runtime:
    """Make ``config`` this process's configuration (hooks and store made anew from it)."""
    global _current
    with _lock:
        set_current_config(config)
        _current = Runtime(config)
        return _current


def reset_runtime() -> None:
    """Forget the runtime context: the next use reads the configuration again
    (``compilecache.reconfigure()``, after changing ``COMPILECACHE_*`` in this process). jit
    functions with the default hooks follow at their next miss; hooks already handed out
    (``compilecache.torch``'s for a compiled model) keep the store they were made with."""
    global _current
    with _lock:
        set_current_config(None)
        _current = None

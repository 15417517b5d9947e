"""The hooks every jit function uses unless given others: persistence through the store the
configuration describes, set up on first need (not at import: the environment is read then)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from ..dispatch._entries import CacheEntry
from ..dispatch._hooks import CompileRequest, LoadedEntry


class ConfiguredHooks:
    """Persistence through ``open_store(Config.from_env())``, created on the first miss of a
    backend that can persist (``dumps``/``loads``); nothing at all with COMPILECACHE_DISABLE."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: Any = None

    def hooks(self) -> Any:
        with self._lock:
            if self._hooks is None:
                from .._config import Config
                from ..dispatch._hooks import NoHooks
                from ..stores import open_store
                from ._persistence import ArtifactHooks

                config = Config.from_env()
                if config.disable:
                    self._hooks = NoHooks()
                else:
                    self._hooks = ArtifactHooks(
                        open_store(config),
                        salt=config.salt,
                        lock_ttl=config.lock_ttl,
                        lock_timeout=config.lock_timeout,
                    )
            return self._hooks

    def reset(self) -> None:
        """Forget the hooks (the next miss reads the configuration again)."""
        with self._lock:
            self._hooks = None

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        from ._persistence import persistable

        if not persistable(request.backend):
            return ()
        return self.hooks().load(request)  # type: ignore[no-any-return]

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        if self._hooks is not None:
            self._hooks.save(request, entry)

    def finish(self, request: CompileRequest) -> None:
        if self._hooks is not None:
            self._hooks.finish(request)

"""The hooks every jit function uses unless given others: persistence through the store the
configuration describes (the process's runtime context, :mod:`compilecache._runtime`), set up
on first need (not at import: the environment is read then)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..dispatch._entries import CacheEntry
from ..dispatch._hooks import CompileRequest, LoadedEntry


class ConfiguredHooks:
    """Persistence through the runtime context's store, its hooks created on the first miss of
    a backend that can persist (``dumps``/``loads``); nothing at all with
    COMPILECACHE_DISABLE."""

    def hooks(self) -> Any:
        from .._runtime import runtime

        return runtime().hooks()

    def reset(self) -> None:
        """Forget the runtime context (the next miss reads the configuration again)."""
        from .._runtime import reset_runtime

        reset_runtime()

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        from ._persistence import persistable

        if not persistable(request.backend):
            return ()
        return self.hooks().load(request)  # type: ignore[no-any-return]

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        owner = _owner(request)
        if owner is not None:  # the hooks that loaded for it, even after a reconfiguration
            owner.save(request, entry)

    def finish(self, request: CompileRequest) -> None:
        owner = _owner(request)
        if owner is not None:
            owner.finish(request)


def _owner(request: CompileRequest) -> Any:
    """The hooks that loaded for ``request`` (None: none did, nothing to save or release)."""
    return getattr(request.hook_state, "owner", None)

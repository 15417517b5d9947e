"""Persistence of torch entries: the artifact layer's hooks, with JIT entries saved late.

A JIT entry's artifact (torch's cache artifacts) exists only after its first call, so its save
waits for that call; the compile lock is released at once (other processes waiting for the key
then compile it too, helped by torch's own caches: a JIT compile is not single-flight across
processes). AOT entries are saved as soon as they are compiled, under the lock.
"""

from __future__ import annotations

from typing import Any

from ..artifacts import ArtifactHooks
from ..dispatch import CacheEntry, CompileRequest


class TorchHooks(ArtifactHooks):
    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        compiled: Any = entry.compiled
        if getattr(compiled, "ready", True) is False:
            self.finish(request)

            def save_when_ready() -> None:
                # The compile happened in the first call: that is the entry's compile time
                # (for admission, manifests and the seconds a load saves).
                entry.compile_seconds += compiled.first_call_seconds
                ArtifactHooks.save(self, request, entry)

            compiled.on_ready = save_when_ready
            return
        super().save(request, entry)


def default_hooks() -> Any:
    """The torch layer's hooks over the runtime context's store (shared with jit's default
    hooks), or no persistence at all with ``COMPILECACHE_DISABLE``."""
    from .._runtime import runtime

    return runtime().hooks(TorchHooks)


def reset_default_hooks() -> None:
    """Forget the runtime context (the configuration is read again on next use)."""
    from .._runtime import reset_runtime

    reset_runtime()


def hooks_for(store: Any) -> Any:
    if store is None:
        return default_hooks()
    if isinstance(store, ArtifactHooks):
        return store
    return TorchHooks(store)

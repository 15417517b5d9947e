"""The compiled callable of a JIT entry: ``torch.compile`` underneath, its caches carried.

torch.compile compiles on the first call, so a JIT entry's artifact (torch's own cache
artifacts, from ``torch.compiler.save_cache_artifacts``) exists only after that call: the
runner reports it is ``ready`` then, and whoever persists it is called back (``on_ready``).
Loading puts the artifacts back with ``torch.compiler.load_cache_artifacts`` before the first
compile, so torch's compile finds its FX graph and AOTAutograd caches warm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger("compilecache.torch")

_loaded: set[bytes] = set()  # digests of cache artifacts already given to torch here
_loaded_lock = threading.Lock()


def load_torch_artifacts(data: bytes) -> None:
    """Hand torch's cache artifacts to torch (once per process for the same bytes)."""
    import hashlib

    digest = hashlib.sha256(data).digest()
    with _loaded_lock:
        if digest in _loaded:
            return
        torch.compiler.load_cache_artifacts(data)
        _loaded.add(digest)  # only once loaded: a failed load is tried again next time


def save_torch_artifacts() -> bytes:
    """torch's cache artifacts of everything compiled in this process so far."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        raise RuntimeError("torch saved no cache artifacts (its caches may be disabled)")
    return saved[0]


class JitRunner:
    """``runner(training, *args, **kwargs)``: call the torch.compile'd module."""

    mode = "jit"

    def __init__(
        self,
        compiled: Callable[..., Any],
        *,
        ready: bool,
        fallback_reason: str | None = None,
    ) -> None:
        self.compiled = compiled
        self.ready = ready
        self.fallback_reason = fallback_reason
        self.on_ready: Callable[[], None] | None = None
        self.first_call_seconds = 0.0  # torch.compile compiles in the first call

    def __call__(self, training: Any, *args: Any, **kwargs: Any) -> Any:
        if self.ready:
            return self.compiled(*args, **kwargs)
        started = time.perf_counter()
        result = self.compiled(*args, **kwargs)
        self.first_call_seconds = time.perf_counter() - started
        self.ready = True
        callback, self.on_ready = self.on_ready, None
        if callback is not None:
            try:
                callback()
            except Exception:  # persistence must never break a call that computed fine
                logger.exception("saving a torch.compile entry failed")
        return result

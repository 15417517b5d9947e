"""Routing a module's own calls through its compiled callable.

A model's methods call the model itself: ``generate`` calls ``self(...)`` for prefill and
every decode step, a pipeline calls ``model(...)``. Those calls go to ``nn.Module.__call__``,
which runs ``self._compiled_call_impl`` when it is set (the hook ``nn.Module.compile()`` uses).
A :class:`Routing` sets it to a function that calls the compiled module instead:

- while a method of the model runs through the wrapper (``fast.generate(...)``): held for the
  call, released after it, even when it raises;
- for good with ``compile(model, inplace=True)``, until :func:`restore`.

Calls made inside the compiled path itself (export tracing the module, a fallback running it
eagerly, torch.compile's JIT entry) must reach the module's own ``_call_impl``: a
thread-local depth says that the compiled path is running on this thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from .._errors import CacheUsageError


class _PathDepth(threading.local):
    """Per thread: how many compiled-path calls are running (entered in CompiledModule's
    ``__call__``, inline: it is every call's path)."""

    depth = 0


path_depth = _PathDepth()


def inside_compiled_path() -> bool:
    """Whether this thread is running the compiled path (dispatch, compile, package or
    fallback) of some compiled module."""
    return path_depth.depth > 0


class Routing:
    """The route of ``module``'s own calls to ``compiled`` (the :class:`CompiledModule`)."""

    def __init__(self, module: torch.nn.Module, compiled: Callable[..., Any]) -> None:
        self.module = module
        self.compiled = compiled
        self._holds = 0
        self.permanent = False
        self._lock = threading.Lock()

    def route(self, *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)`` while routed."""
        if inside_compiled_path():
            call_impl: Any = self.module._call_impl
            return call_impl(*args, **kwargs)
        return self.compiled(*args, **kwargs)

    def hold(self) -> None:
        """Route the module's calls until the matching :meth:`release`."""
        with self._lock:
            if self._holds == 0:
                current = self.module.__dict__.get("_compiled_call_impl")
                if current is not None and routing_of(self.module) is not self:
                    raise CacheUsageError(
                        f"{type(self.module).__name__} is already compiled in place (by "
                        "nn.Module.compile() or another compilecache.torch.compile(..., "
                        "inplace=True)): undo that first (compilecache.torch.restore(model))"
                    )
                self.module._compiled_call_impl = self.route
            self._holds += 1

    def release(self) -> None:
        with self._lock:
            self._holds -= 1
            if self._holds == 0 and self.module.__dict__.get("_compiled_call_impl") == self.route:
                del self.module.__dict__["_compiled_call_impl"]

    def routed(
        self, method: Callable[..., Any], defaults: dict[str, Any] | None = None
    ) -> Callable[..., Any]:
        """``method`` (a bound method of the module) with the module's calls routed while it
        runs; ``defaults``: keyword arguments passed unless the caller gives them."""

        def call(*args: Any, **kwargs: Any) -> Any:
            # Not over a generation config the caller passed: its own settings win (transformers
            # lets keyword arguments override the config, with a warning).
            if defaults and "generation_config" not in kwargs:
                kwargs = {**defaults, **kwargs}
            self.hold()
            try:
                return method(*args, **kwargs)
            finally:
                self.release()

        call.__name__ = getattr(method, "__name__", "method")
        call.__qualname__ = getattr(method, "__qualname__", call.__name__)
        call.__doc__ = getattr(method, "__doc__", None)
        call.__wrapped__ = method  # type: ignore[attr-defined]
        return call


def routing_of(module: Any) -> Routing | None:
    """The routing installed on ``module``, if any (held now, or in place)."""
    impl = getattr(module, "__dict__", {}).get("_compiled_call_impl")
    owner = getattr(impl, "__self__", None)
    return owner if isinstance(owner, Routing) else None

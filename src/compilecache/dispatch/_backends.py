"""Backends: the compilers that turn a function and a specialization into a callable.

A backend is any callable ``backend(fn, example_args, example_kwargs, spec) -> compiled``,
found by name in a registry (``register_backend``) or in the entry-point group
``compilecache.backends``. ``eager`` (the function itself) ships built in. A backend that wraps
another exposes it as ``inner``; the innermost backend is the identity cache entries are matched
by, as Dynamo's ``get_backend`` does, so a debugging wrapper around a backend reuses its entries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .._errors import CacheUsageError
from ._spec import Specialization

ENTRY_POINT_GROUP = "compilecache.backends"


@runtime_checkable
class Backend(Protocol):
    """Compiles ``fn`` for calls like ``fn(*example_args, **example_kwargs)`` described by
    ``spec``; returns a callable with ``fn``'s calling convention.

    Optional attributes: ``name`` (for messages and keys), ``inner`` (the backend this one
    wraps), ``dumps(compiled) -> bytes`` and ``loads(bytes) -> compiled`` (persistence),
    ``static_sizes`` (sizes it always compiles static: a dynamic dimension of such a size in
    the compiling call is compiled, and guarded, as that size; the torch backend's are 0 and
    1, which torch.export specializes, as Dynamo does).
    """

    def __call__(
        self,
        fn: Callable[..., Any],
        example_args: tuple[Any, ...],
        example_kwargs: dict[str, Any],
        spec: Specialization,
    ) -> Callable[..., Any]: ...


def eager(
    fn: Callable[..., Any],
    example_args: tuple[Any, ...],
    example_kwargs: dict[str, Any],
    spec: Specialization,
) -> Callable[..., Any]:
    """The identity backend: the compiled callable is the function itself."""
    return fn


eager.name = "eager"  # type: ignore[attr-defined]

_registry: dict[str, Backend] = {"eager": eager}
_lock = threading.Lock()


def register_backend(name: str, backend: Backend | None = None) -> Any:
    """Register ``backend`` under ``name`` (also usable as a decorator).

    Raises :class:`CacheUsageError` if ``name`` is taken by another backend.

    >>> @register_backend("doc-example")
    ... def doc_example(fn, args, kwargs, spec):
    ...     return fn
    """

    def register(backend: Backend) -> Backend:
        with _lock:
            existing = _registry.get(name)
            if existing is not None and existing is not backend:
                raise CacheUsageError(
                    f"a backend named {name!r} is already registered; pick another name"
                )
            _registry[name] = backend
        if getattr(backend, "name", None) is None:
            try:
                backend.name = name  # type: ignore[attr-defined]
            except AttributeError:
                pass
        return backend

    return register if backend is None else register(backend)


def lookup_backend(backend: str | Backend) -> Backend:
    """The backend named ``backend`` (registry first, then entry points), or ``backend`` itself
    if it is callable. Raises :class:`CacheUsageError` naming the known backends otherwise."""
    if not isinstance(backend, str):
        if not callable(backend):
            raise CacheUsageError(f"backend must be a name or a callable, got {backend!r}")
        return backend
    with _lock:
        found = _registry.get(backend)
    if found is not None:
        return found
    # Imported here: importlib.metadata costs a third of `import compilecache` otherwise.
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == backend:
            loaded = point.load()
            register_backend(backend, loaded)
            return loaded  # type: ignore[no-any-return]
    known = sorted(set(_registry) | {p.name for p in entry_points(group=ENTRY_POINT_GROUP)})
    raise CacheUsageError(f"unknown backend {backend!r}; known backends: {', '.join(known)}")


def innermost(backend: Backend) -> Backend:
    """Follow ``inner`` links to the backend that really compiles."""
    seen = set()
    while getattr(backend, "inner", None) is not None and id(backend) not in seen:
        seen.add(id(backend))
        backend = backend.inner  # type: ignore[attr-defined]
    return backend


def backend_name(backend: Backend) -> str:
    return str(getattr(backend, "name", None) or getattr(backend, "__name__", repr(backend)))

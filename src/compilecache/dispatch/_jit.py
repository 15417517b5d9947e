"""``jit``: wrap a function in guarded dispatch over its compiled specializations."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from .._errors import CacheUsageError
from ._backends import Backend, lookup_backend
from ._dispatcher import Dispatcher, check_options
from ._entries import CacheEntry
from ._guard_build import DimsHint
from ._hooks import DispatchHooks, NoHooks, check_hooks
from ._state import CodeState, state_for
from ._strategy import ACTIVE, Action, Strategy

P = ParamSpec("P")
R = TypeVar("R")

_default_hooks: DispatchHooks = NoHooks()


def set_default_hooks(hooks: DispatchHooks | None) -> DispatchHooks:
    """Hooks used by ``jit`` calls that pass none (the artifact layer installs its store here).
    Returns the previous hooks."""
    global _default_hooks
    previous = _default_hooks
    _default_hooks = check_hooks(hooks) if hooks is not None else NoHooks()
    return previous


@overload
def jit(fn: Callable[P, R], **options: Any) -> Callable[P, R]: ...


@overload
def jit(fn: None = None, **options: Any) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def jit(fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Compile ``fn`` per specialization of its inputs and dispatch calls through guards.

    Options: ``backend`` (a name or a backend callable; default ``"eager"``), ``dynamic``
    (``None``: automatic, ``True``: all sizes and ints dynamic, ``False``: none),
    ``recompile_limit`` (8), ``on_recompile_limit`` (``"eager"``: stop compiling and run plain
    Python where no entry matches, with one warning; ``"raise"``: raise
    :class:`RecompileLimitExceeded`), ``reorder`` (move a hit entry to the front; default True),
    ``hooks`` (persistence, see :mod:`compilecache.dispatch`), ``dynamic_dims`` (a function
    ``(path, array, within) -> dims`` naming, by where an array is in the call and the types
    of the state objects it is inside, dimensions compiled dynamic from the first compile, as
    :func:`mark_dynamic` would; consulted only on a miss).

    The wrapper keeps ``fn``'s name, docstring and signature. Usable as ``@jit``,
    ``@jit(backend=...)`` or ``jit(fn, ...)``.

    >>> @jit
    ... def add(x, y):
    ...     return x + y
    >>> add(1, 2), len(cache_entries(add))
    (3, 1)
    """
    if fn is None:
        return functools.partial(jit, **options)
    return _wrap(fn, **options)


def _wrap(
    fn: Callable[..., Any],
    *,
    backend: str | Backend = "eager",
    dynamic: bool | None = None,
    recompile_limit: int = 8,
    on_recompile_limit: str = "eager",
    reorder: bool = True,
    hooks: DispatchHooks | None = None,
    dynamic_dims: DimsHint | None = None,
) -> Callable[..., Any]:
    if getattr(fn, "__compilecache_dispatcher__", None) is not None:
        fn = fn.__wrapped__  # type: ignore[attr-defined]  # re-jit: wrap the plain function
    if inspect.ismethod(fn):
        # A bound method: jit the function and pass the instance as its first argument, so
        # that the instance is guarded like any argument (two instances, two entries).
        return _bind_method(fn, _wrap(fn.__func__, **_options(locals())))
    code = getattr(fn, "__code__", None)
    if code is None:
        raise CacheUsageError(
            f"jit needs a Python function, got {type(fn).__name__}: wrap it in a def"
        )
    check_options(recompile_limit, on_recompile_limit, dynamic)
    state = state_for(code)
    dispatcher = Dispatcher(
        fn,
        state,
        backend=lookup_backend(backend),
        dynamic=dynamic,
        recompile_limit=recompile_limit,
        on_recompile_limit=on_recompile_limit,
        reorder=reorder,
        hooks=check_hooks(hooks) if hooks is not None else _default_hooks,
        dynamic_dims=dynamic_dims,
    )
    wrapper = _hot_path(state, dispatcher, fn.__closure__)
    functools.update_wrapper(wrapper, fn)
    wrapper.__compilecache_dispatcher__ = dispatcher  # type: ignore[attr-defined]
    return wrapper


def _options(scope: dict[str, Any]) -> dict[str, Any]:
    names = (
        "backend",
        "dynamic",
        "recompile_limit",
        "on_recompile_limit",
        "reorder",
        "hooks",
        "dynamic_dims",
    )
    return {name: scope[name] for name in names}


def _bind_method(method: Any, jitted: Callable[..., Any]) -> Callable[..., Any]:
    instance = method.__self__

    def bound(*args: Any, **kwargs: Any) -> Any:
        return jitted(instance, *args, **kwargs)

    functools.update_wrapper(bound, method)
    bound.__compilecache_dispatcher__ = jitted.__compilecache_dispatcher__  # type: ignore[attr-defined]
    return bound


def _hot_path(state: CodeState, dispatcher: Dispatcher, cells: Any) -> Callable[..., Any]:
    """The wrapper: try the first entry, else the rest of the entries and the slow path.

    Everything it touches is a local or a closure variable; it sets no context variable and
    takes no lock, and a guard's exception is handled only when one happens (a try block costs
    nothing in CPython 3.11 until it catches). ``view.hot`` is the backend's lookup tuple, or empty
    while a per-function strategy is set, which sends every call to the slow path.
    """
    view = dispatcher.view
    active = ACTIVE.get
    slow = dispatcher.call
    rest = dispatcher.after_first
    guard_raised = dispatcher.guard_raised

    if cells is None:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if active() is None:
                hot = view.hot
                if hot:
                    entry = hot[0]
                    try:
                        passed = entry.check(*args, **kwargs)
                    except Exception as error:
                        passed = guard_raised(entry, error)
                    if passed:
                        entry.hits += 1
                        return entry.compiled(*args, **kwargs)
                    return rest(hot, args, kwargs)
            return slow(args, kwargs)

        return wrapper

    def closure_wrapper(*args: Any, **kwargs: Any) -> Any:
        if active() is None:
            hot = view.hot
            if hot:
                entry = hot[0]
                try:
                    passed = entry.check(cells, *args, **kwargs)
                except Exception as error:
                    passed = guard_raised(entry, error)
                if passed:
                    entry.hits += 1
                    return entry.compiled(*args, **kwargs)
                return rest(hot, args, kwargs)
        return slow(args, kwargs)

    return closure_wrapper


# -- introspection and per-function control ---------------------------------------------------
def _dispatcher_of(fn: Callable[..., Any]) -> Dispatcher:
    dispatcher = getattr(fn, "__compilecache_dispatcher__", None)
    if dispatcher is None:
        raise CacheUsageError(
            f"{getattr(fn, '__qualname__', fn)!r} is not a jit function: wrap it with "
            "compilecache.jit first"
        )
    return dispatcher  # type: ignore[no-any-return]


def cache_entries(fn: Callable[..., Any]) -> list[CacheEntry]:
    """The entries of jit function ``fn``: precompile entries first, then most recently used."""
    return list(_dispatcher_of(fn).view.lookup)


def explain_miss(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[str]:
    """Why each entry of ``fn`` would reject ``fn(*args, **kwargs)``, in words, e.g.
    ``["0/0: x.shape[0]: expected 8, got 16"]`` (``matches`` for an entry that would run)."""
    return _dispatcher_of(fn).explain(args, kwargs)


def dispatch_stats(fn: Callable[..., Any]) -> dict[str, int]:
    """Counters of ``fn``'s code object: hits, misses, compiles, recompiles, ..."""
    dispatcher = _dispatcher_of(fn)
    stats = dict(vars(dispatcher.state.counters))
    stats["hits"] = sum(entry.hits for entry in dispatcher.view.lookup)
    stats["entries"] = len(dispatcher.view.lookup)
    return stats


def skip(fn: Callable[P, R], *, callees: Action = Action.DEFAULT) -> Callable[P, R]:
    """Run jit function ``fn`` as plain Python from now on (jit functions it calls follow
    ``callees``). Returns ``fn``."""
    _dispatcher_of(fn).state.set_strategy(Strategy(Action.SKIP, callees))
    return fn


def unskip(fn: Callable[P, R]) -> Callable[P, R]:
    """Undo :func:`skip`."""
    _dispatcher_of(fn).state.set_strategy(None)
    return fn

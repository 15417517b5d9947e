"""Recompiles and their limit, automatic dynamic, execution strategies, the compiler interface."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import compilecache
from compilecache import CacheUsageError
from compilecache.dispatch import (
    Action,
    RecompileLimitExceeded,
    Specialization,
    cache_entries,
    compiler_interface,
    disable,
    dispatch_stats,
    install_compiler_interface,
    jit,
    run_only,
    skip,
    unskip,
)


class Counting:
    def __init__(self) -> None:
        self.specs: list[Specialization] = []

    def __call__(self, fn: Any, args: Any, kwargs: Any, spec: Specialization) -> Any:
        self.specs.append(spec)
        return fn


# -- recompiles and the limit ----------------------------------------------------------------
def test_recompiles_are_logged_with_reasons(caplog: pytest.LogCaptureFixture) -> None:
    f = jit(lambda x: x, dynamic=False)
    f(np.zeros(4))
    with caplog.at_level(logging.INFO, "compilecache.recompiles"):
        f(np.zeros(5))
    assert "recompiling" in caplog.text and "x.shape[0]: expected 4, got 5" in caplog.text


def test_limit_reached_runs_plain_python_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    backend = Counting()
    f = jit(lambda x: x * 2, backend=backend, recompile_limit=3, dynamic=False)
    with caplog.at_level(logging.WARNING, "compilecache"):
        for value in ("a", "b", "c", "d", "e"):
            assert f(value) == value * 2
    assert len(backend.specs) == 3
    warnings = [r for r in caplog.records if "recompile limit" in r.getMessage()]
    assert len(warnings) == 1 and "x: expected 'a', got 'd'" in warnings[0].getMessage()
    assert f("a") == "aa" and dispatch_stats(f)["eager_runs"] == 2
    assert cache_entries(f)[0].hits >= 0 and len(backend.specs) == 3


def test_limit_reached_raises_when_asked() -> None:
    f = jit(lambda x: x, recompile_limit=2, on_recompile_limit="raise", dynamic=False)
    f("a")
    f("b")
    with pytest.raises(RecompileLimitExceeded, match="recompile limit") as info:
        f("c")
    assert isinstance(info.value, RuntimeError)
    assert f("a") == "a"  # entries still serve


def test_recompile_limit_of_one_backend_does_not_stop_another_backend() -> None:
    def other(fn: Callable[..., Any], args: Any, kwargs: Any, spec: Any) -> Callable[..., Any]:
        return fn

    other.name = "other"  # type: ignore[attr-defined]

    def f(x: int) -> int:
        return x

    limited = jit(f, recompile_limit=1)
    separate = jit(f, backend=other)
    limited(1)
    limited(2)  # limit reached for the eager backend's entries
    separate(1)
    # limit_reasons is per code object while the limit counts per backend: "other" has no entry
    # and never compiles again.
    assert len(cache_entries(separate)) == 1


# -- automatic dynamic ----------------------------------------------------------------------
@pytest.mark.parametrize("array", [np.zeros, torch.zeros])
def test_twelve_batch_sizes_compile_at_most_twice(array: Callable[..., Any]) -> None:
    backend = Counting()

    @jit(backend=backend)
    def step(x: Any, w: Any) -> Any:
        return x @ w

    w = array((16, 4))
    for batch in range(1, 13):
        step(array((batch, 16)), w)
    assert len(backend.specs) == 2
    assert backend.specs[1].dynamic_dims((("arg", "x"),)) == {0}
    assert backend.specs[1].dynamic_dims((("arg", "w"),)) == frozenset()
    for batch in range(1, 13):
        step(array((batch, 16)), w)
    assert len(backend.specs) == 2


def test_dynamic_true_and_false() -> None:
    always, never = Counting(), Counting()
    f = jit(lambda x: x, backend=always, dynamic=True)
    g = jit(lambda x: x, backend=never, dynamic=False, recompile_limit=20)
    for n in range(1, 7):
        f(np.zeros((n, 2)))
        g(np.zeros((n, 2)))
    assert len(always.specs) == 1 and always.specs[0].dynamic_dims((("arg", "x"),)) == {0, 1}
    assert len(never.specs) == 6


def test_ints_become_dynamic_after_they_change() -> None:
    backend = Counting()
    f = jit(lambda x, n: n, backend=backend)
    for n in range(10):
        assert f(1.5, n) == n
    assert len(backend.specs) == 2
    assert backend.specs[1].leaf((("arg", "n"),)).kind == "dynamic-int"  # type: ignore[union-attr]
    f(1.5, "not an int")
    assert len(backend.specs) == 3


def test_a_failed_compile_does_not_make_dimensions_dynamic() -> None:
    """A call whose compile failed (its inputs were wrong) taught automatic dynamic that a
    dimension varies, so the next, correct call compiled a dynamic specialization (which a
    backend such as torch.export may not be able to serve)."""
    from compilecache.dispatch import BackendCompileError

    specs = []

    def picky(fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        if args[0].shape[1] != 8:
            raise ValueError("expects 8 features")
        specs.append(spec)
        return fn

    @jit(backend=picky)
    def f(x: Any) -> Any:
        return x * 2

    with pytest.raises(BackendCompileError):
        f(np.zeros((5, 7)))
    f(np.zeros((5, 8)))
    assert not specs[0].dynamic


# -- strategies -----------------------------------------------------------------------------
def test_disable_as_context_and_decorator() -> None:
    backend = Counting()
    f = jit(lambda x: x + 1, backend=backend)
    with disable():
        assert f(1) == 2
    assert backend.specs == [] and cache_entries(f) == []

    @disable()
    def outer() -> int:
        return int(f(2))

    assert outer() == 3 and backend.specs == []
    assert f(1) == 2 and len(backend.specs) == 1


def test_run_only_uses_entries_and_never_compiles() -> None:
    backend = Counting()
    f = jit(lambda x: x * 3, backend=backend, dynamic=False)
    f(1)
    with run_only():
        assert f(1) == 3 and f(2) == 6
    assert len(backend.specs) == 1
    assert dispatch_stats(f)["eager_runs"] == 1


def test_strategies_are_per_thread() -> None:
    backend = Counting()
    f = jit(lambda x: x, backend=backend)
    inside, outside = threading.Event(), threading.Event()

    def disabled_thread() -> None:
        with disable():
            inside.set()
            outside.wait(5)
            f("disabled thread")

    thread = threading.Thread(target=disabled_thread)
    thread.start()
    inside.wait(5)
    f("main thread")  # not disabled here
    outside.set()
    thread.join()
    assert len(backend.specs) == 1
    assert backend.specs[0].leaves[0].value == "main thread"


def test_nested_scopes_restore_the_outer_strategy() -> None:
    backend = Counting()
    f = jit(lambda x: x, backend=backend)
    with disable():
        with run_only():
            f(1)  # run_only: a miss runs plain Python
        f(2)
    f(3)
    assert [spec.leaves[0].value for spec in backend.specs] == [3]


def test_one_disable_scope_object_used_in_two_threads() -> None:
    scope = compilecache.disable()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with scope:
                first_in.set()
                second_in.wait(5)
        except BaseException as error:
            errors.append(error)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        try:
            with scope:
                second_in.set()
                first_out.wait(5)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # _Scope keeps one token stack for all threads: each thread pops the other's token
    # (ValueError: ... was created in a different Context).
    assert errors == []


def test_skip_and_callee_actions() -> None:
    inner_backend, outer_backend = Counting(), Counting()
    inner = jit(lambda x: x + 1, backend=inner_backend)

    def outer_fn(x: int) -> int:
        return int(inner(x)) * 2

    outer = jit(outer_fn, backend=outer_backend)
    skip(outer)  # outer runs plain Python; what it calls still compiles
    assert outer(1) == 4
    assert outer_backend.specs == [] and len(inner_backend.specs) == 1
    skip(outer, callees=Action.SKIP)
    assert outer(5) == 12
    assert len(inner_backend.specs) == 1  # inner ran plain Python inside outer
    unskip(outer)
    assert outer(1) == 4 and len(outer_backend.specs) == 1


def test_calls_made_while_compiling_run_plain_python() -> None:
    traced: list[int] = []

    def tracing(fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        traced.append(fn(*args, **kwargs))  # a backend that runs the function to trace it
        return fn

    @jit(backend=tracing)
    def recursive(n: int) -> int:
        return 1 if n <= 1 else n * recursive(n - 1)

    assert recursive(5) == 120
    # One compile for n=5 (its trace ran plain Python all the way down), one for n=4 when the
    # compiled n=5 call recursed (the int is dynamic from then on), and no more.
    assert traced == [120, 24]
    assert recursive(7) == 5040 and len(cache_entries(recursive)) == 2


# -- the compiler interface -----------------------------------------------------------------
class Interface:
    def __init__(self) -> None:
        self.compiled: list[str] = []

    def compile(self, backend: Any, fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        self.compiled.append(fn.__name__)
        return backend(fn, args, kwargs, spec)


def test_compiles_go_through_the_installed_interface() -> None:
    interface = Interface()

    def named(x: int) -> int:
        return x

    f = jit(named)
    with install_compiler_interface(interface):
        assert f(1) == 1
    assert interface.compiled == ["named"]


def test_compiler_interface_errors() -> None:
    with (
        pytest.raises(CacheUsageError, match="no compiler interface is installed"),
        compiler_interface(),
    ):
        pass
    with install_compiler_interface(Interface()) as installed:
        with (
            pytest.raises(CacheUsageError, match="already installed"),
            install_compiler_interface(Interface()),
        ):
            pass
        with compiler_interface() as used:
            assert used is installed
    with pytest.raises(CacheUsageError, match="no compiler interface"), compiler_interface():
        pass


def test_removing_the_interface_while_in_use_is_an_error() -> None:
    release = threading.Event()
    using = threading.Event()

    def user() -> None:
        with compiler_interface():
            using.set()
            release.wait(5)

    thread = threading.Thread(target=user)
    with (
        pytest.raises(CacheUsageError, match="being removed while 1 caller"),
        install_compiler_interface(Interface()),
    ):
        thread.start()
        using.wait(5)
    release.set()
    thread.join()
    with install_compiler_interface(Interface()):  # removed once its last user was done
        pass

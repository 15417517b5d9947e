"""Regressions found in review of the dispatch layer: each test failed before its fix.

A "snapshot" backend runs the function once on the example call and returns a callable that
replays that result: it is correct exactly when the guards admit only calls for which the function
gives the same result, so it shows a guard that accepts a call it should reject.
"""

from __future__ import annotations

import gc
import math
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest
import torch

import compilecache
from compilecache.dispatch import (
    BackendCompileError,
    CacheEntry,
    CompileRequest,
    LoadedEntry,
    cache_entries,
    dispatch_stats,
    explain_miss,
    jit,
    reset,
)


def snapshot(fn: Callable[..., Any], args: Any, kwargs: Any, spec: Any) -> Callable[..., Any]:
    result = fn(*args, **kwargs)
    return lambda *a, **k: result


snapshot.name = "snapshot"  # type: ignore[attr-defined]


# -- entries are shared per code object, but function objects differ in more than their cells --
class Model:
    def __init__(self, k: int) -> None:
        self.k = k

    def forward(self, x: int) -> int:
        return x * self.k


def test_bound_methods_of_two_instances_do_not_run_each_others_entries() -> None:
    # jit(model.forward) is the torch.compile idiom; self is bound, so it is neither an argument
    # nor a cell and nothing guards it, while the entry's compiled callable is a.forward.
    a, b = Model(2), Model(3)
    fa, fb = jit(a.forward), jit(b.forward)
    assert fa(1) == 2
    assert fb(1) == 3  # got 2: b's call ran a.forward


def test_defaults_of_another_function_with_the_same_code_are_not_used() -> None:
    def make(k: int) -> Callable[..., int]:
        def f(x: int, y: int = k) -> int:  # no free variables: only the defaults differ
            return x + y

        return jit(f)

    one, hundred = make(1), make(100)
    assert one(1) == 2
    assert hundred(1) == 101  # got 2: the guard of one's entry fills in y=1 and passes


def test_keyword_only_defaults_of_another_function_with_the_same_code() -> None:
    def make(k: int) -> Callable[..., int]:
        def f(x: int, *, y: int = k) -> int:
            return x + y

        return jit(f)

    one, hundred = make(1), make(100)
    assert one(1) == 2
    assert hundred(1) == 101


def test_function_with_the_same_code_and_other_globals() -> None:
    namespace: dict[str, Any] = {"SCALE": 2}
    exec("def f(x):\n    return x * SCALE\n", namespace)
    plain = namespace["f"]
    other = types.FunctionType(plain.__code__, {"SCALE": 3}, "f")
    jit_plain, jit_other = jit(plain), jit(other)  # both alive: they share one state
    assert jit_plain(1) == 2
    assert jit_other(1) == 3  # got 2: the guard reads the first function's globals


def test_empty_cell_of_one_closure_does_not_admit_another_closure() -> None:
    def make(fill: bool) -> Callable[[int], int]:
        if fill:
            k = 5

        def f(x: int) -> int:
            return x + k

        return jit(f)

    empty = make(False)
    with pytest.raises(NameError):
        empty(1)  # compiled (the empty cell gets no guard), then raised while running
    full = make(True)
    assert full(1) == 6  # NameError: runs empty's entry, i.e. empty's function and cells


# -- torch: the same tensor passed twice ------------------------------------------------------
def test_same_tensor_passed_twice_hits_its_entry() -> None:
    @jit
    def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    z = torch.ones(3, 3)
    for _ in range(4):
        matmul(z, z)
    # TensorGuards.check rejects a duplicated tensor, so x @ x recompiles on every call (and
    # hits the recompile limit after 8), while explain_miss says every entry "matches".
    assert dispatch_stats(matmul)["compiles"] == 1
    assert dispatch_stats(matmul)["hits"] == 3


def test_explain_miss_agrees_with_the_guard_for_aliased_tensors() -> None:
    @jit
    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    x, y = torch.ones(3), torch.ones(3)
    add(x, y)
    entry = cache_entries(add)[0]
    verdict = explain_miss(add, x, x)[0].endswith("matches")
    assert entry.check(x, x) is verdict


# -- globals, constants ------------------------------------------------------------------------
def test_deleted_global_that_held_none_is_a_miss() -> None:
    namespace: dict[str, Any] = {"CONFIG": None}
    exec("def f(x):\n    return CONFIG is None\n", namespace)
    f = jit(namespace["f"], backend=snapshot)
    assert f(1) is True
    del namespace["CONFIG"]
    # The guard reads the global with G.get(name), which gives None for a deleted name: the
    # None-valued global's TYPE/EQUALS guards still pass.
    assert explain_miss(f, 1) != ["0/0: matches"]
    with pytest.raises(BackendCompileError) as info:  # a miss: the backend runs f, which raises
        f(1)
    assert isinstance(info.value.__cause__, NameError)


def test_constant_tuple_global_checks_element_types() -> None:
    namespace: dict[str, Any] = {"SIZES": (1, 2)}
    exec("def f(x):\n    return [type(v).__name__ for v in SIZES]\n", namespace)
    f = jit(namespace["f"], backend=snapshot)
    assert f(0) == ["int", "int"]
    namespace["SIZES"] = (True, 2)  # == (1, 2)
    assert f(0) == ["bool", "int"]


def test_constant_tuple_global_checks_zero_signs() -> None:
    namespace: dict[str, Any] = {"OFFSETS": (0.0,), "math": math}
    exec("def f(x):\n    return math.copysign(1.0, OFFSETS[0])\n", namespace)
    f = jit(namespace["f"], backend=snapshot)
    assert f(0) == 1.0
    namespace["OFFSETS"] = (-0.0,)
    assert f(0) == -1.0


def test_frozenset_argument_checks_element_types() -> None:
    @jit(backend=snapshot)
    def kinds(s: frozenset[Any]) -> list[str]:
        return sorted(type(v).__name__ for v in s)

    assert kinds(frozenset({1})) == ["int"]
    assert kinds(frozenset({True})) == ["bool"]  # {True} == {1}
    assert kinds(frozenset({1.0})) == ["float"]


# -- automatic dynamic: freed strides ------------------------------------------------------------
def test_dynamic_entry_for_contiguous_tensors_rejects_broadcast_stride() -> None:
    @jit
    def f(x: torch.Tensor) -> torch.Tensor:
        return x

    f(torch.zeros(4, 8))
    f(torch.zeros(4, 16))  # dim 1 becomes dynamic; stride 0 is freed entirely
    compiles = dispatch_stats(f)["compiles"]
    expanded = torch.zeros(1, 48).expand(4, 48)  # strides (0, 1): overlapping rows
    f(expanded)
    padded = torch.zeros(4, 64)[:, :32]  # strides (64, 1): not contiguous
    f(padded)
    # Both were served by the entry compiled for contiguous inputs: a freed stride should stay
    # tied to the sizes (stride[0] == size[1] * stride[1]), as Dynamo's symbolic strides are.
    assert dispatch_stats(f)["compiles"] == compiles + 2


def test_dynamic_entry_for_contiguous_numpy_arrays_rejects_reversed_rows() -> None:
    @jit
    def f(x: np.ndarray) -> np.ndarray:
        return x

    f(np.zeros((4, 8)))
    f(np.zeros((4, 16)))
    compiles = dispatch_stats(f)["compiles"]
    f(np.zeros((4, 24))[::-1])  # strides (-192, 8)
    assert dispatch_stats(f)["compiles"] == compiles + 1


# -- threads: invalidation between the guard and the call -------------------------------------
def _in_other_thread(action: Callable[[], None]) -> None:
    thread = threading.Thread(target=action)
    thread.start()
    thread.join()


class ResetWhileSaving:
    """Hooks whose save lets another thread call compilecache.reset() (a slow store write)."""

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        return ()

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        _in_other_thread(reset)

    def finish(self, request: CompileRequest) -> None:
        return None


def test_reset_in_another_thread_does_not_break_the_compiling_call() -> None:
    @jit(hooks=ResetWhileSaving())
    def f(x: int) -> int:
        return x + 1

    # _compile returns the entry, then _run calls entry.compiled, which invalidate() replaced
    # with a function that raises CacheError.
    assert f(1) == 2


class ResetOnHash:
    armed = False

    def __hash__(self) -> int:
        if ResetOnHash.armed:
            ResetOnHash.armed = False
            _in_other_thread(reset)  # another thread resets while this one runs the guard
        return 1

    def __eq__(self, other: object) -> bool:
        return self is other


def test_reset_in_another_thread_during_a_hit_does_not_break_the_call() -> None:
    @jit
    def f(d: dict[Any, int]) -> int:
        return sum(d.values())

    key = ResetOnHash()
    d = {key: 1}
    assert f(d) == 1
    ResetOnHash.armed = True  # after building the dict: the next hash is the guard's d[key]
    # The hot path reads entry.check, runs it (the guard hashes the key), then reads
    # entry.compiled, which is now the raising placeholder: "safe on an entry another thread is
    # running" does not hold for a thread between its guard and its call.
    assert f(d) == 1


# -- memory -------------------------------------------------------------------------------------
class Obj:
    pass


def test_identity_guarded_argument_is_not_kept_alive_by_the_cache() -> None:
    @jit
    def f(o: Obj) -> int:
        return 1

    obj = Obj()
    ref = weakref.ref(obj)
    f(obj)
    del obj
    gc.collect()
    # The IDENTITY guard (and the spec leaf) hold the object strongly: every object a jit
    # function was called with (models, self of methods, ...) lives as long as the function.
    assert ref() is None


# -- strategies, limit, hooks ---------------------------------------------------------------
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


class FailingLoad:
    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        raise OSError("store unreachable")

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        return None

    def finish(self, request: CompileRequest) -> None:
        return None


def test_failing_hooks_load_does_not_break_the_call() -> None:
    @jit(hooks=FailingLoad())
    def f(x: int) -> int:
        return x + 1

    # A failing save is logged and never breaks the call; a failing load propagates out of
    # every miss.
    assert f(1) == 2


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

"""Guards built from real calls: what recompiles, what hits, and the reasons given in words."""

from __future__ import annotations

import dataclasses
import enum
import gc
import math
import sys
import types
import weakref
from collections import namedtuple
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from compilecache.dispatch import (
    BackendCompileError,
    cache_entries,
    dispatch_stats,
    explain_miss,
    jit,
    mark_dynamic,
    mark_static,
)

SCALE = 2.0


def helper(x: Any) -> Any:
    return x


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Config:
    eps: float
    layers: int


Pair = namedtuple("Pair", "a b")


def compiles(fn: Callable[..., Any]) -> int:
    return len(cache_entries(fn))


def plain(*args: Any, **kwargs: Any) -> Any:
    return args, kwargs


def fresh() -> Callable[..., Any]:
    def f(*args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    return jit(f, dynamic=False, recompile_limit=64)


@pytest.mark.parametrize(
    ("first", "same", "different"),
    [
        (1, 1, 2),
        (1, 1, 1.0),
        (1, 1, True),
        (True, True, 1),
        (1.5, 1.5, 2.5),
        (float("nan"), float("nan"), 1.0),
        ("s", "s", "t"),
        (b"b", b"b", "b"),
        (None, None, 0),
        (Color.RED, Color.RED, Color.BLUE),
        ((1, "a"), (1, "a"), (1, "a", None)),
        ([1, 2], [1, 2], (1, 2)),
        ([1, 2], [1, 2], [1, 3]),
        ({"a": 1, "b": 2}, {"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"a": [1, {"k": None}]}, {"a": [1, {"k": None}]}, {"a": [1, {"k": 0}]}),
        (Pair(1, 2), Pair(1, 2), (1, 2)),
        (Config(1e-5, 2), Config(1e-5, 2), Config(1e-6, 2)),
        (frozenset({1, 2}), frozenset({2, 1}), frozenset({1})),
        (helper, helper, plain),
        (math, math, types),
        (int, int, float),
    ],
)
def test_same_value_hits_different_value_recompiles(first: Any, same: Any, different: Any) -> None:
    f = fresh()
    f(first)
    f(same)
    assert compiles(f) == 1, f"{same!r} should reuse the entry compiled for {first!r}"
    f(different)
    assert compiles(f) == 2, f"{different!r} must not reuse the entry compiled for {first!r}"


def test_arbitrary_objects_match_by_identity() -> None:
    class Thing:
        pass

    first, second = Thing(), Thing()
    f = fresh()
    f(first)
    f(first)
    f(second)
    assert compiles(f) == 2


def test_keyword_arguments_and_defaults_are_guarded() -> None:
    def g(x: int, scale: float = 2.0, **options: Any) -> Any:
        return x * scale, options

    f = jit(g, dynamic=False)
    f(1)
    f(1, 2.0)
    f(x=1, scale=2.0)
    assert compiles(f) == 1  # the default is guarded as if passed
    f(1, 3.0)
    assert compiles(f) == 2
    f(1, flag=True)
    f(1, flag=True)
    assert compiles(f) == 3
    f(1, other=True)
    assert compiles(f) == 4
    reasons = explain_miss(f, 1, flag=False)
    assert reasons[0].endswith("options: expected keywords ['other'], got ['flag']")
    assert reasons[1].endswith(
        "options['flag']: expected the same object as when compiled (True), got False"
    )


def test_numpy_arrays_dtype_shape_strides() -> None:
    f = fresh()
    a = np.zeros((4, 3), np.float32)
    f(a)
    f(np.ones((4, 3), np.float32))
    assert compiles(f) == 1  # values are not guarded, metadata is
    f(np.zeros((4, 3), np.float64))
    f(np.zeros((5, 3), np.float32))
    f(np.zeros((3, 4), np.float32).T)  # same shape, other strides
    assert compiles(f) == 4
    reasons = explain_miss(f, np.zeros((8, 3), np.float32))
    assert any("args[0].shape[0]: expected 4, got 8" in reason for reason in reasons)
    assert any("args[0].dtype: expected float64, got float32" in reason for reason in reasons)


def test_torch_tensors_dtype_device_grad_shape_strides() -> None:
    f = fresh()
    x = torch.zeros(4, 3)
    f(x)
    f(torch.ones(4, 3))
    assert compiles(f) == 1
    variants = [
        torch.zeros(4, 3, dtype=torch.float64),
        torch.zeros(4, 3, requires_grad=True),
        torch.zeros(5, 3),
        torch.zeros(4, 3, 1),
        torch.zeros(3, 4).t(),
        torch.zeros(4, 3, device="meta"),
    ]
    for variant in variants:
        f(variant)
    assert compiles(f) == 1 + len(variants)
    for variant in variants:
        f(variant)
    assert compiles(f) == 1 + len(variants)  # each variant hits its own entry
    reasons = " | ".join(explain_miss(f, torch.zeros(7, 3)))
    assert "args[0].shape[0]: expected 4, got 7" in reasons
    assert "args[0].requires_grad: expected True, got False" in reasons
    assert "args[0].device: expected meta, got cpu" in reasons


def test_torch_tensors_are_checked_by_torchs_tensor_guards() -> None:
    @jit
    def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * y

    f(torch.ones(8), torch.ones(8))
    source = cache_entries(f)[0].check.__compilecache_source__  # type: ignore[attr-defined]
    assert "dtype" not in source and "shape" not in source  # one C++ call checks them all


def test_globals_constants_by_value_objects_by_identity() -> None:
    module = types.ModuleType("guarded_module")
    exec(
        "SCALE = 2.0\n"
        "def helper(x):\n    return x + 1\n"
        "def f(x):\n    return helper(x) * SCALE + len([x])\n",
        module.__dict__,
    )
    sys.modules["guarded_module"] = module
    try:
        f = jit(module.f)
        assert f(1) == 5.0
        assert f(1) == 5.0 and compiles(f) == 1
        module.SCALE = 3.0
        assert f(1) == 7.0 and compiles(f) == 2
        reasons = " | ".join(explain_miss(f, 1))
        old_helper = module.helper
        module.helper = lambda x: x + 2
        assert f(1) == 10.0 and compiles(f) == 3
        module.helper = old_helper
        assert "global SCALE: expected 2.0, got 3.0" in reasons
        module.len = lambda x: 100  # shadowing a builtin is a different program
        assert f(1) == 106.0 and compiles(f) == 4
    finally:
        del sys.modules["guarded_module"]


def test_closure_values_are_guarded() -> None:
    def make(k: Any) -> Callable[[int], Any]:
        def add(x: int) -> Any:
            return x + k

        return jit(add)

    by_one, by_two = make(1), make(2.5)
    assert by_one(1) == 2 and by_two(1) == 3.5
    assert by_one(1) == 2 and by_two(1) == 3.5
    assert compiles(by_one) == 2
    assert explain_miss(by_two, 1)[1].endswith("closure k: expected type int, got float")


def test_verbose_reasons_name_the_first_failing_guard_of_each_entry() -> None:
    f = jit(lambda x, n: x, dynamic=False)
    f(np.zeros(8), 3)
    f(np.zeros(8), "text")
    reasons = explain_miss(f, np.zeros(16), 3)
    assert reasons[0].endswith("n: expected type str, got int")
    assert reasons[1].endswith("x.shape[0]: expected 8, got 16")
    assert explain_miss(f, np.zeros(8), 3)[1].endswith("matches")


def test_mark_dynamic_and_mark_static() -> None:
    specs: list[Any] = []

    def backend(fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        specs.append(spec)
        return fn

    f = jit(lambda x: x, backend=backend)
    x = np.zeros((8, 3))
    mark_dynamic(x, 0)
    f(x)
    assert specs[-1].dynamic_dims((("arg", "x"),)) == {0}
    f(np.zeros((9, 3)))  # not marked, but the entry is dynamic in dim 0 already
    assert len(specs) == 1
    g = jit(lambda x: x, backend=backend)
    t = torch.zeros(4, 4)
    mark_static(t)
    g(t)
    u = torch.zeros(5, 4)
    mark_static(u)
    g(u)
    assert specs[-1].dynamic_dims((("arg", "x"),)) == set()  # static marks win
    with pytest.raises(IndexError):
        mark_dynamic(np.zeros(3), 1)
    with pytest.raises(TypeError):
        mark_dynamic([1, 2], 0)


def test_torch_global_state_is_guarded() -> None:
    f = fresh()
    x = torch.ones(3)
    f(x)
    with torch.no_grad():
        f(x)
        assert compiles(f) == 2
        f(x)
    f(x)
    assert compiles(f) == 2
    reasons = explain_miss(f, x)
    assert reasons[1].endswith(
        "torch grad_enabled: expected False, got True (compiled under another setting)"
    )


# -- a backend that shows a guard admitting a call it should reject -------------------------
# A "snapshot" backend runs the function once on the example call and returns a callable that
# replays that result: it is correct exactly when the guards admit only calls for which the
# function gives the same result, so it shows a guard that accepts a call it should reject.
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


# -- memory: identity guards hold no reference ---------------------------------------------------
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

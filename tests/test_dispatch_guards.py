"""Guards built from real calls: what recompiles, what hits, and the reasons given in words."""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import types
from collections import namedtuple
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from compilecache.dispatch import cache_entries, explain_miss, jit, mark_dynamic, mark_static

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

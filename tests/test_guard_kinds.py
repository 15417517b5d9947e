"""One generic test per guard kind (the rows of ``compilecache.dispatch._guard_kinds``): guards
of the kind are built by jit from a real call; then, on random calls, the kind's generated
clause (compiled alone into a guard function) and its evaluator agree, each outcome is seen
at least once (a row that always says True or always False fails), the stored form reads
back into a guard that agrees too, and its words name the place it checks."""

from __future__ import annotations

import inspect
import math
import random
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from compilecache import jit
from compilecache.artifacts._guard_format import dump_guard, load_guard
from compilecache.dispatch import Guard, GuardKind, cache_entries
from compilecache.dispatch._guard_codegen import compile_guards
from compilecache.dispatch._guard_eval import Inputs, first_failure, holds_for
from compilecache.dispatch._guard_kinds import ROWS, describe_guard
from compilecache.dispatch._guards import path_text
from compilecache.keys import Unfingerprintable

K = GuardKind
DRAWS = 300

Call = tuple[tuple[Any, ...], dict[str, Any]]


class Thing:
    """An object matched by identity (weakly)."""


THING = Thing()


def one(x: Any) -> Any:
    return x


def two(x: Any, y: Any) -> Any:
    return x


def keywords(**kw: Any) -> Any:
    return kw


def _scalars(rng: random.Random) -> Any:
    pool = [3, 4, -3, 3.0, True, None, -0.0, 0.0, 1.5, math.nan, complex(0.0, -0.0), "3"]
    return rng.choice([*pool, (3,), complex(math.nan, 0), THING, Thing(), [3], {3}, b"3"])


def _sequences(rng: random.Random) -> Any:
    if rng.random() < 0.25:
        return rng.choice([[1, 2.5], (1, 2.5), [1.0, 2.5], [True, 2.5], [1, 2.5, 3]])
    items = [rng.choice([1, 2, 2.5, 1.0, True, "a", math.nan]) for _ in range(rng.randint(0, 3))]
    return rng.choice([list, tuple])(items) if rng.random() < 0.9 else rng.choice([1, "ab"])


def _dicts(rng: random.Random) -> Any:
    keys = rng.sample(["a", "b", "c", 1, True], rng.randint(0, 3))
    if rng.random() < 0.3:
        keys = ["a", "b"]
    return {key: rng.randint(0, 2) for key in keys} if rng.random() < 0.95 else [1, 2]


def _sets(rng: random.Random) -> Any:
    return rng.choice([{1, 2.0}, {1.0, 2}, {True, 2.0}, {1, 2}, frozenset({1, 2.0}), {1}, [1, 2]])


def _tensors(rng: random.Random) -> Any:
    """Tensors of random dtype, device, grad, shape and layout; now and then a view with a
    flag, an inference tensor, a numpy array or no array at all."""
    roll = rng.random()
    if roll < 0.05:
        return np.ones((2, 3))
    if roll < 0.08:
        return [1.0, 2.0]
    dtype = rng.choice([torch.float32, torch.float64, torch.int64, torch.complex64])
    device = rng.choice(["cpu", "cpu", "cpu", "meta"])
    shape = rng.choice([(2, 3), (2, 3), (3, 2), (2, 3, 1), (4,), (2, 0)])
    base = torch.ones(shape, dtype=dtype, device=device)
    layout = rng.choice(["contiguous", "contiguous", "transposed", "sliced", "expanded"])
    if layout == "transposed" and base.dim() >= 2:
        base = base.transpose(0, 1).contiguous().transpose(0, 1)
    elif layout == "sliced":
        base = torch.ones((shape[0] * 2, *shape[1:]), dtype=dtype, device=device)[::2]
    elif layout == "expanded" and base.dim() >= 1:
        base = torch.ones((1, *shape[1:]), dtype=dtype, device=device).expand(shape)
    flag = rng.random()
    if dtype is torch.complex64 and flag < 0.3:
        return base.conj()
    if flag < 0.1 and device == "cpu":
        return torch._neg_view(base) if base.is_complex() else base
    if flag < 0.2 and device == "cpu":
        with torch.inference_mode():
            return torch.ones(shape, dtype=dtype)
    if base.is_floating_point() and rng.random() < 0.3:
        return base.detach().requires_grad_(True)
    return base


def _arrays(rng: random.Random) -> Any:
    if rng.random() < 0.5:
        return _tensors(rng)
    base = np.ones(rng.choice([(2, 3), (3, 2), (2, 3, 1)]))
    return base.T.copy().T if rng.random() < 0.3 else base


@dataclass
class Case:
    """How to make guards of one kind and random calls that probe them."""

    fn: Callable[..., Any]
    example: Call
    draw: Callable[[random.Random], Call]
    dynamic: bool | None = False
    storable: bool = True
    #: Changes the world between draws (a global, a closure cell, torch's state), restored after.
    world: Callable[[random.Random], None] | None = None
    restore: Callable[[], None] | None = None
    notes: list[str] = field(default_factory=list)


def _single(values: Callable[[random.Random], Any]) -> Callable[[random.Random], Call]:
    return lambda rng: ((values(rng),), {})


def _pair(values: Callable[[random.Random], Any]) -> Callable[[random.Random], Call]:
    def draw(rng: random.Random) -> Call:
        a, b = values(rng), values(rng)
        return (a, rng.choice([a, b])), {}

    return draw


# A function whose global is a builtin's name (ABSENT), with a namespace of its own.
_ABSENT_NS: dict[str, Any] = {}
exec("def uses_abs(x):\n    return abs(x)\n", _ABSENT_NS)


def _toggle_abs(rng: random.Random) -> None:
    if rng.random() < 0.5:
        _ABSENT_NS["abs"] = rng.choice([abs, len])
    else:
        _ABSENT_NS.pop("abs", None)


def _closure_with_an_empty_cell() -> Callable[..., Any]:
    def uses_later(x: Any) -> Any:
        return later if x else x  # assigned below: never, so the cell stays empty

    return uses_later
    later = 1  # makes `later` a cell of uses_later, left empty


EMPTY = _closure_with_an_empty_cell()


def _toggle_cell(rng: random.Random) -> None:
    cell = EMPTY.__closure__[0]  # type: ignore[index]
    if rng.random() < 0.5:
        cell.cell_contents = rng.randint(0, 3)
    else:
        _empty_cell(cell)


def _empty_cell(cell: Any) -> None:
    try:
        del cell.cell_contents
    except ValueError:
        pass


def _toggle_torch(rng: random.Random) -> None:
    torch.set_grad_enabled(rng.random() < 0.5)
    torch.set_default_dtype(rng.choice([torch.float32, torch.float64]))


def _restore_torch() -> None:
    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)


T1, T2 = torch.ones(2, 3), torch.zeros(2, 3)
A1, A2 = np.ones(3), np.zeros(3)

CASES: dict[GuardKind, Case] = {
    K.TYPE: Case(one, ((3,), {}), _single(_scalars)),
    K.IDENTITY: Case(one, ((None,), {}), _single(_scalars)),
    K.WEAK_IDENTITY: Case(one, ((THING,), {}), _single(_scalars), storable=False),
    K.EQUALS: Case(one, ((3,), {}), _single(_scalars)),
    K.NAN: Case(one, ((math.nan,), {}), _single(_scalars)),
    K.SIGN: Case(one, ((-0.0,), {}), _single(_scalars)),
    K.LENGTH: Case(one, (([1, 2.5],), {}), _single(_sequences)),
    K.FLAT: Case(one, (([1, 2.5],), {}), _single(_sequences)),
    K.KEYS: Case(one, (({"a": 1, "b": 2},), {}), _single(_dicts)),
    K.KEYSET: Case(
        keywords,
        ((), {"a": 1, "b": 2}),
        lambda rng: ((), dict.fromkeys(rng.sample("abc", rng.randint(0, 3)), 1)),
    ),
    K.TYPED_SET: Case(one, (({1, 2.0},), {}), _single(_sets)),
    K.ABSENT: Case(
        _ABSENT_NS["uses_abs"],
        ((3,), {}),
        _single(lambda rng: 3),
        world=_toggle_abs,
        restore=lambda: _ABSENT_NS.pop("abs", None),
    ),
    K.EMPTY_CELL: Case(
        EMPTY,
        ((0,), {}),
        _single(lambda rng: 0),
        world=_toggle_cell,
        restore=lambda: _empty_cell(EMPTY.__closure__[0]),  # type: ignore[index]
    ),
    K.ALIAS: Case(two, ((A1, A1), {}), _pair(lambda rng: rng.choice([A1, A2]))),
    K.DISTINCT: Case(two, ((T1, T2), {}), _pair(lambda rng: rng.choice([T1, T2]))),
    K.TENSOR_FLAGS: Case(one, ((torch.ones(2, 3, dtype=torch.complex64),), {}), _single(_tensors)),
    K.TORCH_STATE: Case(
        one,
        ((T1,), {}),
        _single(lambda rng: T1),
        world=_toggle_torch,
        restore=_restore_torch,
    ),
    K.DTYPE: Case(one, ((T1,), {}), _single(_arrays)),
    K.DEVICE: Case(one, ((T1,), {}), _single(_arrays)),
    K.REQUIRES_GRAD: Case(one, ((T1,), {}), _single(_arrays)),
    K.SHAPE: Case(one, ((T1,), {}), _single(_arrays)),
    K.STRIDES: Case(one, ((np.ones((2, 3)),), {}), _single(_arrays)),
    K.DENSE: Case(one, ((T1,), {}), _single(_arrays), dynamic=True),
}


def test_every_guard_kind_has_a_row_and_a_case() -> None:
    assert set(ROWS) == set(GuardKind)
    assert set(CASES) == set(GuardKind)


def _guards_of(kind: GuardKind, case: Case) -> tuple[Callable[..., Any], list[Guard]]:
    jitted = jit(case.fn, dynamic=case.dynamic)
    args, kwargs = case.example
    jitted(*args, **kwargs)
    (entry,) = cache_entries(jitted)
    found = [guard for guard in entry.guards if guard.kind is kind]
    assert found, f"calling {case.fn.__name__}{args} built no {kind.name} guard"
    return jitted, found


def _verdict(check: Callable[..., bool], cells: Any, call: Call) -> bool:
    args, kwargs = call
    try:
        return bool(check(cells, *args, **kwargs) if cells is not None else check(*args, **kwargs))
    except Exception:
        return False


def _evaluated(guard: Guard, inputs: Inputs) -> bool:
    try:
        return holds_for(guard, inputs)
    except Exception:
        return False


@contextmanager
def _world(case: Case) -> Iterator[None]:
    try:
        yield
    finally:
        if case.restore is not None:
            case.restore()


@pytest.mark.parametrize("kind", list(GuardKind), ids=lambda kind: kind.name)
def test_generated_clause_and_evaluator_agree_on_random_calls(kind: GuardKind) -> None:
    case = CASES[kind]
    rng = random.Random(kind.value)
    with _world(case):
        _, guards = _guards_of(kind, case)
        fn = case.fn
        signature = inspect.signature(fn)
        cells = fn.__closure__
        for guard in guards:
            check = compile_guards(
                [guard],
                signature,
                has_cells=cells is not None,
                namespace=fn.__globals__,
                examples={},
            )
            stored = None
            if case.storable:
                stored = load_guard(dump_guard(guard), fn.__globals__, cells)
            else:
                with pytest.raises(Unfingerprintable):
                    dump_guard(guard)
            seen = set()
            for _ in range(DRAWS):
                if case.world is not None:
                    case.world(rng)
                call = case.draw(rng)
                bound = signature.bind(*call[0], **call[1])
                bound.apply_defaults()
                inputs = Inputs(bound.arguments, cells, fn.__globals__)
                compiled = _verdict(check, cells, call)
                evaluated = _evaluated(guard, inputs)
                assert compiled == evaluated, (
                    f"{describe_guard(guard)}: the generated clause says {compiled}, the "
                    f"evaluator {evaluated}, for {call!r}\n{check.__compilecache_source__}"  # type: ignore[attr-defined]
                )
                if stored is not None:
                    assert _evaluated(stored, inputs) == evaluated, f"stored {stored} differs"
                message = first_failure([guard], inputs)
                assert (message is None) == evaluated, message
                assert message is None or path_text(guard.path) in message, message
                seen.add(evaluated)
            assert seen == {True, False}, f"{describe_guard(guard)} was always {seen}"
            assert path_text(guard.path) in describe_guard(guard) or kind is K.DISTINCT


def test_a_weakly_guarded_object_is_not_kept_alive() -> None:
    """The WEAK_IDENTITY row's subject: the entry's guard holds a weak reference."""
    thing = Thing()
    ref = weakref.ref(thing)
    jitted = jit(one)
    jitted(thing)
    del thing
    assert ref() is None
    assert len(cache_entries(jitted)) <= 1

"""Dispatch benchmark: the per-call cost of compilecache.jit against the alternatives, in one run.

    python benchmarks/dispatch.py           # about a minute (torch.compile compiles once)
    python benchmarks/dispatch.py --quick

For ``f(x, y) = x * y + 1`` on two small tensors (torch when installed, numpy otherwise), prints
the median time per call of: the plain function; the compiled callable called directly (the
eager backend's, i.e. the function itself); ``compilecache.jit`` on a hit; ``torch.compile``.
Then the cost of a miss that walks 8 non-matching entries before its compile starts. Targets
(from the dispatch issue): a hit at most 1.0 us above the compiled callable; at most a tenth of
torch.compile's own per-call overhead; a miss with 8 entries under 50 us before compiling.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from compilecache.dispatch import cache_entries, jit, reset


def per_call(calls: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """Median over ``repeat`` rounds of the mean microseconds per call of each of ``calls``;
    the calls take turns within a round, so noise on this shared machine hits all of them."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            samples[name].append(timeit.timeit(call, number=number) / number * 1e6)
    return {name: statistics.median(times) for name, times in samples.items()}


def inputs() -> tuple[str, Any, Any]:
    try:
        import torch

        torch.set_num_threads(1)
        return "torch", torch.randn(8), torch.randn(8)
    except ImportError:
        import numpy as np

        return "numpy", np.ones(8, np.float32), np.ones(8, np.float32)


def f(x: Any, y: Any) -> Any:
    return x * y + 1


def miss_cost(x_family: str, rounds: int) -> float:
    """Median microseconds from a call to its backend being invoked, with 8 entries present
    and none matching (dynamic=False, so every new shape is a miss)."""
    if x_family == "torch":
        import torch

        make = lambda n: (torch.randn(n), torch.randn(n))  # noqa: E731
    else:
        import numpy as np

        make = lambda n: (np.ones(n, np.float32), np.ones(n, np.float32))  # noqa: E731
    started_at: list[float] = []

    def timing_backend(fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        started_at.append(time.perf_counter())
        return fn

    def g(x: Any, y: Any) -> Any:
        return x * y + 1

    wrapped = jit(g, backend=timing_backend, dynamic=False, recompile_limit=64)
    samples = []
    for round_ in range(rounds):
        reset()
        for n in range(1, 9):
            wrapped(*make(n))
        assert len(cache_entries(wrapped)) == 8
        probe = make(100 + round_)
        started_at.clear()
        began = time.perf_counter()
        wrapped(*probe)
        samples.append((started_at[0] - began) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-torch-compile", action="store_true")
    args = parser.parse_args()
    number, repeat = (10_000, 5) if args.quick else (20_000, 15)

    family, x, y = inputs()
    jitted = jit(f)
    assert bool((jitted(x, y) == f(x, y)).all())
    compiled = cache_entries(jitted)[0].compiled
    check = cache_entries(jitted)[0].check
    calls: dict[str, Callable[[], Any]] = {
        "plain function": lambda: f(x, y),
        "compiled callable, direct": lambda: compiled(x, y),
        "compilecache.jit, hit": lambda: jitted(x, y),
        "  its guard alone": lambda: check(x, y),
    }
    if family == "torch" and not args.no_torch_compile:
        import torch

        started = time.perf_counter()
        compiled_by_torch = torch.compile(f)
        compiled_by_torch(x, y)
        print(f"(torch.compile's first call took {time.perf_counter() - started:.1f} s)")
        calls["torch.compile"] = lambda: compiled_by_torch(x, y)
    rows = per_call(calls, number, repeat)
    version = sys.version.split()[0]
    print(f"\nf(x, y) = x * y + 1 on two {family} arrays of 8 floats, python {version}")
    print(f"median microseconds per call ({repeat} rounds of {number:,} calls, taking turns):")
    for name, value in rows.items():
        print(f"  {name:28s} {value:8.2f}")
    overhead = rows["compilecache.jit, hit"] - rows["compiled callable, direct"]
    print(f"\n  jit overhead on a hit:       {overhead:6.2f} us (target <= 1.00)")
    verdicts = {"hit overhead <= 1.0 us": overhead <= 1.0}
    if "torch.compile" in rows:
        torch_overhead = rows["torch.compile"] - rows["plain function"]
        print(f"  torch.compile's overhead:    {torch_overhead:6.2f} us")
        print(
            f"  ratio torch.compile overhead / jit overhead: {torch_overhead / overhead:5.1f}x "
            "(target >= 10)"
        )
        verdicts["a tenth of torch.compile's overhead"] = overhead * 10 <= torch_overhead
    miss = miss_cost(family, 15 if args.quick else 41)
    print(f"  miss with 8 entries, until the compile starts: {miss:6.1f} us (target < 50)")
    verdicts["miss < 50 us"] = miss < 50
    print("\nTargets")
    for name, ok in verdicts.items():
        print(f"  {'met   ' if ok else 'MISSED'} {name}")


if __name__ == "__main__":
    main()

"""One case of the demo and the torch benchmark, run in a fresh process.

``python -m compilecache.torch._demo_cases CASE`` prints one JSON line: the time from compiling
to the first output (after ``import torch`` and the import of what the case uses), the median
steady-state time of a call, the largest difference from eager, and what compiled. Cases:

- ``eager``: the model itself.
- ``torch.compile``: ``torch.compile(model)`` (cold or warm depending on TORCHINDUCTOR_CACHE_DIR).
- ``compilecache``: ``compilecache.torch.compile(model)`` on the configured store.
- ``compilecache-jit``: the same with ``mode="jit"`` (torch.compile, its caches in the store).
- ``aoti``: ``torch.export`` + AOTInductor + torch's C++ loader by hand, the baseline of a cold
  compilecache compile.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

CASES = ("eager", "torch.compile", "compilecache", "compilecache-jit", "aoti")


def _steady(call: Callable[[], Any], calls: int = 200, rounds: int = 7) -> float:
    """Median seconds per call over ``rounds`` rounds of ``calls`` calls, after a warm-up."""
    for _ in range(20):
        call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times)


def _overhead(
    ours: Callable[[], Any], direct: Callable[[], Any], calls: int = 100, rounds: int = 41
) -> float:
    """Median over rounds of (ours - direct) per call, the two timed alternately in each
    round, so that the machine's drift and noise hit both alike."""
    differences = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            ours()
        middle = time.perf_counter()
        for _ in range(calls):
            direct()
        ended = time.perf_counter()
        differences.append(((middle - started) - (ended - middle)) / calls)
    return statistics.median(differences)


def _compilecache(model: Any, x: Any, report: dict[str, Any], mode: str = "auto") -> Any:
    import torch

    import compilecache.torch as cct

    compiled: Any = cct.compile(model, mode=mode)
    with torch.no_grad():
        compiled(x)
    stats = cct.stats(compiled)
    names = ("aot compiles", "aot loads", "jit compiles", "jit loads")
    report["stats"] = {k: stats[k] for k in names}
    report["fallbacks"] = stats["fallbacks"]
    return compiled


def _torch_compile(model: Any, x: Any, report: dict[str, Any]) -> Any:
    import torch

    compiled: Any = torch.compile(model)
    with torch.no_grad():
        compiled(x)
    return compiled


def _aoti(model: Any, x: Any, report: dict[str, Any]) -> Any:
    import os
    import tempfile

    import torch
    import torch._inductor

    from ._package import PACKAGE_OPTIONS

    program = torch.export.export(model, (x,), strict=False)
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "model.pt2")
        torch._inductor.aoti_compile_and_package(
            program, package_path=path, inductor_configs=dict(PACKAGE_OPTIONS)
        )
        loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", False, 1, -1)
    state = dict(model.state_dict(keep_vars=True))
    loader.load_constants({n: state[n] for n in loader.get_constant_fqns()}, False, True, True)
    with torch.no_grad():
        loader.run([x])
    return lambda value: loader.run([value])[0]


def _eager(model: Any, x: Any, report: dict[str, Any]) -> Any:
    import torch

    with torch.no_grad():
        model(x)
    return model


_CASES = {
    "eager": _eager,
    "torch.compile": _torch_compile,
    "compilecache": _compilecache,
    "compilecache-jit": lambda model, x, report: _compilecache(model, x, report, "jit"),
    "aoti": _aoti,
}


def run_case(case: str) -> dict[str, Any]:
    """Run ``case`` (one of :data:`CASES`) on the demo model; the report as a dict."""
    import torch

    torch.set_num_threads(1)
    from ._demo_model import demo_input, demo_model

    if case not in _CASES:
        raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")
    model = demo_model()
    x = demo_input()
    report: dict[str, Any] = {"case": case}
    started = time.perf_counter()
    compiled = _CASES[case](model, x, report)
    report["first_call_seconds"] = time.perf_counter() - started
    with torch.no_grad():
        report["max_error"] = float((compiled(x) - model(x)).abs().max())
        report["steady_call_seconds"] = _steady(lambda: compiled(x))
        if case == "compilecache":
            entry = compiled._cc_call.__compilecache_dispatcher__.view.lookup[0].compiled
            if getattr(entry, "mode", None) == "aot":
                run, flat = entry._run, [x]
                report["direct_runner_seconds"] = _steady(lambda: run(flat))
                report["overhead_seconds"] = _overhead(lambda: compiled(x), lambda: run(flat))
    report["inductor_imported"] = "torch._inductor" in sys.modules
    return report


if __name__ == "__main__":
    print(json.dumps(run_case(sys.argv[1])))

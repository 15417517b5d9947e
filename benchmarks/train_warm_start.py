"""Training benchmark: the first training step (forward + backward) cold and warm, and the
steady step, of the demo transformer in train mode; every case in a fresh process, one run.

    python benchmarks/train_warm_start.py [--warm-runs 3] [--steps 30] [--json PATH]

Cases: eager; torch.compile cold (empty Inductor cache) and warm (the same cache again);
torch's precompile (``torch.compile(m.forward, fullgraph=True).aot_compile(...)``,
``save_compiled_function``, ``torch.compiler.load_compiled_function``) cold, warm with its
Inductor cache and warm with an empty one; compilecache cold (empty store, empty Inductor
cache) and warm (its store, an empty Inductor cache). First step: from compile (or load) to
the end of the first backward, after ``import torch``. Steady step: the median of
``--steps`` forward + backward + SGD steps. Warm cases run ``--warm-runs`` times: medians.

Targets (the training issue): compilecache's warm first step at most 0.1 s with an empty
Inductor cache, and at least 30x faster than torch.compile's warm start; the steady step no
slower than torch.compile's; a cold compile at most 1.5x torch.compile's cold start.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

CASES = (
    "eager",
    "torch.compile",
    "precompile-save",
    "precompile-load",
    "compilecache",
)


def run_case(name: str, steps: int, path: str) -> dict[str, Any]:
    """In this (fresh) process: the case's first step, steady step and gradient error."""
    import torch

    from compilecache.torch._demo_model import TinyTransformer, demo_input

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyTransformer().train()
    torch.manual_seed(0)
    reference = TinyTransformer().train()
    x = demo_input()
    started = time.perf_counter()
    if name == "eager":
        step: Any = model
    elif name == "torch.compile":
        step = torch.compile(model)
    elif name == "precompile-save":
        # The compiled function is forward's, unbound: it takes the module first.
        compiled = torch.compile(model.forward, fullgraph=True).aot_compile(((x,), {}))
        compiled.save_compiled_function(path, external_data={"model": model})
        step = functools.partial(compiled, model)
    elif name == "precompile-load":
        with open(path, "rb") as file:
            loaded = torch.compiler.load_compiled_function(
                file, f_globals=vars(sys.modules[TinyTransformer.__module__]),
                external_data={"model": model},
            )  # fmt: skip
        step = functools.partial(loaded, model)
    else:
        import compilecache.torch as cct

        step = cct.compile(model)
    step(x).square().mean().backward()
    first = time.perf_counter() - started
    reference(x).square().mean().backward()
    error = max(
        float((p.grad - q.grad).abs().max())
        for p, q in zip(model.parameters(), reference.parameters(), strict=True)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps):
        begin = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step(x).square().mean().backward()
        optimizer.step()
        times.append(time.perf_counter() - begin)
    report: dict[str, Any] = {
        "first step seconds": first,
        "steady step ms": statistics.median(times) * 1e3,
        "max grad error": error,
    }
    if name == "compilecache":
        import compilecache.torch as cct

        stats = cct.stats(step)
        report.update({k: stats[k] for k in ("aot compiles", "aot loads", "entries by mode")})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--path", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.steps, args.path)))
        return
    scratch = Path(tempfile.mkdtemp(prefix="cc-train-bench-"))
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "COMPILECACHE_"))
    }
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's machine keeps bytecode caches
    salt = f"bench-{uuid.uuid4().hex[:8]}"

    def case(name: str, inductor: str, store: str = "store") -> dict[str, Any]:
        env = dict(
            base,
            TORCHINDUCTOR_CACHE_DIR=str(scratch / inductor),
            COMPILECACHE_DIR=str(scratch / store),
            COMPILECACHE_SALT=salt,
        )
        command = [sys.executable, __file__, "--case", name, "--steps", str(args.steps)]
        command += ["--path", str(scratch / "precompiled.bin")]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            return {"failed": done.stderr.strip().splitlines()[-1][:300]}
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def warm(name: str, inductor: Any, **options: str) -> dict[str, Any]:
        runs = [case(name, inductor(i), **options) for i in range(args.warm_runs)]
        ok = [r for r in runs if "failed" not in r]
        if not ok:
            return runs[0]
        merged = dict(ok[0])
        for field in ("first step seconds", "steady step ms"):
            merged[field] = statistics.median(r[field] for r in ok)
        return merged

    results: dict[str, Any] = {}
    try:
        print("running each case in a fresh process...", flush=True)
        results["eager"] = case("eager", "ind-eager")
        results["torch.compile, cold"] = case("torch.compile", "ind-tc")
        results["torch.compile, warm"] = warm("torch.compile", lambda i: "ind-tc")
        results["precompile, cold"] = case("precompile-save", "ind-pre")
        results["precompile, warm"] = warm("precompile-load", lambda i: "ind-pre")
        results["precompile, warm, empty Inductor cache"] = warm(
            "precompile-load", lambda i: f"ind-pre-empty-{i}"
        )
        results["compilecache, cold"] = case("compilecache", "ind-cc-cold", store="cc")
        results["compilecache, warm"] = warm(
            "compilecache", lambda i: f"ind-cc-empty-{i}", store="cc"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{'case':42} {'first step':>12} {'steady step':>12} {'grad error':>11}")
    for name, r in results.items():
        if "failed" in r:
            print(f"{name:42} failed: {r['failed']}")
            continue
        print(
            f"{name:42} {r['first step seconds']:>10.3f} s {r['steady step ms']:>9.2f} ms "
            f"{r['max grad error']:>11.1e}"
        )
    _ratios(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _ratios(results: dict[str, Any]) -> None:
    def get(name: str, field: str) -> float | None:
        value = results.get(name, {}).get(field)
        return float(value) if value is not None else None

    warm = get("compilecache, warm", "first step seconds")
    jit_warm = get("torch.compile, warm", "first step seconds")
    pre_warm = get("precompile, warm", "first step seconds")
    cold, jit_cold = (
        get(f"{n}, cold", "first step seconds") for n in ("compilecache", "torch.compile")
    )
    steady = get("compilecache, warm", "steady step ms")
    jit_steady = get("torch.compile, warm", "steady step ms")
    print()
    if warm is not None:
        print(f"compilecache warm first step: {warm:.3f} s (target <= 0.1 s, moonshot 0.02 s)")
        if jit_warm:
            print(
                f"  {jit_warm / warm:.0f}x faster than torch.compile's warm start (target >= 30x)"
            )
        if pre_warm:
            print(f"  {pre_warm / warm:.0f}x faster than torch's precompile, Inductor cache warm")
    if steady is not None and jit_steady:
        print(f"steady step: {steady:.2f} ms vs torch.compile {jit_steady:.2f} ms "
              f"({steady / jit_steady:.2f}x; target <= 1.0x)")  # fmt: skip
    if cold is not None and jit_cold:
        print(f"cold compile: {cold:.1f} s vs torch.compile {jit_cold:.1f} s "
              f"({cold / jit_cold:.2f}x; target <= 1.5x)")  # fmt: skip


if __name__ == "__main__":
    main()

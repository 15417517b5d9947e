"""Zoo benchmark: real transformers and diffusers models (tiny seeded configs), every case in a
fresh process, in one run.

    python benchmarks/zoo.py [--models gpt2,bert] [--warm-runs 3] [--json PATH]

Per model: eager; torch.compile cold (empty Inductor cache) and warm (the same cache again);
AOTInductor by hand (export, compile, C++ loader: the baseline of a cold compile); compilecache
cold (empty store, empty Inductor cache) and warm (its store, an empty Inductor cache). First
output: from compiling to the first output, after the imports and building the model. Warm
cases run ``--warm-runs`` times; medians are quoted. Per call: the median steady-state time.

Targets (the real-models issue): every model warm-starts in at most 0.1 s from its AOT package
and at least 20 times faster than torch.compile's warm start; outputs within 1e-5 of eager;
the use_cache variants served by AOT packages; a cold compile at most 1.1 times AOTInductor's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

CASES = ("eager", "torch.compile", "aoti", "compilecache")


def _aoti(model: Any, inputs: dict[str, Any]) -> Callable[..., Any]:
    import torch
    import torch._inductor
    from torch.utils import _pytree as pytree

    from compilecache.torch._package import PACKAGE_OPTIONS

    program = torch.export.export(model, (), inputs, strict=False)
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "model.pt2")
        torch._inductor.aoti_compile_and_package(
            program, package_path=path, inductor_configs=dict(PACKAGE_OPTIONS)
        )
        loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", False, 1, -1)
    state = {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }
    names = loader.get_constant_fqns()
    made = dict(zip((f"_tensor_constant{i}" for i in range(len(program.constants))),
                    program.constants.values(), strict=True))  # fmt: skip
    loader.load_constants({n: state.get(n, made.get(n)) for n in names}, False, True, True)
    out_spec = pytree.treespec_loads(loader.get_call_spec()[1])

    def call(**kwargs: Any) -> Any:
        leaves = [v for v in pytree.tree_leaves(kwargs) if isinstance(v, torch.Tensor)]
        return pytree.tree_unflatten(loader.run(leaves), out_spec)

    return call


def run_case(case: str, name: str) -> dict[str, Any]:
    """One case on one zoo model, in this process; the report as a dict."""
    import torch
    from torch.utils._pytree import tree_leaves

    torch.set_num_threads(1)
    import compilecache.torch as cct
    from compilecache.torch import _model_libraries, _zoo
    from compilecache.torch._demo_cases import _steady as steady

    model = _zoo.build(name)
    _model_libraries.activate()  # cache classes as pytree nodes, to compare outputs
    inputs = _zoo.inputs(name)
    report: dict[str, Any] = {"case": case, "model": name}
    started = time.perf_counter()
    with torch.no_grad():
        if case == "eager":
            compiled: Any = model
        elif case == "torch.compile":
            compiled = torch.compile(model)
        elif case == "aoti":
            compiled = _aoti(model, inputs)
        else:
            compiled = cct.compile(model)
        out = compiled(**inputs)
        report["first_call_seconds"] = time.perf_counter() - started
        expected = model(**_zoo.inputs(name))
        report["max_error"] = max(
            float((a - b).abs().max())
            for a, b in zip(tree_leaves(out), tree_leaves(expected), strict=True)
        )
        report["steady_call_seconds"] = steady(lambda: compiled(**inputs), calls=50)
    if case == "compilecache":
        stats = cct.stats(compiled)
        report["stats"] = {k: stats[k] for k in ("aot compiles", "aot loads", "jit compiles")}
        report["fallbacks"] = dict(stats["fallbacks"])
        report["bypasses"] = dict(stats["bypasses"])
    return report


def case(name: str, model: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--case", name, model],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"case {name} of {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(model: str, scratch: Path, base: dict[str, str], warm_runs: int) -> dict[str, Any]:
    def env(inductor: str, store: str) -> dict[str, str]:
        return dict(
            base,
            TORCHINDUCTOR_CACHE_DIR=str(scratch / model / inductor),
            COMPILECACHE_DIR=str(scratch / model / store),
        )

    found: dict[str, Any] = {"eager": [case("eager", model, env("i0", "s0"))]}
    found["torch.compile cold"] = [case("torch.compile", model, env("tc", "s0"))]
    found["torch.compile warm"] = [
        case("torch.compile", model, env("tc", "s0")) for _ in range(warm_runs)
    ]
    found["aoti cold"] = [case("aoti", model, env("aoti", "s0"))]
    found["compilecache cold"] = [case("compilecache", model, env("cc", "cc"))]
    found["compilecache warm"] = [
        case("compilecache", model, env(f"cc-empty-{i}", "cc")) for i in range(warm_runs)
    ]
    return found


def median(reports: list[dict[str, Any]], field: str) -> float:
    return statistics.median(r[field] for r in reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", nargs=2, metavar=("CASE", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--models", default=None, help="comma-separated zoo names (all)")
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return
    from compilecache.torch import _zoo

    models = args.models.split(",") if args.models else list(_zoo.MODELS)
    scratch = Path(tempfile.mkdtemp(prefix="cc-zoo-bench-"))
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "COMPILECACHE_"))
    }
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # users' machines keep bytecode caches
    base["COMPILECACHE_SALT"] = f"bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {}
    try:
        for model in models:
            print(f"{model}: running each case in a fresh process...", flush=True)
            results[model] = measure(model, scratch, base, args.warm_runs)
            row(model, results[model])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def row(model: str, found: dict[str, Any]) -> None:
    for label, reports in found.items():
        print(
            f"  {label:20s} first {median(reports, 'first_call_seconds'):8.3f} s  "
            f"per call {1e6 * median(reports, 'steady_call_seconds'):8.0f} us  "
            f"max diff {max(r['max_error'] for r in reports):.1e}",
            flush=True,
        )


def summary(results: dict[str, Any]) -> None:
    print(
        "\n| model | eager per call | torch.compile cold / warm | AOTInductor cold | "
        "compilecache cold / warm | per call (compilecache) | warm vs torch.compile warm | "
        "cold vs AOTInductor | max diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model, found in results.items():
        warm = median(found["compilecache warm"], "first_call_seconds")
        tc_warm = median(found["torch.compile warm"], "first_call_seconds")
        cold = median(found["compilecache cold"], "first_call_seconds")
        aoti = median(found["aoti cold"], "first_call_seconds")
        stats = found["compilecache warm"][0].get("stats", {})
        served = "AOT" if stats.get("aot loads") == 1 and not stats.get("jit compiles") else "JIT"
        error = max(r["max_error"] for reports in found.values() for r in reports)
        print(
            f"| {model} | {1e6 * median(found['eager'], 'steady_call_seconds'):.0f} us | "
            f"{median(found['torch.compile cold'], 'first_call_seconds'):.1f} s / "
            f"{tc_warm:.2f} s | {aoti:.1f} s | {cold:.1f} s / {warm:.3f} s ({served}) | "
            f"{1e6 * median(found['compilecache warm'], 'steady_call_seconds'):.0f} us | "
            f"{tc_warm / warm:.0f}x | {cold / aoti:.2f}x | {error:.1e} |"
        )


if __name__ == "__main__":
    main()

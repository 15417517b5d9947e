"""Generation benchmark: ``generate()`` with a tiny transformers model, every case in a fresh
process, in one run.

    python benchmarks/generate.py [--models gpt2,llama-cache] [--warm-runs 3] [--json PATH]

Cases: eager; torch.compile on transformers' own path (``model.forward =
torch.compile(model.forward)``) cold (empty Inductor cache) and warm (that cache again);
compilecache cold (empty store, empty Inductor cache) and warm (its store, an empty Inductor
cache). Per case: the first ``generate`` of 24 new tokens (greedy, batch 2, prompt 8) from
compiling on, after imports and building the model (the warm start), its first token
(``max_new_tokens=1``, right after), and the steady per-token time: the median over repeated
generates of (time of 24 tokens - time of 1 token) / 23. Warm cases run ``--warm-runs``
times; medians are quoted. Tokens are compared with eager's.

Targets (the generation issue): a warm first generate in at most 0.3 s (moonshot 0.1 s);
per-token time at most eager's and torch.compile's; tokens equal to eager's.
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
from pathlib import Path
from typing import Any

CASES = ("eager", "torch.compile", "compilecache")
NEW_TOKENS = 24


def _generate(model: Any, inputs: dict[str, Any], tokens: int) -> Any:
    import torch

    with torch.no_grad():
        return model.generate(
            **inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False
        )


def worker(name: str, case: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from compilecache.torch import _zoo

    model = _zoo.build(name)
    generator = torch.Generator().manual_seed(8)
    ids = torch.randint(1, 100, (2, 8), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    started = time.perf_counter()
    if case == "torch.compile":
        model.forward = torch.compile(model.forward)
        fast = model
    elif case == "compilecache":
        import compilecache.torch as cct

        fast = cct.compile(model)
    else:
        fast = model
    tokens = _generate(fast, inputs, NEW_TOKENS)
    first = time.perf_counter() - started
    started = time.perf_counter()
    _generate(fast, inputs, 1)
    first_token = time.perf_counter() - started
    per_token = []
    for _ in range(7):
        one = time.perf_counter()
        _generate(fast, inputs, 1)
        one = time.perf_counter() - one
        many = time.perf_counter()
        _generate(fast, inputs, NEW_TOKENS)
        many = time.perf_counter() - many
        per_token.append((many - one) / (NEW_TOKENS - 1))
    report: dict[str, Any] = {
        "first generate s": first,
        "first token s": first_token,
        "per token s": statistics.median(per_token),
        "tokens": tokens.tolist(),
    }
    if case == "compilecache":
        stats = cct.stats(fast)
        report["packages"] = len(stats["entries by mode"])
        report["modes"] = sorted(set(stats["entries by mode"]))
        report["aot compiles"] = stats["aot compiles"]
        report["aot loads"] = stats["aot loads"]
    return report


def _run(name: str, case: str, env: dict[str, str]) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, __file__, "--worker", name, case],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if process.returncode != 0:
        raise SystemExit(f"{name} {case} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _env(work: Path, store: str, inductor: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPILECACHE_", "TORCH"))}
    root = Path(__file__).resolve().parent.parent
    env.update(
        COMPILECACHE_DIR=str(work / store),
        TORCHINDUCTOR_CACHE_DIR=str(work / inductor),
        PYTHONPATH=os.pathsep.join([str(root / "src"), env.get("PYTHONPATH", "")]),
    )
    return env


def bench(name: str, warm_runs: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="compilecache-generate-"))
    try:
        result: dict[str, Any] = {"eager": _run(name, "eager", _env(work, "s0", "i0"))}
        result["torch.compile cold"] = _run(name, "torch.compile", _env(work, "s0", "i1"))
        warm = [_run(name, "torch.compile", _env(work, "s0", "i1")) for _ in range(warm_runs)]
        result["torch.compile warm"] = _median(warm)
        result["compilecache cold"] = _run(name, "compilecache", _env(work, "s2", "i2"))
        runs = []
        for run in range(warm_runs):
            runs.append(_run(name, "compilecache", _env(work, "s2", f"empty{run}")))
        result["compilecache warm"] = _median(runs)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(runs[0])
    for field in ("first generate s", "first token s", "per token s"):
        merged[field] = statistics.median(run[field] for run in runs)
    merged["same tokens every run"] = all(run["tokens"] == runs[0]["tokens"] for run in runs)
    return merged


def report(name: str, result: dict[str, Any]) -> None:
    eager = result["eager"]
    print(f"\n{name}: first generate of {NEW_TOKENS} tokens (from compiling), per-token time")
    for case, run in result.items():
        same = run["tokens"] == eager["tokens"]
        extra = ""
        if "packages" in run:
            extra = f"  packages {run['packages']} {run['modes']}, loads {run['aot loads']}"
        print(
            f"  {case:20s} first generate {run['first generate s']:8.3f} s  "
            f"first token {run['first token s'] * 1e3:7.2f} ms  "
            f"per token {run['per token s'] * 1e3:6.2f} ms  tokens equal eager: {same}{extra}"
        )
    warm, jit = result["compilecache warm"], result["torch.compile warm"]
    print(
        f"  warm first generate: compilecache / torch.compile = "
        f"{warm['first generate s'] / jit['first generate s']:.3f} "
        f"(target: at most 0.3 s, got {warm['first generate s']:.3f} s)"
    )
    print(
        f"  per token: compilecache / eager = {warm['per token s'] / eager['per token s']:.2f}, "
        f"compilecache / torch.compile = {warm['per token s'] / jit['per token s']:.2f} "
        "(target: at most 1 for both)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,llama-cache")
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    results = {}
    for name in options.models.split(","):
        started = time.perf_counter()
        results[name] = bench(name, options.warm_runs)
        report(name, results[name])
        print(f"  ({time.perf_counter() - started:.0f} s)")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

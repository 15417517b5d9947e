"""A worker process for the torch tests: compile a model from tests/torchmodels.py with
compilecache.torch, call it, and print a JSON report on the last line of stdout.

``python torchworker.py MODEL [--batches 2,3] [--mode auto] [--forbid-compile] [--wait-file F]``
The store is the configured one (COMPILECACHE_DIR, COMPILECACHE_REMOTE). With
``--forbid-compile``, torch.export, AOTInductor and torch.compile raise if called.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch

import torchmodels

calls = {"export": 0, "aoti": 0, "torch.compile": 0}


def _patch(forbid: bool) -> None:
    import torch._inductor

    def counting(name: str, original: object) -> object:
        def wrapper(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            if forbid:
                raise AssertionError(f"{name} called on a warm start")
            return original(*args, **kwargs)  # type: ignore[operator]

        return wrapper

    torch.export.export = counting("export", torch.export.export)
    torch._inductor.aoti_compile_and_package = counting(
        "aoti", torch._inductor.aoti_compile_and_package
    )
    torch.compile = counting("torch.compile", torch.compile)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batches", default="2")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--forbid-compile", action="store_true")
    parser.add_argument("--count", action="store_true")
    parser.add_argument("--wait-file", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.forbid_compile or args.count:
        _patch(args.forbid_compile)
    inductor_before = "torch._inductor" in sys.modules
    import compilecache.torch as cct

    if args.wait_file:  # start together with the other workers
        while not os.path.exists(args.wait_file):
            time.sleep(0.01)
    model = torchmodels.make(args.model)
    errors = []
    started = time.perf_counter()
    compiled = cct.compile(model, mode=args.mode)
    first = None
    with torch.no_grad():
        for batch in map(int, args.batches.split(",")):
            x = torchmodels.example(args.model, batch)
            out = compiled(x)
            if first is None:
                first = time.perf_counter() - started
            errors.append(float((out - model(x)).abs().max()))
    stats = cct.stats(compiled)
    report = {
        "errors": errors,
        "first_call_seconds": first,
        "stats": stats,
        "calls": calls,
        "inductor_imported": "torch._inductor" in sys.modules and not inductor_before,
    }
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()

"""A worker process for the training tests: train a model of tests/trainmodels.py through
compilecache.torch and eagerly from the same weights, and print a JSON report on the last line.

``python trainworker.py MODEL [--steps N] [--forbid-compile] [--wait-file F]``. The store is
the configured one (COMPILECACHE_DIR, COMPILECACHE_REMOTE). With ``--forbid-compile``,
torch.export, AOTInductor and torch.compile raise if called.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch

import trainmodels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--forbid-compile", action="store_true")
    parser.add_argument("--wait-file", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import torchworker

    torchworker._patch(args.forbid_compile)
    import compilecache.torch as cct

    if args.wait_file:  # start together with the other workers
        while not os.path.exists(args.wait_file):
            time.sleep(0.01)
    model = trainmodels.build(args.model)
    eager = trainmodels.build(args.model)
    started = time.perf_counter()
    fast = cct.compile(model)
    x, target = trainmodels.batch(args.model)
    trainmodels.loss(fast(x), target).backward()
    first = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    losses = trainmodels.train(fast, model.parameters(), args.model, args.steps)
    want = trainmodels.train(eager, eager.parameters(), args.model, args.steps)
    stats = cct.stats(fast)
    report = {
        "first step seconds": first,
        "losses": losses,
        "eager losses": want,
        "entries by mode": stats["entries by mode"],
        "aot compiles": stats["aot compiles"],
        "aot loads": stats["aot loads"],
        "fallbacks": dict(stats["fallbacks"]),
        "calls": torchworker.calls,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()

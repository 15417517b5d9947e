"""A worker process for the zoo tests: compile the zoo's models with compilecache.torch, call
each once, compare with eager, and print a JSON report on the last line of stdout.

``python zooworker.py gpt2,bert,... [--forbid-compile]``. The store is the configured one
(COMPILECACHE_DIR). With ``--forbid-compile``, torch.export, AOTInductor and torch.compile
raise if called.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch

import torchworker
from compilecache.torch import _zoo


def field_types(output: object) -> list[str]:
    values = output.values() if isinstance(output, dict) else ()
    return [type(value).__qualname__ for value in values]


def main() -> None:
    names = sys.argv[1].split(",")
    torch.set_num_threads(1)
    torchworker._patch("--forbid-compile" in sys.argv)
    from torch.utils._pytree import tree_leaves

    import compilecache.torch as cct

    report = {}
    for name in names:
        model = _zoo.build(name)
        started = time.perf_counter()
        fast = cct.compile(model)
        with torch.no_grad():
            out = fast(**_zoo.inputs(name))
            seconds = time.perf_counter() - started
            expected = model(**_zoo.inputs(name))
        got, want = tree_leaves(out), tree_leaves(expected)
        stats = cct.stats(fast)
        report[name] = {
            "seconds": seconds,
            "type": type(out).__qualname__,
            "expected type": type(expected).__qualname__,
            "types": [
                type(v).__qualname__ for v in (out.values() if hasattr(out, "values") else ())
            ],
            "expected types": [
                type(v).__qualname__
                for v in (expected.values() if hasattr(expected, "values") else ())
            ],
            "leaves": [len(got), len(want)],
            "error": max(float((a - b).abs().max()) for a, b in zip(got, want, strict=True)),
            "entries by mode": stats["entries by mode"],
            "aot compiles": stats["aot compiles"],
            "aot loads": stats["aot loads"],
            "fallbacks": dict(stats["fallbacks"]),
            "bypasses": dict(stats["bypasses"]),
        }
    print(json.dumps({"models": report, "calls": torchworker.calls}))


if __name__ == "__main__":
    main()

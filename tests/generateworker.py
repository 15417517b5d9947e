"""A worker process for the generation tests: ``generate`` with a zoo model through
compilecache.torch and eagerly, over the cases below, and a JSON report on the last line of
stdout.

``python generateworker.py gpt2 [--forbid-compile]``. The store is the configured one
(COMPILECACHE_DIR). With ``--forbid-compile``, torch.export, AOTInductor and torch.compile
raise if called.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch

#: (prompt length, batch size): two prompt lengths, batch sizes 2 and 1.
CASES = ((8, 2), (8, 1), (5, 2), (5, 1))
NEW_TOKENS = 24


def prompt(length: int, batch: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 * length + batch)
    ids = torch.randint(1, 100, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def greedy(model: Any, length: int, batch: int, **options: Any) -> list[list[int]]:
    with torch.no_grad():
        out = model.generate(
            **prompt(length, batch),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            **options,
        )
    return out.tolist()  # type: ignore[no-any-return]


def main() -> None:
    import torchworker

    name = sys.argv[1]
    torch.set_num_threads(1)
    torchworker._patch("--forbid-compile" in sys.argv)
    import compilecache.torch as cct
    from compilecache.torch import _zoo

    model = _zoo.build(name)
    started = time.perf_counter()
    fast = cct.compile(model)
    compiled = [greedy(fast, *CASES[0])]
    first = time.perf_counter() - started
    compiled += [greedy(fast, *case) for case in CASES[1:]]
    stats = cct.stats(fast)
    eager = [greedy(model, *case) for case in CASES]
    report = {
        "first generate seconds": first,
        "tokens": compiled,
        "eager tokens": eager,
        "entries by mode": stats["entries by mode"],
        "hits": stats["hits"],
        "aot compiles": stats["aot compiles"],
        "aot loads": stats["aot loads"],
        "fallbacks": dict(stats["fallbacks"]),
        "calls": torchworker.calls,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()

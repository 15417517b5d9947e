"""Helpers for the CLI tests: a store populated by real jit calls in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).parent

POPULATE = """
import sys
sys.path[:0] = [{tests!r}, {workdir!r}]
import numpy as np
import compilecache
from artifactbackend import FileLoggedBackend
import clipkg
backend = FileLoggedBackend({log!r})
scale = compilecache.jit(clipkg.scale, backend=backend)
shift = compilecache.jit(clipkg.shift, backend=backend)
for n in {sizes!r}:
    scale(np.arange(float(n)), 2)
    shift(np.arange(float(n)))
"""

MODULE = """
def scale(x, k):
    return x * k

def shift(x):
    return x + {offset}
"""


def clean_env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPILECACHE_")}
    env["COMPILECACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def populate(
    workdir: Path, cache: Path, sizes: tuple[int, ...] = (4,), offset: int = 1, **extra: str
) -> None:
    """Run ``scale`` and ``shift`` (of module ``clipkg`` in ``workdir``) for arrays of each
    size, persisting into ``cache``; counters are flushed at exit."""
    (workdir / "clipkg.py").write_text(textwrap.dedent(MODULE.format(offset=offset)))
    script = POPULATE.format(
        tests=str(TESTS), workdir=str(workdir), log=str(workdir / "log"), sizes=sizes
    )
    subprocess.run(
        [sys.executable, "-c", script], env=clean_env(cache, **extra), check=True, timeout=120
    )

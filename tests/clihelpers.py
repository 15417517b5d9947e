"""Helpers for the CLI tests: a store populated by real jit calls in a subprocess, made-up stored
entries, and the command run in-process with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

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


def corrupt_inline(cache: Path, key_prefix: str) -> str:
    """Flip the last byte of the first inline value whose key starts with ``key_prefix``
    (as a bad disk or a stray write would); return its key."""
    import sqlite3

    conn = sqlite3.connect(cache / "index-v1.sqlite3")
    key, value = conn.execute(
        "SELECT key, value FROM entries WHERE key LIKE ? AND value IS NOT NULL",
        (key_prefix + "%",),
    ).fetchone()
    damaged = bytearray(value)
    damaged[-1] ^= 0xFF
    conn.execute("UPDATE entries SET value = ? WHERE key = ?", (bytes(damaged), key))
    conn.commit()
    conn.close()
    return str(key)


def fake_entry(number: int, artifact: bytes, **fields: object) -> tuple[str, dict[str, bytes]]:
    """A stored entry (manifest and artifact) of a made-up function ``m:f`` built for this
    environment, its manifest ``fields`` overridden: (its digest, the store values)."""
    import json

    from compilecache.artifacts._manifest import Manifest
    from compilecache.keys import CacheKey, Component
    from compilecache.keys._key import environment_component

    key = CacheKey((Component("function", f"{number:064x}", {}), environment_component(None)))
    manifest = Manifest.build(
        key,
        function="m:f",
        backend="b",
        guards=[],
        spec=[],
        compile_seconds=1.0,
        artifact=artifact,
    )
    raw = json.loads(manifest.to_bytes())
    raw.update(fields)
    return key.digest, {
        f"cc1/a/{key.digest}": artifact,
        f"cc1/m/{key.digest}": json.dumps(raw).encode(),
    }


def run_isolated(cache: Path, *args: str, **env: str | None) -> Any:
    """The command in-process (click's runner) on the store in ``cache``, with every
    COMPILECACHE_* setting that could come from the environment (remote, secrets, configuration
    file, logs) unset; ``env`` on top."""
    from click.testing import CliRunner

    from compilecache.cli import main

    environment: dict[str, str | None] = {
        "COMPILECACHE_DIR": str(cache),
        "COMPILECACHE_REMOTE": None,
        "COMPILECACHE_REMOTE_UNSIGNED": None,
        "COMPILECACHE_REMOTE_READ_ONLY": None,
        "COMPILECACHE_SECRET": None,
        "COMPILECACHE_SECRET_PREVIOUS": None,
        "COMPILECACHE_CONFIG": None,
        "COMPILECACHE_LOGS": None,
    }
    environment.update(env)
    return CliRunner().invoke(main, list(args), env=environment)


def data(result: Any) -> Any:
    """The JSON a successful command printed."""
    import json

    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)

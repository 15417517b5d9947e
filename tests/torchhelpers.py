"""Helpers for the torch tests: torch required under CI, worker processes, a store per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redisserver import in_ci

WORKER = Path(__file__).with_name("torchworker.py")


def require_torch() -> Any:
    """torch, or a skip outside CI (under CI a missing torch fails: the suite must run)."""
    try:
        import torch
    except ImportError:
        if in_ci():
            pytest.fail("torch is not installed; CI must run the torch suite (pip install torch)")
        pytest.skip("torch is not installed")
    return torch


def worker_env(cache: Path, inductor: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMPILECACHE_", "TORCHINDUCTOR_"))
    }
    env.update(
        COMPILECACHE_DIR=str(cache),
        TORCHINDUCTOR_CACHE_DIR=str(inductor),
        PYTHONPATH=os.pathsep.join(sys.path),
        **extra,
    )
    return env


SHARED_SECRET = "shared-secret-" + "0" * 18


def shared_remote(url: str) -> dict[str, str]:
    """The settings of a worker that shares ``url`` as its remote tier, signed (an unsigned
    remote is not read without COMPILECACHE_REMOTE_UNSIGNED); its directory is signed too."""
    return {"COMPILECACHE_REMOTE": url, "COMPILECACHE_SECRET": SHARED_SECRET}


def start_worker(
    model: str, env: dict[str, str], *options: str, worker: Path = WORKER
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(worker), model, *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def report_of(process: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"worker failed ({process.returncode}):\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_worker(model: str, env: dict[str, str], *options: str) -> dict[str, Any]:
    return report_of(start_worker(model, env, *options))

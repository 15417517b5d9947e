"""The model zoo: real transformers and diffusers models (tiny seeded configs) compile ahead of
time in one process and warm-start from the store in a fresh one, compiling nothing, with
outputs of the same types within 1e-5 of eager. One cold and one warm process for the whole
zoo, to keep the suite's time down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from torchhelpers import require_torch, worker_env

require_torch()

from compilecache.torch import _zoo  # noqa: E402

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("zooworker.py")


def run_zoo(env: dict[str, str], *options: str) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, str(WORKER), ",".join(_zoo.MODELS), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    return json.loads(process.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_every_zoo_model_warm_starts_from_its_aot_package(tmp_path: Path) -> None:
    env = worker_env(tmp_path / "cache", tmp_path / "inductor")
    cold = run_zoo(env)
    warm = run_zoo(worker_env(tmp_path / "cache", tmp_path / "inductor-empty"), "--forbid-compile")
    assert warm["calls"] == {"export": 0, "aoti": 0, "torch.compile": 0}
    for name in _zoo.MODELS:
        for run, label in ((cold["models"][name], "cold"), (warm["models"][name], "warm")):
            where = f"{name} ({label}): {run}"
            assert run["error"] <= 1e-5, where
            assert run["type"] == run["expected type"], where
            assert run["types"] == run["expected types"], where
            assert run["leaves"][0] == run["leaves"][1], where
            assert run["entries by mode"] == ["aot"], where
            assert run["fallbacks"] == {} and run["bypasses"] == {}, where
        assert cold["models"][name]["aot compiles"] == 1, name
        assert warm["models"][name]["aot loads"] == 1, name
        assert warm["models"][name]["aot compiles"] == 0, name

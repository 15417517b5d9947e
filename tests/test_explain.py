"""explain: why a call would miss the store, in words, against the stored entries."""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import compilecache
from artifactbackend import FileLoggedBackend
from compilecache.artifacts import ArtifactHooks, explain
from compilecache.dispatch import jit, reset
from compilecache.stores import DiskStore


def load(workdir: Path, helper_body: str = "x * 2") -> Any:
    (workdir / "xhelpers.py").write_text(f"def scale(x):\n    return {helper_body}\n")
    (workdir / "xuser.py").write_text(
        textwrap.dedent(
            """
            import xhelpers

            def f(x):
                return xhelpers.scale(x) + 1
            """
        )
    )
    for name in ("xhelpers", "xuser"):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module("xuser")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, ArtifactHooks, Any]:
    monkeypatch.syspath_prepend(str(tmp_path))
    hooks = ArtifactHooks(DiskStore(tmp_path / "cache"))
    backend = FileLoggedBackend(os.devnull)
    return tmp_path, hooks, backend


def test_explain_a_hit_and_a_first_compile(setup: tuple[Path, ArtifactHooks, Any]) -> None:
    workdir, hooks, backend = setup
    f = jit(load(workdir).f, backend=backend, hooks=hooks)
    report = explain(f, np.ones(3))
    assert report.stored == [] and "no entry of this function is stored" in str(report)
    f(np.ones(3))
    report = explain(f, np.ones(3))
    assert report.hit and "the same key, a hit" in str(report)
    assert set(report.components) == {
        "function",
        "dependencies",
        "inputs",
        "backend",
        "environment",
        "salt",
    }


def test_explain_names_a_changed_helper_and_a_changed_input(
    setup: tuple[Path, ArtifactHooks, Any],
) -> None:
    workdir, hooks, backend = setup
    jit(load(workdir).f, backend=backend, hooks=hooks)(np.ones(3))
    reset()
    edited = jit(load(workdir, "x * 3").f, backend=backend, hooks=hooks)
    report = explain(edited, np.ones(3, np.float32))
    assert not report.hit
    differences = report.stored[0].differences
    assert any("function xhelpers:scale changed" in d and "xhelpers.py" in d for d in differences)
    assert any(d.startswith("input x: numpy float64") and "float32" in d for d in differences)
    assert "differs in" in str(report)


def test_explain_names_a_changed_package_version(
    setup: tuple[Path, ArtifactHooks, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir, hooks, backend = setup
    backend.packages = ("numpy",)
    f = jit(load(workdir).f, backend=backend, hooks=hooks)
    f(np.ones(3))
    monkeypatch.setattr("compilecache.keys._key.package_version", lambda name: "0.0.1")
    (difference,) = explain(f, np.ones(3)).stored[0].differences
    assert difference.startswith("environment packages:") and '"numpy": "0.0.1"' in difference


def test_explain_reports_bypasses_and_non_persisting_backends(
    setup: tuple[Path, ArtifactHooks, Any],
) -> None:
    _, hooks, backend = setup

    class Opaque:
        def __init__(self) -> None:
            self.lock = threading.Lock()  # no stable encoding

    thing = Opaque()
    g = jit(lambda x: (x, thing), backend=backend, hooks=hooks)
    report = explain(g, 1)
    assert report.bypass is not None and "closure value thing" in report.bypass
    eager = jit(lambda x: x)
    assert not explain(eager, 1).persistable
    assert compilecache.explain(eager, 1).persistable is False  # type: ignore[attr-defined]


def test_explain_reports_this_calls_bypass_and_does_not_count_it(tmp_path: Path) -> None:
    # explain() calls hooks.key_of(), which counts a bypass in hooks.stats (explain mutates
    # stats), and then reports list(stats.bypasses)[-1]: the most recently *first seen* reason
    # of any function, not this call's.
    hooks = ArtifactHooks(DiskStore(tmp_path / "cache"))
    backend = FileLoggedBackend(os.devnull)

    class First:
        def __init__(self) -> None:
            self.lock = threading.Lock()  # no stable encoding

    class Second(First):
        pass

    first_thing, second_thing = First(), Second()
    a = jit(lambda x: (x, first_thing), backend=backend, hooks=hooks)
    b = jit(lambda x: (x, second_thing), backend=backend, hooks=hooks)
    a(1)
    b(1)
    counted = dict(hooks.stats.bypasses)
    report = explain(a, 1)
    assert dict(hooks.stats.bypasses) == counted, "explain counted a bypass"
    assert report.bypass is not None and "first_thing" in report.bypass, report.bypass


def test_explain_survives_a_damaged_index(tmp_path: Path) -> None:
    # The per-function index is read from the (possibly shared) store without type checks:
    # float(record["created"]) and record.get(...) raise into the caller of explain().
    module_dir = tmp_path / "src"
    module_dir.mkdir()
    (module_dir / "rv_idx.py").write_text("def f(x):\n    return x + 1\n")
    sys.path.insert(0, str(module_dir))
    try:
        import rv_idx  # type: ignore[import-not-found]

        store = DiskStore(tmp_path / "cache")
        hooks = ArtifactHooks(store)
        f = jit(rv_idx.f, backend=FileLoggedBackend(os.devnull), hooks=hooks)
        f(1.0)
        (name,) = [k for k in store.keys() if k.startswith("cc1/i/")]
        index = json.loads(store.get(name))  # type: ignore[arg-type]
        for record in index["entries"].values():
            record["created"] = "yesterday"
        store.put(name, json.dumps(index).encode())
        explain(f, 1.0)  # must report, not raise ValueError
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("rv_idx", None)

"""Cache keys: every input changes the key, nothing else does, and keys are stable across
processes and hash seeds."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artifactbackend import FileLoggedBackend
from compilecache.dispatch import jit, reset
from compilecache.keys import CacheKey
from keyrecorder import KeyRecorder

HELPERS = """
SCALE = 3

def scale(x):
    return x * SCALE
"""

USER = """
import numpy as np

import helpers
from helpers import scale

OFFSET = 1.5

def f(x, n=2):
    # a comment
    return np.asarray(helpers.scale(x)) + scale(n) + OFFSET
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("helpers", "user"):
        sys.modules.pop(name, None)


def load(workdir: Path, user: str = USER, helpers: str = HELPERS) -> Any:
    (workdir / "helpers.py").write_text(textwrap.dedent(helpers))
    (workdir / "user.py").write_text(textwrap.dedent(user))
    for name in ("helpers", "user"):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module("user")


def key_of(fn: Any, *args: Any, backend: Any = None, **options: Any) -> CacheKey:
    reset()
    recorder = KeyRecorder(**options)
    backend = backend or FileLoggedBackend(os.devnull)
    jit(fn, backend=backend, hooks=recorder)(*args)
    (key,) = recorder.keys
    assert key is not None, "the call was not keyable"
    return key


def differing(a: CacheKey, b: CacheKey) -> set[str]:
    return {c.name for c in a.components if c.digest != b.component(c.name).digest}  # type: ignore[union-attr]


def test_the_same_code_and_call_give_the_same_key(workdir: Path) -> None:
    first = key_of(load(workdir).f, np.ones(3))
    again = key_of(load(workdir).f, np.ones(3))
    assert first.digest == again.digest


def test_moving_code_and_editing_comments_keep_the_key(workdir: Path) -> None:
    base = key_of(load(workdir).f, np.ones(3))
    moved = USER.replace("import helpers\n", "\n\n\n# new header\nimport helpers\n")
    moved = moved.replace("# a comment", "# another comment, longer")
    helpers_moved = "\n\n\n" + HELPERS
    assert key_of(load(workdir, moved, helpers_moved).f, np.ones(3)).digest == base.digest


CHANGES = {
    "function body": (USER.replace("+ OFFSET", "- OFFSET"), HELPERS, "function"),
    "default value": (USER.replace("n=2", "n=3"), HELPERS, "function"),
    "helper reached through a module attribute": (
        USER,
        HELPERS.replace("x * SCALE", "x * SCALE + 0"),
        "dependencies",
    ),
    "global constant of the function": (
        USER.replace("OFFSET = 1.5", "OFFSET = 2.5"),
        HELPERS,
        "dependencies",
    ),
    "global constant of a helper": (
        USER,
        HELPERS.replace("SCALE = 3", "SCALE = 4"),
        "dependencies",
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_source_change_changes_its_component(workdir: Path, change: str) -> None:
    user, helpers, component = CHANGES[change]
    base = key_of(load(workdir).f, np.ones(3))
    changed = key_of(load(workdir, user, helpers).f, np.ones(3))
    assert base.digest != changed.digest
    assert component in differing(base, changed)


@pytest.mark.parametrize(
    ("label", "args", "component"),
    [
        ("dtype", (np.ones(3, np.float32),), "inputs"),
        ("shape", (np.ones(4),), "inputs"),
        ("scalar", (np.ones(3), 5), "inputs"),
    ],
)
def test_input_changes_change_the_inputs_component(
    workdir: Path, label: str, args: tuple[Any, ...], component: str
) -> None:
    f = load(workdir).f
    base = key_of(f, np.ones(3))
    assert differing(base, key_of(f, *args)) == {component}


def test_closure_values_change_the_function_component() -> None:
    def make(k: float) -> Any:
        def g(x: Any) -> Any:
            return x * k

        return g

    assert differing(key_of(make(1.0), 2.0), key_of(make(2.0), 2.0)) == {"function"}


def test_salt_and_key_extra(workdir: Path) -> None:
    f = load(workdir).f
    base = key_of(f, np.ones(3))
    assert differing(base, key_of(f, np.ones(3), salt="run-2")) == {"salt"}
    assert differing(base, key_of(f, np.ones(3), key_extra={"rank": 1})) == {"salt"}


def test_backend_version_options_and_package_versions(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = load(workdir).f
    backend = FileLoggedBackend(os.devnull)
    base = key_of(f, np.ones(3), backend=backend)
    backend.version = "2"  # type: ignore[misc]
    assert differing(base, key_of(f, np.ones(3), backend=backend)) == {"backend"}
    backend.version = "1"  # type: ignore[misc]
    backend.options = {"opt": 3}  # type: ignore[attr-defined]
    assert differing(base, key_of(f, np.ones(3), backend=backend)) == {"backend"}
    del backend.options  # type: ignore[attr-defined]
    backend.packages = ("numpy",)  # type: ignore[attr-defined]
    with_numpy = key_of(f, np.ones(3), backend=backend)
    monkeypatch.setattr("compilecache.keys._key.package_version", lambda name: "0.0.1")
    assert differing(with_numpy, key_of(f, np.ones(3), backend=backend)) == {"environment"}


def test_components_are_named_and_explainable(workdir: Path) -> None:
    key = key_of(load(workdir).f, np.ones(3))
    assert [c.name for c in key.components] == [
        "function",
        "dependencies",
        "inputs",
        "backend",
        "environment",
        "salt",
    ]
    dependencies = key.component("dependencies").summary  # type: ignore[union-attr]
    assert "helpers:scale" in dependencies and dependencies["helpers:scale"]["kind"] == "function"
    assert any(name.startswith("package numpy") for name in dependencies)
    assert json.dumps(key.as_json())  # JSON-ready


KEY_SCRIPT = """
import sys
sys.path[:0] = [{tests!r}, {workdir!r}]
import numpy as np
from test_keys import key_of
import user
print(key_of(user.g, np.ones(3), frozenset({{"b", "a", "c"}})).digest)
"""


def test_keys_are_identical_across_processes_and_hash_seeds(workdir: Path) -> None:
    load(
        workdir,
        USER + "\nTABLE = {'x': 1, 'y': 2}\nNAMES = frozenset({'p', 'q', 'r'})\n"
        "def g(x, tags):\n    return x if 'p' in NAMES else TABLE\n",
    )
    digests = set()
    for seed in ("0", "1", "12345"):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                KEY_SCRIPT.format(tests=str(Path(__file__).parent), workdir=str(workdir)),
            ],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1, digests


def test_fast_bytecode_scan_agrees_with_dis() -> None:
    import dis
    import inspect
    import json as json_module
    import types

    from compilecache.keys._code import code_loads

    functions = [
        value
        for module in (json_module, inspect, dis)
        for value in vars(module).values()
        if isinstance(value, types.FunctionType)
    ]
    assert len(functions) > 50
    for fn in functions:
        expected: dict[str, None] = {}
        stack = [fn.__code__]
        while stack:
            code = stack.pop()
            for instruction in dis.get_instructions(code):
                if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                    expected.setdefault(str(instruction.argval).removeprefix("NULL + "))
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        assert set(code_loads(fn.__code__).globals) == set(expected), fn.__qualname__


def _weighted(x: Any, **weights: Any) -> Any:
    return x * weights["a"] + weights["b"]


def test_the_order_of_keyword_arguments_does_not_change_the_key(tmp_path: Path) -> None:
    """``f(x, a=3, b=4)`` and ``f(x, b=4, a=3)``: one entry in a process (the guards do not
    check the order), and one key, so another process calling the other order loads it."""
    from compilecache.artifacts import ArtifactHooks, explain
    from compilecache.stores import DiskStore

    log = tmp_path / "compiles.log"
    hooks = ArtifactHooks(DiskStore(tmp_path / "store"))
    f = jit(_weighted, backend=FileLoggedBackend(str(log)), hooks=hooks)
    x = np.ones(3)
    assert explain(f, x, a=3, b=4).key == explain(f, x, b=4, a=3).key
    assert explain(f, x, a=3, b=4).key != explain(f, x, a=4, b=3).key
    f(x, a=3, b=4)
    reset()  # as a fresh process: nothing compiled in memory
    f(x, b=4, a=3)
    assert log.read_text().count("compiled") == 1
    assert hooks.stats.loaded == 1

"""Regressions found in review of the artifact layer: each test states a guarantee of
docs/keys.md or docs/artifacts.md, and each failed before its fix."""

from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artifactbackend import FileLoggedBackend
from compilecache.artifacts import ArtifactHooks, BundleError, explain, export_bundle, import_bundle
from compilecache.dispatch import jit, reset
from compilecache.keys import CacheKey
from compilecache.stores import DiskStore, MemoryStore
from keyrecorder import KeyRecorder

# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("rv_"):
            sys.modules.pop(name, None)


def load(workdir: Path, main: str, files: dict[str, str]) -> Any:
    """Write ``files`` (relative path -> source) and import ``main`` afresh."""
    for relative, source in files.items():
        target = workdir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source))
    for name in list(sys.modules):
        if name.startswith("rv_"):
            sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module(main)


def key_or_none(fn: Any, *args: Any, **kwargs: Any) -> CacheKey | None:
    reset()
    recorder = KeyRecorder()
    jit(fn, backend=FileLoggedBackend(os.devnull), hooks=recorder)(*args, **kwargs)
    (key,) = recorder.keys
    return key


def assert_distinguished(before: CacheKey | None, after: CacheKey | None, what: str) -> None:
    """Two versions of the code that compile differently must not share a key (a bypass,
    None, is acceptable: then nothing is served from the store)."""
    if before is None or after is None:
        return
    assert before.digest != after.digest, f"{what}: same key, the stale artifact is served"


# == keys: stale artifacts ========================================================================
def test_two_closures_made_by_one_factory_are_both_fingerprinted(workdir: Path) -> None:
    # DependencyWalker.reached dedupes functions by "module:qualname": the second closure of
    # make_scaler (same qualname) is never fingerprinted, so its closure value is not keyed.
    source = """
    def make_scaler(k):
        def scale(x):
            return x * k
        return scale

    double = make_scaler(2)
    triple = make_scaler({k})

    def f(x):
        return double(x) + triple(x)
    """
    before = key_or_none(load(workdir, "rv_fac", {"rv_fac.py": source.format(k=3)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_fac", {"rv_fac.py": source.format(k=4)}).f, 1.0)
    assert_distinguished(before, after, "second closure of a factory changed")


def test_two_global_lambdas_are_both_fingerprinted(workdir: Path) -> None:
    # Same cause: both are "rv_lam:<lambda>".
    source = """
    first = lambda x: x * 2
    second = lambda x: x + {n}

    def f(x):
        return first(x) + second(x)
    """
    before = key_or_none(load(workdir, "rv_lam", {"rv_lam.py": source.format(n=1)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_lam", {"rv_lam.py": source.format(n=100)}).f, 1.0)
    assert_distinguished(before, after, "second global lambda changed")


def test_a_functools_partial_helper_is_fingerprinted(workdir: Path) -> None:
    # reached(): a partial is callable and its type's module is "functools" (stdlib), so it is
    # keyed as "the standard library": neither the wrapped user function nor the bound
    # arguments enter the key.
    source = """
    from functools import partial

    def mul(x, k):
        return x * k

    scale = partial(mul, k={k})

    def f(x):
        return scale(x)
    """
    before = key_or_none(load(workdir, "rv_par", {"rv_par.py": source.format(k=2)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_par", {"rv_par.py": source.format(k=3)}).f, 1.0)
    assert_distinguished(before, after, "partial's bound argument changed")


def test_a_bound_method_of_a_user_object_is_fingerprinted(workdir: Path) -> None:
    # reached(): types.MethodType is keyed by module_origin(method.__module__), i.e. the *file
    # path* of the user module: not its code, not the bound instance's state.
    source = """
    class Scaler:
        def __init__(self, k):
            self.k = k

        def apply(self, x):
            return x * self.k

    scale = Scaler({k}).apply

    def f(x):
        return scale(x)
    """
    before = key_or_none(load(workdir, "rv_bm", {"rv_bm.py": source.format(k=2)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_bm", {"rv_bm.py": source.format(k=3)}).f, 1.0)
    assert_distinguished(before, after, "the bound instance of a global method changed")


def test_a_parameterised_decorator_on_a_helper_is_fingerprinted(workdir: Path) -> None:
    # reached()/function_digest() inspect.unwrap() the helper: the wrapper's code and its
    # closure (the decorator argument) are dropped.
    source = """
    import functools

    def times(k):
        def decorate(fn):
            @functools.wraps(fn)
            def wrapper(x):
                return fn(x) * k
            return wrapper
        return decorate

    @times({k})
    def helper(x):
        return x + 1

    def f(x):
        return helper(x)
    """
    before = key_or_none(load(workdir, "rv_dec", {"rv_dec.py": source.format(k=2)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_dec", {"rv_dec.py": source.format(k=3)}).f, 1.0)
    assert_distinguished(before, after, "decorator argument of a helper changed")


def test_a_decorated_jitted_function_keys_its_wrapper(workdir: Path) -> None:
    # The jitted function itself is unwrapped in function_digest(); the wrapper's closure is
    # guarded as "current" cell values and left out of `inputs`: nothing keys it.
    source = """
    import functools

    def times(k):
        def decorate(fn):
            @functools.wraps(fn)
            def wrapper(x):
                return fn(x) * k
            return wrapper
        return decorate

    @times({k})
    def f(x):
        return x + 1
    """
    before = key_or_none(load(workdir, "rv_jdec", {"rv_jdec.py": source.format(k=2)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_jdec", {"rv_jdec.py": source.format(k=3)}).f, 1.0)
    assert_distinguished(before, after, "decorator argument of the jitted function changed")


def test_a_helper_reached_through_two_user_modules_is_fingerprinted(workdir: Path) -> None:
    # code_loads() records only (global, first attribute): `pkg.sub.scale` gives
    # ("rv_pkg", "sub"); sub is a user module, which reached() ignores. scale is never walked.
    files = {
        "rv_pkg/__init__.py": "from . import sub\n",
        "rv_pkg/sub.py": "def scale(x):\n    return x * {k}\n",
        "rv_two.py": "import rv_pkg\n\ndef f(x):\n    return rv_pkg.sub.scale(x)\n",
    }
    first = {**files, "rv_pkg/sub.py": files["rv_pkg/sub.py"].format(k=2)}
    second = {**files, "rv_pkg/sub.py": files["rv_pkg/sub.py"].format(k=3)}
    before = key_or_none(load(workdir, "rv_two", first).f, 1.0)
    after = key_or_none(load(workdir, "rv_two", second).f, 1.0)
    assert before is not None
    assert_distinguished(before, after, "helper in a user submodule (pkg.sub.fn) changed")


@pytest.mark.parametrize(
    ("label", "template", "old", "new"),
    [
        (
            "a tuple class constant",
            "class Cfg:\n    SIZES = {v}\n\ndef f(x):\n    return x * Cfg.SIZES[0]\n",
            "(2, 3)",
            "(5, 3)",
        ),
        (
            "a cached_property",
            "import functools\n\nclass Cfg:\n    @functools.cached_property\n"
            "    def k(self):\n        return {v}\n\ndef f(x):\n    return x * Cfg().k\n",
            "2",
            "3",
        ),
    ],
)
def test_class_members_are_fingerprinted(
    workdir: Path, label: str, template: str, old: str, new: str
) -> None:
    # DependencyWalker._class keeps only functions, properties and members whose type is in
    # _CONSTANTS (no tuple, list, dict, frozenset; no cached_property, nested class, ...):
    # everything else is silently left out of the class's digest.
    before = key_or_none(load(workdir, "rv_cls", {"rv_cls.py": template.format(v=old)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_cls", {"rv_cls.py": template.format(v=new)}).f, 1.0)
    assert_distinguished(before, after, f"{label} changed")


def test_a_class_in_a_closure_is_fingerprinted(workdir: Path) -> None:
    # encode() writes a type as its qualified name only; a class reached through a closure
    # (or a default) is never walked like a class reached through a global.
    source = """
    class Op:
        def run(self, x):
            return x * {k}

    def make():
        op = Op
        def f(x):
            return op().run(x)
        return f

    f = make()
    """
    before = key_or_none(load(workdir, "rv_ccls", {"rv_ccls.py": source.format(k=2)}).f, 1.0)
    after = key_or_none(load(workdir, "rv_ccls", {"rv_ccls.py": source.format(k=3)}).f, 1.0)
    assert_distinguished(before, after, "class held in a closure changed")


def test_a_user_function_passed_as_an_argument_is_fingerprinted(workdir: Path) -> None:
    # dump_guard() writes an IDENTITY guard on a function argument as {"type": "mod:name"}: the
    # `inputs` component holds its name only, and on load resolve_type() finds the *edited*
    # function by that name, so the guard passes and the old artifact runs.
    files = {
        "rv_ops.py": "def op(v):\n    return v * {k}\n",
        "rv_apply.py": "def apply(x, fn):\n    return fn(x)\n",
    }
    first = {**files, "rv_ops.py": files["rv_ops.py"].format(k=2)}
    second = {**files, "rv_ops.py": files["rv_ops.py"].format(k=3)}
    op = load(workdir, "rv_ops", first).op
    before = key_or_none(importlib.import_module("rv_apply").apply, 1.0, op)
    op = load(workdir, "rv_ops", second).op
    after = key_or_none(importlib.import_module("rv_apply").apply, 1.0, op)
    assert_distinguished(before, after, "the function passed as an argument changed")


def test_methods_of_a_dataclass_argument_are_fingerprinted(workdir: Path) -> None:
    # A dataclass argument is guarded by its type (by name) and its fields; the class's methods,
    # which the compiled code calls, are in no component.
    source = """
    import dataclasses

    @dataclasses.dataclass
    class Point:
        x: float

        def scaled(self):
            return self.x * {k}

    def f(p):
        return p.scaled()
    """
    first = load(workdir, "rv_dc", {"rv_dc.py": source.format(k=2)})
    before = key_or_none(first.f, first.Point(1.0))
    second = load(workdir, "rv_dc", {"rv_dc.py": source.format(k=3)})
    after = key_or_none(second.f, second.Point(1.0))
    assert_distinguished(before, after, "a method of the dataclass argument changed")


def test_a_torch_module_instance_in_a_global_is_not_keyed_as_package_code(workdir: Path) -> None:
    # reached(): any callable whose type's module is outside user code counts as "package torch
    # <version>": an nn.Module instance (its configuration, its weights) is keyed by the torch
    # version alone. docs/keys.md promises such object instances are bypasses.
    pytest.importorskip("torch")
    source = """
    import torch
    torch.manual_seed(0)
    layer = torch.nn.Linear(2, 2, bias={bias})

    def f(x):
        return layer(x)
    """
    import torch

    x = torch.ones(2)
    before = key_or_none(load(workdir, "rv_tm", {"rv_tm.py": source.format(bias=True)}).f, x)
    after = key_or_none(load(workdir, "rv_tm", {"rv_tm.py": source.format(bias=False)}).f, x)
    assert_distinguished(before, after, "the global nn.Module changed")


def test_a_conjugate_view_does_not_load_the_artifact_of_a_plain_tensor(workdir: Path) -> None:
    # In one process, x and x.conj() get different entries (TensorGuards checks dispatch keys,
    # the conj bit among them). The key has no such field, and a loaded entry's TensorGuards are
    # built from the *loading* call's tensors, so the entry compiled for x is served to x.conj().
    torch = pytest.importorskip("torch")
    module = load(workdir, "rv_conj", {"rv_conj.py": "def g(x):\n    return x + 1\n"})
    hooks = ArtifactHooks(MemoryStore())
    backend = FileLoggedBackend(os.devnull)
    x = torch.ones(3, dtype=torch.complex64)
    reset()
    assert jit(module.g, backend=backend, hooks=hooks)(x)[0] == "compiled"
    reset()
    result = jit(module.g, backend=backend, hooks=hooks)(x.conj())
    assert result[0] == "compiled", "the artifact compiled for a plain tensor ran on a conj view"


# == keys: over-conservative ======================================================================
def test_a_function_using_ellipsis_is_persisted() -> None:
    # `x[..., 0]` puts Ellipsis in co_consts; encode() has no case for it, so code_digest raises
    # Unfingerprintable and every such function (common in array code) is a bypass.
    def f(x: Any) -> Any:
        return x[..., 0]

    assert key_or_none(f, np.ones((2, 2))) is not None


# == guards on load ===============================================================================
def test_a_global_tuple_holding_none_loads_back(workdir: Path) -> None:
    # GuardBuilder emits IDENTITY guards at (global CONFIG, item 0) for the None inside the
    # tuple; dump_guard() writes every IDENTITY guard under a global as "current", and
    # load_guard() re-arms it with the *root* global (the whole tuple): `CONFIG[0] is CONFIG`
    # never holds, so the entry is never used: every process compiles (and overwrites) again.
    module = load(
        workdir,
        "rv_tup",
        {"rv_tup.py": "CONFIG = (None, (2, 3))\n\ndef f(x):\n    return x * CONFIG[1][0]\n"},
    )
    hooks = ArtifactHooks(MemoryStore())
    backend = FileLoggedBackend(os.devnull)
    reset()
    assert jit(module.f, backend=backend, hooks=hooks)(1.0)[0] == "compiled"
    assert hooks.stats.saved == 1
    reset()
    assert jit(module.f, backend=backend, hooks=hooks)(1.0)[0] == "loaded"


def test_a_stored_manifest_cannot_import_an_arbitrary_module(workdir: Path) -> None:
    # resolve_type()/_module() import any module a manifest names (before any guard is checked).
    # With write access to a shared store (an unsigned Redis, a shared directory), that is code
    # execution of any importable module's top level (a file in the working directory, a test
    # helper, `antigravity`...). Every type a legitimate guard names is the type of a value in
    # the current call, so its module is already imported: there is nothing to import.
    marker = workdir / "imported.marker"
    (workdir / "rv_planted.py").write_text(
        f"open({str(marker)!r}, 'w').write('top-level code ran')\nclass Thing:\n    pass\n"
    )
    module = load(workdir, "rv_victim", {"rv_victim.py": "def f(x):\n    return x + 1\n"})
    store = MemoryStore()
    hooks = ArtifactHooks(store)
    backend = FileLoggedBackend(os.devnull)
    reset()
    jit(module.f, backend=backend, hooks=hooks)(1.0)
    (name,) = [k for k in store.keys() if k.startswith("cc1/m/")]
    manifest = json.loads(store.get(name))  # type: ignore[arg-type]
    manifest["guards"].append(
        {
            "path": [["arg", "x"]],
            "kind": "identity",
            "depth": 1,
            "cost": 0,
            "expected": {"type": "rv_planted:Thing"},
        }
    )
    store.put(name, json.dumps(manifest).encode())
    reset()
    jit(module.f, backend=backend, hooks=ArtifactHooks(store))(1.0)
    assert "rv_planted" not in sys.modules and not marker.exists(), (
        "a stored manifest imported (ran) a module of its choice"
    )


# == compile once =================================================================================
class _PublishingLock:
    """A free lock whose acquisition happens just after another process published the entry
    (the window between ArtifactHooks.load's first read and its lock)."""

    def __init__(self, publish: Any) -> None:
        self.publish = publish

    def acquire(self, timeout: float) -> bool:
        self.publish()
        return True

    def release(self) -> None:
        pass

    def held(self) -> bool:
        return False


def test_an_entry_published_before_the_lock_is_taken_is_loaded(workdir: Path) -> None:
    # load() re-reads the store after taking the lock only if it waited: an entry published
    # between its first read and a lock taken at once is compiled a second time.
    module = load(workdir, "rv_race", {"rv_race.py": "def f(x):\n    return x + 1\n"})
    backend = FileLoggedBackend(os.devnull)
    other, shared = MemoryStore(), MemoryStore()
    reset()
    jit(module.f, backend=backend, hooks=ArtifactHooks(other))(1.0)  # "the other process"

    def publish() -> None:
        for name in other.keys():
            shared.put(name, other.get(name))  # type: ignore[arg-type]

    hooks = ArtifactHooks(shared, lock_factory=lambda name: _PublishingLock(publish))
    reset()
    result = jit(module.f, backend=backend, hooks=hooks)(1.0)
    assert result[0] == "loaded", "compiled again although the entry was there under the lock"


# == explain ======================================================================================
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


# == bundles ======================================================================================
def _bundle_with_manifest(path: Path, manifest_bytes: bytes, key: str) -> None:
    import hashlib

    artifact = b"artifact"
    header = json.dumps(
        {
            "format": 1,
            "signed": False,
            "entries": [
                {
                    "key": key,
                    "function": "m:f",
                    "manifest": len(manifest_bytes),
                    "artifact": len(artifact),
                    "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
                    "artifact_sha256": hashlib.sha256(artifact).hexdigest(),
                }
            ],
        }
    ).encode()
    path.write_bytes(
        b"\x89CCBUNDLE\n" + struct.pack(">Q", len(header)) + header + manifest_bytes + artifact
    )


def test_a_malformed_manifest_in_a_bundle_raises_bundle_error(tmp_path: Path) -> None:
    # Manifest.from_bytes does not check `components`; import_bundle then calls .get on it:
    # a malformed bundle raises AttributeError, not BundleError (a ValueError), as documented.
    import hashlib

    key = "ab" * 32
    artifact = b"artifact"
    manifest = {
        "format": 1,
        "key": key,
        "function": "m:f",
        "backend": "b",
        "components": [],
        "guards": [],
        "spec": [],
        "compile_seconds": 0.0,
        "artifact_size": len(artifact),
        "artifact_sha256": hashlib.sha256(artifact).hexdigest(),
        "created": 0.0,
    }
    bundle = tmp_path / "odd.ccb"
    _bundle_with_manifest(bundle, json.dumps(manifest).encode(), key)
    store = DiskStore(tmp_path / "target")
    with pytest.raises(BundleError):
        import_bundle(bundle, store=store)
    assert not [k for k in store.keys() if k.startswith("cc1/")]


def test_importing_a_bundle_does_not_copy_it_several_times(tmp_path: Path) -> None:
    # import_bundle reads the whole file (up to max_bytes = 8 GiB), then copies the body
    # (data[start:end]) and, when signed, everything again for the HMAC (data[:end]), then
    # every artifact: about 3x the bundle in memory at once.
    from clihelpers import fake_entry

    source = DiskStore(tmp_path / "source")
    artifact = os.urandom(24 << 20)
    source.put_many(fake_entry(0, artifact)[1])  # built for this environment: imported
    bundle = tmp_path / "big.ccb"
    export_bundle(bundle, store=source, secret=b"s" * 16)
    del artifact
    size = bundle.stat().st_size
    target = MemoryStore()
    tracemalloc.start()
    try:
        import_bundle(bundle, store=target, secret=b"s" * 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The entry itself must end up in the target store (1x); a streaming import needs no more
    # than that plus bounded buffers.
    assert peak < 1.6 * size, f"peak {peak / size:.1f}x the bundle size"


def test_concurrent_index_updates_lose_no_record(tmp_path: Path) -> None:
    """The per-function index behind explain was read, changed and written without a lock:
    two compiles of one function finishing together lost one of the two records."""
    import threading

    from compilecache.artifacts._manifest import Manifest
    from compilecache.artifacts._persistence import ArtifactHooks
    from compilecache.keys import Component

    hooks = ArtifactHooks(DiskStore(tmp_path / "cache"))

    def f(x: Any) -> Any:
        return x

    barrier = threading.Barrier(8)

    def record(number: int) -> None:
        key = CacheKey((Component("inputs", f"{number:064x}", {}),))
        manifest = Manifest.build(
            key,
            function="m:f",
            backend="b",
            guards=[],
            spec=[],
            compile_seconds=0.0,
            artifact=b"a",
        )
        barrier.wait()
        hooks.index.record(f, key, manifest)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    from compilecache.artifacts._function_index import read_index

    assert len(read_index(hooks.store, f)["entries"]) == 8

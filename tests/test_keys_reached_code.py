"""Cache keys over the code a jit function reaches: helpers, closures, decorators, classes and
the functions and objects it is given are fingerprinted, so an edit of any of them is a new key
(or the call is a bypass) and never serves a stale artifact; and what can be keyed is.

Each test states a guarantee of docs/keys.md, and each failed before its fix.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artifactbackend import FileLoggedBackend
from compilecache.artifacts import ArtifactHooks
from compilecache.dispatch import jit, reset
from compilecache.keys import CacheKey
from compilecache.stores import MemoryStore
from keyrecorder import KeyRecorder
from userpkgs import load

# -- helpers -----------------------------------------------------------------------------------


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

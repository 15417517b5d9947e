"""jit: wrapping, backends, per-code-object state, entries, lookup order, hooks."""

from __future__ import annotations

import gc
import inspect
import logging
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

import compilecache
from compilecache import CacheUsageError
from compilecache.dispatch import (
    BackendCompileError,
    CacheEntry,
    CompileRequest,
    LoadedEntry,
    Specialization,
    cache_entries,
    dispatch_stats,
    eager,
    innermost,
    jit,
    lookup_backend,
    register_backend,
    reset,
    set_guard_error_hook,
)


class Recorder:
    """A backend that counts compiles and returns a callable that marks its results."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.specs: list[Specialization] = []

    def __call__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], spec: Any
    ) -> Callable[..., Any]:
        self.specs.append(spec)
        number = len(self.specs)

        def compiled(*a: Any, **k: Any) -> Any:
            return ("compiled", number, fn(*a, **k))

        return compiled


def test_wrapper_keeps_name_doc_and_signature() -> None:
    def scaled(x: int, y: int = 2, *, z: int = 3) -> int:
        """Doc of scaled."""
        return x * y + z

    wrapped = jit(scaled)
    assert wrapped.__name__ == "scaled" and wrapped.__doc__ == "Doc of scaled."
    assert inspect.signature(wrapped) == inspect.signature(scaled)
    assert wrapped(1) == 5 and wrapped(1, 3, z=0) == 3


def test_decorator_forms_and_re_jit() -> None:
    backend = Recorder()

    @jit(backend=backend)
    def add(x: int, y: int) -> int:
        return x + y

    assert add(1, 2) == ("compiled", 1, 3)
    again = jit(add, backend="eager")  # re-jit wraps the plain function, not the wrapper
    assert again(1, 2) == 3


def test_methods_bind_self() -> None:
    class Box:
        def __init__(self, k: int) -> None:
            self.k = k

        @jit
        def plus(self, x: int) -> int:
            return self.k + x

    first, second = Box(1), Box(10)
    assert first.plus(1) == 2 and second.plus(1) == 11 and first.plus(1) == 2
    assert len(cache_entries(Box.plus)) == 2  # the instance is guarded by identity


def test_backend_registry_and_errors() -> None:
    name = f"test-registry-{time.monotonic_ns()}"
    backend = Recorder(name)
    register_backend(name, backend)
    assert lookup_backend(name) is backend
    with pytest.raises(CacheUsageError, match="already registered"):
        register_backend(name, Recorder())
    with pytest.raises(CacheUsageError, match=r"known backends: .*eager"):
        lookup_backend("no-such-backend")
    with pytest.raises(CacheUsageError):
        lookup_backend(42)  # type: ignore[arg-type]
    assert lookup_backend("eager") is eager


def test_backend_from_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cc_plugin_backend.py").write_text(
        textwrap.dedent(
            """
            def plugin(fn, args, kwargs, spec):
                def compiled(*a, **k):
                    return ("plugin", fn(*a, **k))
                return compiled
            """
        )
    )
    info = tmp_path / "cc_plugin_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cc-plugin-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[compilecache.backends]\nplugged = cc_plugin_backend:plugin\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    @jit(backend="plugged")
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == ("plugin", 8)


def test_innermost_backend_is_the_entry_identity() -> None:
    inner = Recorder("inner")

    class Debugging:
        name = "debugging"

        def __init__(self, wrapped: Any) -> None:
            self.inner = wrapped

        def __call__(self, *request: Any) -> Any:
            return self.inner(*request)

    wrapper = Debugging(inner)
    assert innermost(wrapper) is inner

    @jit(backend=wrapper)
    def f(x: int) -> int:
        return x

    f(1)
    (entry,) = cache_entries(f)
    assert entry.backend is inner and entry.backend_name == "inner"


def test_backend_failure_is_a_clear_error() -> None:
    def broken(fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        raise ValueError("cannot compile this")

    @jit(backend=broken)
    def f(x: int) -> int:
        return x

    with pytest.raises(BackendCompileError, match="cannot compile this") as info:
        f(1)
    assert isinstance(info.value.__cause__, ValueError)

    @jit(backend=lambda *request: 42)
    def g(x: int) -> int:
        return x

    with pytest.raises(BackendCompileError, match="not callable"):
        g(1)


@pytest.mark.parametrize(
    "options",
    [{"recompile_limit": 0}, {"on_recompile_limit": "ignore"}, {"dynamic": "yes"}],
)
def test_bad_options_are_usage_errors(options: dict[str, Any]) -> None:
    with pytest.raises(CacheUsageError):
        jit(lambda x: x, **options)


def test_not_a_python_function() -> None:
    with pytest.raises(CacheUsageError, match="Python function"):
        jit(len)


def test_closures_of_one_def_share_state_and_state_dies_with_them() -> None:
    backend = Recorder()

    def make(k: int) -> Callable[[int], int]:
        def add(x: int) -> int:
            return x + k

        return jit(add, backend=backend)

    one, two = make(1), make(2)
    assert one(1)[2] == 2 and two(1)[2] == 3
    assert cache_entries(one) == cache_entries(two)
    assert len(cache_entries(one)) == 2  # the closure value is guarded
    assert cache_entries(one)[0].guards[-1].path[0][0] in ("cell", "arg", "global")
    assert one(1)[2] == 2 and two(1)[2] == 3 and len(backend.specs) == 2  # hits: no compile
    state = weakref.ref(one.__compilecache_dispatcher__.state)  # type: ignore[attr-defined]
    del one, two
    gc.collect()
    assert state() is None, "the dispatch state outlived every function using it"


def test_compile_ids_annotations_and_hits() -> None:
    @jit
    def f(x: Any) -> Any:
        return x

    f(1)
    f("a")
    f("a")
    entries = cache_entries(f)
    index = entries[0].compile_id.split("/")[0]
    assert [e.compile_id for e in entries] == [f"{index}/1", f"{index}/0"]
    assert entries[0].hits == 1 and entries[1].hits == 0
    assert "x = 'a'" in entries[0].annotation
    assert dispatch_stats(f)["compiles"] == 2 and dispatch_stats(f)["hits"] == 1


def test_invalidate_leaves_an_entry_inert_and_the_function_recompiles() -> None:
    backend = Recorder()

    @jit(backend=backend)
    def f(x: int) -> int:
        return x + 1

    f(1)
    (entry,) = cache_entries(f)
    entry.invalidate()
    assert entry.check(1) is False and entry.valid is False
    # The compiled callable stays: a thread whose guard passed just before still runs it.
    assert entry.compiled(1) == ("compiled", 1, 2)
    assert f(1) == ("compiled", 2, 2)  # the inert entry is never selected: a recompile
    reset()  # also drops invalidated entries from the state
    assert cache_entries(f) == []
    assert f(1) == ("compiled", 3, 2)


def test_reset_invalidates_every_function() -> None:
    @jit
    def a(x: int) -> int:
        return x

    @jit
    def b(x: int) -> int:
        return x

    a(1)
    b(1)
    held = cache_entries(a)[0]
    compilecache.dispatch.reset()
    assert cache_entries(a) == cache_entries(b) == []
    assert held.valid is False
    assert a(1) == 1 and len(cache_entries(a)) == 1


def test_most_recently_used_first_and_the_switch() -> None:
    @jit
    def f(x: Any) -> Any:
        return x

    f(1)
    f("s")
    assert [e.spec.leaves[0].value for e in cache_entries(f)] == ["s", 1]
    f(1)
    assert [e.spec.leaves[0].value for e in cache_entries(f)] == [1, "s"]

    @jit(reorder=False)
    def g(x: Any) -> Any:
        return x

    g(1)
    g("s")
    g(1)
    g(1)
    assert [e.spec.leaves[0].value for e in cache_entries(g)] == ["s", 1]


def test_a_raising_guard_is_reported_and_counts_as_failed() -> None:
    class Exploding:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

        __hash__ = object.__hash__

    exploding = Exploding()
    reports: list[tuple[Any, CacheEntry, BaseException]] = []
    previous = set_guard_error_hook(lambda fn, entry, error: reports.append((fn, entry, error)))
    try:

        @jit
        def g(x: Any) -> Any:
            return x

        g([1.5])  # a flat list of constants: guarded by one == on the whole list
        assert g([exploding]) == [exploding]  # that == raised: a miss, not a crash
    finally:
        set_guard_error_hook(previous)
    assert reports and isinstance(reports[0][2], RuntimeError)
    assert reports[0][0].__name__ == "g"
    assert dispatch_stats(g)["guard_errors"] >= 1
    assert len(cache_entries(g)) == 2


def test_the_default_guard_error_hook_logs(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

        __hash__ = object.__hash__

    @jit
    def f(x: Any) -> Any:
        return x

    f([1.0])
    with caplog.at_level(logging.WARNING, "compilecache"):
        f([Exploding()])
    assert "raised" in caplog.text


def test_several_threads_missing_at_once_compile_once() -> None:
    compiles: list[int] = []
    gate = threading.Event()

    def slow_backend(fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        compiles.append(1)
        time.sleep(0.2)
        return fn

    @jit(backend=slow_backend)
    def f(x: int, y: int) -> int:
        return x * y

    results: list[int] = []

    def call() -> None:
        gate.wait()
        results.append(f(6, 7))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert results == [42] * 8
    assert len(compiles) == 1


def test_hits_from_many_threads_are_correct() -> None:
    @jit
    def f(x: Any) -> Any:
        return x

    values = [1, "a", 2.5, (1, 2), None]
    errors: list[str] = []

    def work(seed: int) -> None:
        for i in range(2000):
            value = values[(seed + i) % len(values)]
            if f(value) != value:
                errors.append(repr(value))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache_entries(f)) == 5


# -- threads: invalidation between the guard and the call -------------------------------------
def _in_other_thread(action: Callable[[], None]) -> None:
    thread = threading.Thread(target=action)
    thread.start()
    thread.join()


class ResetWhileSaving:
    """Hooks whose save lets another thread call compilecache.reset() (a slow store write)."""

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        return ()

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        _in_other_thread(reset)

    def finish(self, request: CompileRequest) -> None:
        return None


def test_reset_in_another_thread_does_not_break_the_compiling_call() -> None:
    @jit(hooks=ResetWhileSaving())
    def f(x: int) -> int:
        return x + 1

    # _compile returns the entry, then _run calls entry.compiled, which invalidate() replaced
    # with a function that raises CacheError.
    assert f(1) == 2


class ResetOnHash:
    armed = False

    def __hash__(self) -> int:
        if ResetOnHash.armed:
            ResetOnHash.armed = False
            _in_other_thread(reset)  # another thread resets while this one runs the guard
        return 1

    def __eq__(self, other: object) -> bool:
        return self is other


def test_reset_in_another_thread_during_a_hit_does_not_break_the_call() -> None:
    @jit
    def f(d: dict[Any, int]) -> int:
        return sum(d.values())

    key = ResetOnHash()
    d = {key: 1}
    assert f(d) == 1
    ResetOnHash.armed = True  # after building the dict: the next hash is the guard's d[key]
    # The hot path reads entry.check, runs it (the guard hashes the key), then reads
    # entry.compiled, which is now the raising placeholder: "safe on an entry another thread is
    # running" does not hold for a thread between its guard and its call.
    assert f(d) == 1


class StoreLikeHooks:
    """Hooks that keep saved entries in a list and hand them back as loaded entries."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, ...]] = []
        self.loads = 0

    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        self.loads += 1
        for guards, compiled, spec in self.saved:
            yield LoadedEntry(guards, compiled, spec, "from the hooks")

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        # What a store keeps: the entry's parts, not the live entry (which reset invalidates).
        self.saved.append((entry.guards, entry.compiled, entry.spec))

    def finish(self, request: CompileRequest) -> None:
        return None


def test_hooks_save_after_compile_and_load_precompile_entries() -> None:
    hooks = StoreLikeHooks()
    backend = Recorder()

    def source() -> Callable[[Any], Any]:
        def f(x: Any) -> Any:
            return x

        return f

    first = jit(source(), backend=backend, hooks=hooks)
    assert first(3) == ("compiled", 1, 3)
    assert len(hooks.saved) == 1
    reset()  # a new process, as far as the dispatch layer can tell
    second = jit(source(), backend=backend, hooks=hooks)
    assert second(3) == ("compiled", 1, 3)  # the loaded callable, not a new compile
    assert len(backend.specs) == 1
    (entry,) = cache_entries(second)
    assert entry.precompiled and entry.annotation == "from the hooks"
    assert second("other")[1] == 2  # a loaded entry whose guards reject the call is not used
    assert [e.precompiled for e in cache_entries(second)] == [True, False]
    assert second("other")[1] == 2 and len(cache_entries(second)) == 2


def test_a_broken_save_hook_does_not_break_the_call(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(StoreLikeHooks):
        def save(self, request: CompileRequest, entry: CacheEntry) -> None:
            raise OSError("disk full")

    @jit(hooks=Broken())
    def f(x: int) -> int:
        return x * 2

    with caplog.at_level(logging.ERROR, "compilecache"):
        assert f(2) == 4
    assert "saving compiled entry" in caplog.text


class FailingLoad:
    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        raise OSError("store unreachable")

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        return None

    def finish(self, request: CompileRequest) -> None:
        return None


def test_failing_hooks_load_does_not_break_the_call() -> None:
    @jit(hooks=FailingLoad())
    def f(x: int) -> int:
        return x + 1

    # A failing save is logged and never breaks the call; a failing load propagates out of
    # every miss.
    assert f(1) == 2


def test_a_call_that_does_not_fit_raises_the_functions_own_type_error() -> None:
    @jit
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="positional argument"):
        f(1, 2)  # type: ignore[call-arg]


def test_import_compilecache_does_not_import_torch_or_numpy() -> None:
    import subprocess

    code = (
        "import sys, compilecache, compilecache.dispatch\n"
        "print(sorted(m for m in ('torch', 'numpy', 'redis') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hooks_without_finish_are_refused_with_what_they_lack() -> None:
    class Incomplete:
        def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
            return ()

        def save(self, request: CompileRequest, entry: CacheEntry) -> None:
            return None

    with pytest.raises(CacheUsageError, match="lack finish"):
        jit(lambda x: x, hooks=Incomplete())

"""Persistent artifacts: warm starts across processes, compile once, take-over, corruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import compilecache
from artifactbackend import FileLoggedBackend, compiles
from compilecache.artifacts import ArtifactHooks
from compilecache.dispatch import cache_entries, jit, reset
from compilecache.keys import CacheKey
from compilecache.stores import DiskStore, MemoryStore
from userpkgs import load

TESTS = Path(__file__).parent

MODULE = """
import numpy as np

SCALE = 3

def helper(x):
    return x * SCALE

def f(x, n):
    return helper(x) + n
"""

SCRIPT = """
import sys, json
sys.path[:0] = [{tests!r}, {workdir!r}]
import numpy as np
import compilecache
from artifactbackend import FileLoggedBackend
import userpkg
f = compilecache.jit(userpkg.f, backend=FileLoggedBackend({log!r}, delay={delay}))
result = f(np.arange(4.0), 2)
print(json.dumps([result[0], result[1].tolist()]))
"""


def write_module(workdir: Path, source: str = MODULE) -> None:
    (workdir / "userpkg.py").write_text(textwrap.dedent(source))


def run_script(
    workdir: Path, cache: Path, log: Path, delay: float = 0.0, **settings: str
) -> subprocess.Popen:
    script = SCRIPT.format(tests=str(TESTS), workdir=str(workdir), log=str(log), delay=delay)
    env = {**os.environ, "COMPILECACHE_DIR": str(cache), "PYTHONHASHSEED": "random", **settings}
    env.pop("COMPILECACHE_REMOTE", None)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out.strip()


def test_warm_start_in_a_fresh_process_skips_the_backend(tmp_path: Path) -> None:
    write_module(tmp_path)
    cache, log = tmp_path / "cache", tmp_path / "compiles.log"
    first = finish(run_script(tmp_path, cache, log))
    assert first == '["compiled", [2.0, 5.0, 8.0, 11.0]]'
    assert compiles(log) == 1
    second = finish(run_script(tmp_path, cache, log))
    assert second == '["loaded", [2.0, 5.0, 8.0, 11.0]]'
    assert compiles(log) == 1, "the second process compiled instead of loading"


def test_editing_a_helper_in_another_module_recompiles(tmp_path: Path) -> None:
    write_module(tmp_path)
    cache, log = tmp_path / "cache", tmp_path / "compiles.log"
    finish(run_script(tmp_path, cache, log))
    write_module(tmp_path, MODULE.replace("return x * SCALE", "return x * SCALE * 2"))
    assert finish(run_script(tmp_path, cache, log)) == '["compiled", [2.0, 8.0, 14.0, 20.0]]'
    assert compiles(log) == 2
    write_module(tmp_path, "\n\n# a comment moves everything down\n" + MODULE)
    assert finish(run_script(tmp_path, cache, log)).startswith('["loaded"')
    assert compiles(log) == 2, "moving the code by a few lines must not change the key"


@pytest.mark.slow
def test_four_cold_processes_compile_once(tmp_path: Path) -> None:
    write_module(tmp_path)
    cache, log = tmp_path / "cache", tmp_path / "compiles.log"
    processes = [run_script(tmp_path, cache, log, delay=1.5) for _ in range(4)]
    outputs = [finish(process) for process in processes]
    assert compiles(log) == 1, (log.read_text(), outputs)
    assert sorted(o.split(",")[0] for o in outputs) == ['["compiled"'] + ['["loaded"'] * 3


@pytest.mark.slow
def test_a_killed_compiler_does_not_block_the_others(tmp_path: Path) -> None:
    write_module(tmp_path)
    cache, log = tmp_path / "cache", tmp_path / "compiles.log"
    stuck = run_script(tmp_path, cache, log, delay=60)
    deadline = time.monotonic() + 60
    while compiles(log) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((cache / "locks").glob("*.lock")), "the compiling process holds no lock"
    stuck.send_signal(signal.SIGKILL)
    stuck.wait(10)
    started = time.monotonic()
    assert finish(run_script(tmp_path, cache, log)).startswith('["compiled"')
    assert time.monotonic() - started < 30, "the dead owner's lock was waited out"
    assert compiles(log) == 2


def test_a_corrupt_artifact_is_recompiled_and_replaced(tmp_path: Path) -> None:
    write_module(tmp_path)
    cache, log = tmp_path / "cache", tmp_path / "compiles.log"
    finish(run_script(tmp_path, cache, log))
    store = DiskStore(cache)
    (artifact_key,) = [k for k in store.keys() if k.startswith("cc1/a/")]
    store.put(artifact_key, b"not the artifact that was compiled")
    assert finish(run_script(tmp_path, cache, log)).startswith('["compiled"')
    assert compiles(log) == 2
    assert finish(run_script(tmp_path, cache, log)).startswith('["loaded"')
    assert compiles(log) == 2


def in_process_hooks(tmp_path: Path) -> ArtifactHooks:
    return ArtifactHooks(DiskStore(tmp_path / "cache"), lock_timeout=5)


def test_unkeyable_calls_are_counted_bypasses_that_still_run(tmp_path: Path) -> None:
    hooks = in_process_hooks(tmp_path)
    backend = FileLoggedBackend(str(tmp_path / "log"))

    class Opaque:  # its state holds a lock, which has no stable encoding
        factor = 2

        def __init__(self) -> None:
            self.lock = threading.Lock()

    opaque = Opaque()

    def scaled(x: int) -> int:
        return x * opaque.factor

    f = jit(scaled, backend=backend, hooks=hooks)
    assert f(3) == ("compiled", 6)
    assert hooks.stats.saved == 0
    assert any("closure value opaque" in reason for reason in hooks.stats.bypasses)


class Settings:
    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.names = ("a", "b")


SETTINGS = Settings(2)


def scaled_by_settings(x: int) -> int:
    return x * SETTINGS.factor


def test_objects_of_plain_data_are_keyed_by_class_and_state(tmp_path: Path) -> None:
    global SETTINGS
    hooks = in_process_hooks(tmp_path)
    backend = FileLoggedBackend(str(tmp_path / "log"))
    reset()
    assert jit(scaled_by_settings, backend=backend, hooks=hooks)(3) == ("compiled", 6)
    assert hooks.stats.saved == 1 and not hooks.stats.bypasses
    reset()
    SETTINGS = Settings(2)  # another object, the same state
    result = jit(scaled_by_settings, backend=backend, hooks=hooks)(3)
    assert result[0] == "loaded", "the same state must give the same key"
    reset()
    SETTINGS = Settings(5)
    result = jit(scaled_by_settings, backend=backend, hooks=hooks)(3)
    assert result[0] == "compiled", "another state must give another key"
    SETTINGS = Settings(2)


def test_in_process_round_trip_and_salt(tmp_path: Path) -> None:
    hooks = in_process_hooks(tmp_path)
    backend = FileLoggedBackend(str(tmp_path / "log"))
    sys.path.insert(0, str(tmp_path))
    write_module(tmp_path)
    try:
        import userpkg  # type: ignore[import-not-found]

        f = jit(userpkg.f, backend=backend, hooks=hooks)
        assert f(1.5, 1)[0] == "compiled" and hooks.stats.saved == 1
        reset()
        assert f(1.5, 1)[0] == "loaded" and hooks.stats.loaded == 1
        assert cache_entries(f)[0].precompiled
        salted = ArtifactHooks(DiskStore(tmp_path / "cache"), salt="other-run")
        reset()
        g = jit(userpkg.f, backend=backend, hooks=salted)
        assert g(1.5, 1)[0] == "compiled"  # another salt, another key
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("userpkg", None)


def test_default_hooks_follow_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPILECACHE_DIR", str(tmp_path / "configured"))
    compilecache.default_hooks.reset()
    try:
        backend = FileLoggedBackend(str(tmp_path / "log"))
        sys.path.insert(0, str(tmp_path))
        write_module(tmp_path)
        import userpkg

        f = jit(userpkg.f, backend=backend)
        f(1.0, 2)
        assert any(k.startswith("cc1/m/") for k in DiskStore(tmp_path / "configured").keys())
    finally:
        compilecache.default_hooks.reset()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("userpkg", None)


def test_admission_per_tier(tmp_path: Path) -> None:
    from compilecache.artifacts import Admission
    from compilecache.stores import MemoryStore, TieredStore

    fast, slow = MemoryStore(name="fast"), MemoryStore(name="slow")
    hooks = ArtifactHooks(
        TieredStore([fast, slow]),
        admission={"slow": Admission(min_compile_seconds=1.0), "fast": Admission(max_bytes=10_000)},
    )
    sys.path.insert(0, str(tmp_path))
    write_module(tmp_path)
    try:
        import userpkg

        f = jit(userpkg.f, backend=FileLoggedBackend(str(tmp_path / "log")), hooks=hooks)
        f(1.0, 1)
        assert any(k.startswith("cc1/m/") for k in fast.keys())
        assert not any(k.startswith(("cc1/m/", "cc1/a/")) for k in slow.keys()), "reached slow"
        assert hooks.stats.admission_skips == {"slow": 1}
        small = ArtifactHooks(MemoryStore(), admission=Admission(max_bytes=5))
        reset()
        jit(userpkg.f, backend=FileLoggedBackend(str(tmp_path / "log")), hooks=small)(1.0, 1)
        assert small.stats.saved == 0 and small.stats.admission_skips["memory"] == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("userpkg", None)


def test_a_damaged_lock_file_reads_as_stale(tmp_path: Path) -> None:
    from compilecache._locks import FileLock

    lock = FileLock(tmp_path, "k", ttl=60)
    lock.path.write_text('{"token": "x", "pid": "not a pid", "host": "h", "expires": "soon"}')
    assert not lock.held()
    assert lock.acquire(timeout=1)
    lock.release()
    assert not lock.path.exists()


@pytest.mark.slow
def test_a_compile_longer_than_the_lock_ttl_still_happens_once(tmp_path: Path) -> None:
    """Leases were not renewed: a compile that outlived the lock's TTL let the waiters take
    the lock and compile too. The holder now renews it every third of the TTL."""
    write_module(tmp_path)
    cache, log = tmp_path / "cache", tmp_path / "compiles.log"
    settings = {"COMPILECACHE_LOCK_TTL": "0.6", "COMPILECACHE_LOCK_TIMEOUT": "60"}
    processes = [run_script(tmp_path, cache, log, delay=2.5, **settings) for _ in range(3)]
    outputs = [finish(process) for process in processes]
    assert compiles(log) == 1, (log.read_text(), outputs)


def test_a_lease_keeper_holds_a_lock_past_its_ttl_until_stopped(tmp_path: Path) -> None:
    from compilecache._locks import FileLock, LeaseKeeper

    holder, other = FileLock(tmp_path, "k", ttl=0.3), FileLock(tmp_path, "k", ttl=0.3)
    assert holder.acquire(timeout=1)
    keeper = LeaseKeeper(holder)
    time.sleep(1.0)  # three TTLs
    assert holder.held() and not other.acquire(timeout=0)
    keeper.stop()
    assert other.acquire(timeout=2)  # expired once no longer renewed
    assert not holder.renew()  # no longer the owner: a late renewal changes nothing
    other.release()


def test_lock_owners_are_judged_by_machine_not_by_host_name(tmp_path: Path) -> None:
    """The dead-owner check once compared host names: a container sharing the host name
    but not the pid namespace saw another container's live holder as a dead pid of its own
    and broke the lock. Only an owner of this very machine (boot and pid namespace) is judged
    by its pid; any other waits for its expiry."""
    import json as json_module

    from compilecache._locks import FileLock, _hostname, machine_identity

    dead_pid = 2**22 + 12345  # above Linux's pid_max default: no such process here
    lock = FileLock(tmp_path, "k", ttl=60)
    other_container = {"token": "t", "pid": dead_pid, "host": _hostname(),
                       "machine": _hostname() + "|another boot|pid:[1]",
                       "expires": time.time() + 60}  # fmt: skip
    lock.path.write_text(json_module.dumps(other_container))
    assert lock.held() and not lock.acquire(timeout=0)
    this_machine = {**other_container, "machine": machine_identity()}
    lock.path.write_text(json_module.dumps(this_machine))
    assert not lock.held() and lock.acquire(timeout=0)  # its owner is gone: broken at once
    lock.release()


# -- modules written per test (rv_*, see userpkgs), imported afresh ---------------------------


# -- compile once: an entry published meanwhile ---------------------------------------------------
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


# -- guards on load, and what a stored manifest may not do --------------------------------------
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


# -- the per-function index -------------------------------------------------------------------
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


class _FailsOnSecondManifestRead(MemoryStore):
    """A strict store whose manifest read fails once the lock is taken (a transient error)."""

    def __init__(self) -> None:
        super().__init__()
        self.manifest_reads = 0

    def get(self, key: str) -> bytes | None:
        if key.startswith("cc1/m/"):
            self.manifest_reads += 1
            if self.manifest_reads == 2:
                from compilecache import BackendError

                raise BackendError("the store hiccupped", key=key)
        return super().get(key)


def _scaled(x: float) -> float:
    return x * 3


def test_a_read_failing_after_the_lock_still_releases_the_lock(tmp_path: Path) -> None:
    """The lock taken before the read that failed is released at finish: no lease thread
    keeps it alive, and another process could take it at once."""
    from compilecache._locks import FileLock

    hooks = ArtifactHooks(
        _FailsOnSecondManifestRead(),
        lock_factory=lambda name: FileLock(tmp_path / "locks", name, ttl=0.3),
        record=False,
    )
    f = jit(_scaled, backend=FileLoggedBackend(str(tmp_path / "log")), hooks=hooks)
    assert f(2.0) == ("compiled", 6.0)
    assert hooks.stats.saved == 1
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name == "compilecache-lease" and t.is_alive()]
    assert not list((tmp_path / "locks").glob("*.lock")), "the compile lock is still held"


class _ReconfiguringBackend(FileLoggedBackend):
    """Turns caching off (and reconfigures) while it compiles: between load and save."""

    def __call__(self, fn: Any, args: Any, kwargs: Any, spec: Any) -> Any:
        os.environ["COMPILECACHE_DISABLE"] = "1"
        compilecache.reconfigure()
        return super().__call__(fn, args, kwargs, spec)


def test_save_and_finish_go_to_the_hooks_that_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconfiguration between a miss's load and its save: the entry still goes to the
    store it was keyed for, and the compile lock taken there is released."""
    monkeypatch.setenv("COMPILECACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COMPILECACHE_DISABLE", raising=False)
    try:
        f = jit(_scaled, backend=_ReconfiguringBackend(str(tmp_path / "log")))
        assert f(2.0) == ("compiled", 6.0)
    finally:
        os.environ.pop("COMPILECACHE_DISABLE", None)
    store = DiskStore(tmp_path / "cache")
    assert [k for k in store.keys() if k.startswith("cc1/m/")], "the entry was not saved"
    assert not list((tmp_path / "cache" / "locks").glob("*.lock")), "the lock was left held"


def test_a_read_only_store_counts_nothing_saved(tmp_path: Path) -> None:
    from compilecache.stores import ReadOnly

    hooks = ArtifactHooks(ReadOnly(MemoryStore()), record=False)
    f = jit(_scaled, backend=FileLoggedBackend(str(tmp_path / "log")), hooks=hooks)
    assert f(2.0) == ("compiled", 6.0)
    assert hooks.stats.saved == 0

"""Persisted counters: exact under concurrent processes, deltas never double counted, fed by
the artifact hooks across processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clihelpers import data, run_isolated
from compilecache.telemetry import CountersDB, Delta, Recorder
from compilecache.telemetry._counters_db import BUCKET_SECONDS

TESTS = Path(__file__).parent

SECRET = "s" * 32

ADDER = """
import sys
sys.path.insert(0, {src!r})
from compilecache.telemetry import CountersDB, Delta
db = CountersDB({directory!r})
for i in range({rounds}):
    delta = Delta()
    delta.add("tier:disk", "hits", 1)
    delta.add("tier:disk", "bytes_read", 3)
    delta.loads["k{worker}"] = ("m:f", 1, 1.0)
    db.add(delta)
"""


@pytest.mark.slow
def test_concurrent_processes_lose_no_counts(tmp_path: Path) -> None:
    src = str(Path(__file__).parents[1] / "src")
    workers, rounds = 4, 150
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                ADDER.format(src=src, directory=str(tmp_path), rounds=rounds, worker=w),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    db = CountersDB(tmp_path)
    assert db.totals()["tier:disk"] == {
        "hits": workers * rounds,
        "bytes_read": 3 * workers * rounds,
    }
    assert {key: loads for key, (loads, _) in db.entry_loads().items()} == {
        f"k{w}": rounds for w in range(workers)
    }
    series = db.series()
    assert sum(value for _, scope, name, value in series if name == "hits") == workers * rounds


def test_series_buckets_zero_and_function_scopes(tmp_path: Path) -> None:
    db = CountersDB(tmp_path)
    first = Delta()
    first.add("tier:disk", "hits", 2)
    first.add("function:m:f", "loads", 1)
    first.size = (3, 300)
    db.add(first, now=1000 * BUCKET_SECONDS)
    second = Delta()
    second.add("tier:disk", "hits", 5)
    db.add(second, now=1001 * BUCKET_SECONDS + 1)
    assert db.totals() == {"tier:disk": {"hits": 7}, "function:m:f": {"loads": 1}}
    buckets = [(bucket, value) for bucket, scope, _, value in db.series() if scope == "tier:disk"]
    assert buckets == [(1000 * BUCKET_SECONDS, 2), (1001 * BUCKET_SECONDS, 5)]
    assert not any(scope.startswith("function:") for _, scope, _, _ in db.series())
    assert db.sizes() == [(1000 * BUCKET_SECONDS, 3, 300)]
    db.zero(now=5.0)
    assert db.totals() == {} and db.series() == [] and db.zeroed_at() == 5.0


def test_old_buckets_are_dropped_but_totals_kept(tmp_path: Path) -> None:
    db = CountersDB(tmp_path)
    old = Delta()
    old.add("tier:disk", "misses", 1)
    db.add(old, now=0.0)
    new = Delta()
    new.add("tier:disk", "misses", 1)
    db.add(new, now=40 * 86400.0, keep_days=30)
    assert [row[0] for row in db.series()] == [40 * 86400]
    assert db.totals()["tier:disk"]["misses"] == 2


def test_recorder_writes_differences_once(tmp_path: Path) -> None:
    from compilecache.artifacts import ArtifactStats
    from compilecache.stores import DiskStore

    store = DiskStore(tmp_path / "store")
    stats = ArtifactStats()
    now = [0.0]
    recorder = Recorder(CountersDB(tmp_path), store, stats, period=10, clock=lambda: now[0])
    store.get("absent")
    store.put("a", b"x" * 10)
    store.get("a")
    stats.loaded += 2
    stats.bypasses["closure value of f is a Foo object"] += 1
    recorder.loaded("m:f", "digest1", 1.5)
    recorder.maybe_flush()  # not due yet
    assert CountersDB(tmp_path).totals() == {}
    now[0] = 11.0
    recorder.maybe_flush()
    recorder.flush()  # nothing new: nothing added twice
    totals = CountersDB(tmp_path).totals()
    assert totals["tier:disk"]["hits"] == 1 and totals["tier:disk"]["misses"] == 1
    assert totals["artifacts"]["loaded"] == 2 and totals["artifacts"]["seconds saved"] == 1.5
    assert totals["bypass"] == {"closure value of f is a Foo object": 1}
    assert totals["function:m:f"] == {"loads": 1, "seconds saved": 1.5}
    assert CountersDB(tmp_path).entry_loads()["digest1"][0] == 1
    assert CountersDB(tmp_path).sizes()[0][1:] == (1, store.stats().size)
    from compilecache.telemetry._html_report import render

    page = render(CountersDB(tmp_path), store="store")
    assert "not persisted (bypassed)" in page and "closure value of f is a Foo object" in page


def test_an_unwritable_database_never_fails_a_call(tmp_path: Path) -> None:
    from compilecache.artifacts import ArtifactStats
    from compilecache.stores import MemoryStore

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    recorder = Recorder(CountersDB(blocked), MemoryStore(), ArtifactStats())
    recorder.compiled("m:f", 1.0)
    recorder.flush()  # logged, not raised


SCRIPT = """
import sys, numpy as np
sys.path[:0] = [{tests!r}, {workdir!r}]
import compilecache
from artifactbackend import FileLoggedBackend
import userpkg
f = compilecache.jit(userpkg.f, backend=FileLoggedBackend({log!r}))
f(np.arange(4.0), 2)
"""


@pytest.mark.slow
def test_hooks_persist_loads_and_compiles_across_processes(tmp_path: Path) -> None:
    (tmp_path / "userpkg.py").write_text(
        textwrap.dedent(
            """
            def f(x, n):
                return x * 2 + n
            """
        )
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "COMPILECACHE_DIR": str(cache)}
    env.pop("COMPILECACHE_REMOTE", None)
    script = SCRIPT.format(tests=str(TESTS), workdir=str(tmp_path), log=str(tmp_path / "log"))
    for _ in range(3):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    totals = CountersDB(cache).totals()
    assert totals["function:userpkg:f"]["compiles"] == 1
    assert totals["function:userpkg:f"]["loads"] == 2
    assert totals["artifacts"]["saved"] == 1 and totals["artifacts"]["loaded"] == 2
    assert totals["tier:disk"]["hits"] >= 4  # two processes read a manifest and an artifact


@pytest.mark.redis
def test_rejected_values_are_counted_with_a_secret_and_a_remote(
    tmp_path: Path, redis_url: str
) -> None:
    """With COMPILECACHE_SECRET and a remote tier the store is CodecStore(TieredStore), and the
    recorder records only the tiers' raw counters: a forged value is persisted as a disk *hit*
    and its rejection is lost, while the same store without a remote counts a miss and a
    rejection."""
    from compilecache._config import Config
    from compilecache.artifacts import ArtifactStats
    from compilecache.stores import DiskStore, open_store
    from compilecache.telemetry import CountersDB, Recorder

    cache = tmp_path / "cache"
    store = open_store(Config(dir=cache, remote=redis_url, secret=SECRET.encode()))
    DiskStore(cache).put("forged", b"written without the secret")
    assert store.get("forged") is None
    Recorder(CountersDB(cache), store, ArtifactStats()).flush()
    report = data(run_isolated(cache, "stats", "--json", COMPILECACHE_REMOTE=redis_url))
    tiers = report["tiers"]
    assert sum(tier["rejected"] for tier in tiers.values()) == 1, tiers
    assert tiers["disk"]["hits"] == 0, tiers


def test_two_hooks_on_one_store_do_not_double_count(tmp_path: Path) -> None:
    """Every ArtifactHooks gets its own Recorder, and each adds the deltas of the same store's
    counters: two jit functions given hooks over one store persist every hit and write
    twice."""
    from compilecache.artifacts import ArtifactHooks
    from compilecache.stores import DiskStore
    from compilecache.telemetry import CountersDB

    store = DiskStore(tmp_path / "cache")
    first, second = ArtifactHooks(store), ArtifactHooks(store)
    store.put("k", b"v")
    assert store.get("k") == b"v"
    first.recorder.flush()
    second.recorder.flush()
    totals = CountersDB(tmp_path / "cache").totals()["tier:disk"]
    assert totals["hits"] == 1 and totals["writes"] == 1, totals


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_flush_its_parents_counts_again(tmp_path: Path) -> None:
    """A Recorder has no fork handler: a child inherits the parent's unflushed events and the
    store counters' unwritten differences, and both processes flush them, doubling loads,
    seconds saved and tier counts (a fork-based worker pool does this)."""
    from compilecache.artifacts import ArtifactHooks
    from compilecache.stores import DiskStore
    from compilecache.telemetry import CountersDB

    store = DiskStore(tmp_path / "cache")
    hooks = ArtifactHooks(store)
    store.put("k", b"v")
    store.get("k")
    hooks.recorder.loaded("m:f", "d" * 64, 2.0)
    pid = os.fork()
    if pid == 0:  # the child: its own first flush (a miss after 5 s, or its exit)
        try:
            hooks.recorder.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    hooks.recorder.flush()
    totals = CountersDB(tmp_path / "cache").totals()
    assert totals["function:m:f"]["loads"] == 1, totals
    assert totals["tier:disk"]["hits"] == 1, totals


def test_a_failed_flush_keeps_its_events_for_the_next_one(tmp_path: Path) -> None:
    """Recorder.flush takes the pending events out before writing and drops them when the
    write fails (a busy database): the store's counters are retried at the next flush but
    per-function loads, compiles and seconds saved and per-entry loads are lost for good."""
    from compilecache.artifacts import ArtifactStats
    from compilecache.stores import MemoryStore
    from compilecache.telemetry import CountersDB, Recorder

    db = CountersDB(tmp_path, busy_timeout=0.1)
    db.totals()  # create it
    recorder = Recorder(db, MemoryStore(), ArtifactStats())
    recorder.compiled("m:f", 1.5)
    blocker = sqlite3.connect(db.path)
    blocker.execute("BEGIN EXCLUSIVE")
    recorder.flush()  # busy: logged, not raised
    blocker.rollback()
    blocker.close()
    recorder.flush()
    assert db.totals().get("function:m:f", {}).get("compiles") == 1


@pytest.mark.slow
def test_a_busy_counters_database_does_not_stall_a_call(tmp_path: Path) -> None:
    """Flushes run on the caller's thread with the database's 10-second busy timeout, so while
    another process holds the counters database's write lock a call that is due a flush
    (load and save each flush) waits up to 10 s per flush, for statistics."""
    from artifactbackend import FileLoggedBackend
    from compilecache.artifacts import ArtifactHooks
    from compilecache.dispatch import jit
    from compilecache.stores import DiskStore
    from compilecache.telemetry import CountersDB

    cache = tmp_path / "cache"
    hooks = ArtifactHooks(DiskStore(cache))
    hooks.recorder._period = 0.0  # a flush is due (as it is 5 s after the last one)
    db = CountersDB(cache)
    db.totals()
    blocker = sqlite3.connect(db.path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:

        def double(x: float) -> float:
            return x * 2

        f = jit(double, backend=FileLoggedBackend(str(tmp_path / "log")), hooks=hooks)
        start = time.monotonic()
        f(1.0)
        elapsed = time.monotonic() - start
    finally:
        blocker.rollback()
        blocker.close()
    assert elapsed < 2.0, f"a call waited {elapsed:.1f} s for the counters database"

"""Persisted counters: exact under concurrent processes, deltas never double counted, fed by
the artifact hooks across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compilecache.telemetry import CountersDB, Delta, Recorder
from compilecache.telemetry._counters_db import BUCKET_SECONDS

TESTS = Path(__file__).parent

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

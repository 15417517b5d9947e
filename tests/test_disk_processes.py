"""DiskStore under several real processes: no wrong or partial value is ever read, and a writer
killed with SIGKILL mid-write leaves no visible partial entry."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from compilecache.stores import DiskStore
from compilecache.stores._disk_index import INDEX_NAME

sys.path.insert(0, str(Path(__file__).parent))
from valuegen import is_valid, make_value

pytestmark = pytest.mark.slow

KEYS = [f"shared/{i}" for i in range(12)]


def _worker(root: str, seed: int, seconds: float, results: multiprocessing.Queue) -> None:
    rng = random.Random(seed)
    store = DiskStore(root, inline_limit=4096, max_bytes=4 << 20)
    reads = bad = writes = 0
    deadline = time.monotonic() + seconds
    seq = seed * 1_000_000
    while time.monotonic() < deadline:
        key = rng.choice(KEYS)
        action = rng.random()
        if action < 0.35:
            seq += 1
            size = rng.choice([10, 1000, 5000, 60_000, 300_000])
            if action < 0.1:
                store.insert(key, make_value(key, seq, size))
            else:
                store.put(key, make_value(key, seq, size))
            writes += 1
        elif action < 0.4:
            store.delete(key)
        else:
            value = store.get(key)
            reads += 1
            if value is not None and not is_valid(key, value):
                bad += 1
    stats = store.stats()
    results.put((reads, bad, writes, stats.errors, stats.corrupt))


def test_processes_never_read_partial_or_wrong_values(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    workers = [
        context.Process(target=_worker, args=(str(tmp_path), seed, 4.0, results))
        for seed in range(1, 5)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    reads = sum(o[0] for o in outcomes)
    assert reads > 500, outcomes  # the test did real work
    assert sum(o[1] for o in outcomes) == 0, f"bad reads: {outcomes}"
    assert sum(o[3] for o in outcomes) == 0, f"backend errors: {outcomes}"
    assert sum(o[4] for o in outcomes) == 0, f"corrupt entries: {outcomes}"
    store = DiskStore(tmp_path)
    stats = store.stats()
    assert stats.size is not None and stats.size <= 4 << 20


def _writer_until_killed(root: str, seed: int) -> None:
    rng = random.Random(seed)
    store = DiskStore(root, inline_limit=4096)
    seq = 0
    while True:
        seq += 1
        key = rng.choice(KEYS)
        size = rng.choice([100, 20_000, 2_000_000, 8_000_000])
        if rng.random() < 0.5:
            store.put(key, make_value(key, seq, size))
        else:
            store.put_many({k: make_value(k, seq, size // 4) for k in rng.sample(KEYS, 3)})


@pytest.mark.parametrize("round_", range(6))
def test_sigkill_mid_write_leaves_no_partial_entry(tmp_path: Path, round_: int) -> None:
    context = multiprocessing.get_context("spawn")
    writer = context.Process(target=_writer_until_killed, args=(str(tmp_path), round_))
    writer.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / INDEX_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0 + random.Random(round_).random())  # land somewhere in the write loop
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)
    assert writer.exitcode == -signal.SIGKILL

    with sqlite3.connect(tmp_path / INDEX_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = DiskStore(tmp_path)
    found = store.get_many(KEYS)
    assert found, "the writer committed nothing before it was killed"
    for key, value in found.items():
        assert is_valid(key, value), f"partial or wrong value under {key}"
    assert store.stats().corrupt == 0
    store.sweep_orphans(grace=0)  # files of the killed, uncommitted write
    assert store.get_many(KEYS) == found

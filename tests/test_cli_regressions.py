"""Regressions found reviewing the compilecache command and what it is built on: persisted
counters, disk store maintenance, inventory and prune, verify, configuration and logs.

Each test's docstring states the bug it caught (all fixed); the last few pin behaviour that no
other test covers.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clihelpers import corrupt_inline, fake_entry, populate
from compilecache.cli import main
from compilecache.cli._main import EXIT_BACKEND, EXIT_USAGE, EXIT_VERIFY

SECRET = "s" * 32


def run(cache: Path, *args: str, **env: str | None) -> Any:
    environment: dict[str, str | None] = {
        "COMPILECACHE_DIR": str(cache),
        "COMPILECACHE_REMOTE": None,
        "COMPILECACHE_REMOTE_UNSIGNED": None,
        "COMPILECACHE_REMOTE_READ_ONLY": None,
        "COMPILECACHE_SECRET": None,
        "COMPILECACHE_SECRET_PREVIOUS": None,
        "COMPILECACHE_CONFIG": None,
        "COMPILECACHE_LOGS": None,
    }
    environment.update(env)
    return CliRunner().invoke(main, list(args), env=environment)


def data(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- explain ------------------------------------------------------------------------------


def test_explain_compares_the_latest_run_against_the_previous_run(tmp_path: Path) -> None:
    """`explain MODULE:QUALNAME` compares the two most recently created keys, which are two
    specializations compiled by the same run when a run compiles more than one, so it reports
    an input change and misses the code change between the runs."""
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "cache"
    populate(work, cache, sizes=(4, 16), offset=1)
    populate(work, cache, sizes=(4, 16), offset=5)  # shift's code changed; same inputs
    result = data(run(cache, "explain", "clipkg:shift", "--json"))
    assert any("code" in line for line in result["differences"]), result


# -- ls, show -----------------------------------------------------------------------------


def test_ls_leaves_a_corrupt_entry_for_verify_to_quarantine(tmp_path: Path) -> None:
    """`ls` reads every manifest through DiskStore.get, which silently deletes a corrupt
    value (no quarantine, its artifact left orphaned), so a listing destroys the evidence and
    the following `verify` reports a clean store."""
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "cache"
    populate(work, cache)
    corrupt = corrupt_inline(cache, "cc1/m/")
    assert run(cache, "ls", "--json").exit_code == 0
    result = run(cache, "verify", "--json")
    assert result.exit_code == EXIT_VERIFY, result.output
    assert corrupt in {c["key"] for c in json.loads(result.stdout)["corrupt"]}


def test_show_of_an_unusable_entry_is_a_one_line_error(tmp_path: Path) -> None:
    """`show` of an entry whose manifest does not read back raises click.ClickException:
    exit status 1 (documented as "aborted or a demo case failed") and "Error: ..." instead of
    the documented "compilecache: error: ..." line."""
    from compilecache.stores import DiskStore

    cache = tmp_path / "cache"
    digest = "ab" * 32
    DiskStore(cache).put(f"cc1/m/{digest}", b"forged: written without the secret")
    result = run(cache, "show", digest[:12], COMPILECACHE_SECRET=SECRET)
    assert result.exit_code in (EXIT_USAGE, EXIT_BACKEND, EXIT_VERIFY), result.output
    assert result.output.strip().splitlines()[-1].startswith("compilecache: error: ")


def test_a_manifest_with_wrong_field_types_is_not_imported(tmp_path: Path) -> None:
    """Manifest.from_bytes checks only some field types, so a bundle whose manifest says
    compile_seconds "fast" passes every import check, is imported, and then `ls` fails for the
    whole store (Unknown format code 'f'), and `ls --sort compile` exits 3."""
    from compilecache.stores import DiskStore

    source = tmp_path / "source"
    _, values = fake_entry(1, b"artifact", compile_seconds="fast")
    DiskStore(source).put_many(values)
    bundle = tmp_path / "b.ccb"
    assert run(source, "export", str(bundle)).exit_code == 0
    target = tmp_path / "target"
    imported = run(target, "import", str(bundle), "--json")
    listed = run(target, "ls")
    assert imported.exit_code == EXIT_USAGE or listed.exit_code == 0, (
        imported.output,
        listed.output,
    )
    assert run(target, "ls", "--sort", "compile").exit_code == 0


def test_listing_entries_does_not_count_as_using_them(tmp_path: Path) -> None:
    """`ls` (and prune's own listing) read each manifest through DiskStore.get, which records
    an access; with 1024 or more entries the access times are flushed, so every listed entry
    looks just used: `prune --older-than` then keeps stale entries, and LRU eviction and
    `prune --max-size` evict in listing order instead of by real use."""
    from compilecache.stores import DiskStore

    cache = tmp_path / "cache"
    store = DiskStore(cache)
    values: dict[str, bytes] = {}
    for number in range(1100):
        values.update(fake_entry(number, number.to_bytes(4, "big"))[1])
    store.put_many(values)
    store.close()
    old = time.time() - 30 * 86400
    conn = sqlite3.connect(cache / "index-v1.sqlite3")
    conn.execute("UPDATE entries SET accessed = ?, created = ?", (old, old))
    conn.commit()
    conn.close()
    assert len(data(run(cache, "ls", "--json"))) == 1100
    pruned = data(run(cache, "prune", "--older-than", "7d", "--json"))
    assert pruned["removed"] == 1100, pruned


# -- prune ----------------------------------------------------------------------------------


@pytest.mark.redis
def test_prune_leaves_the_shared_remote_tier_alone(tmp_path: Path, redis_url: str) -> None:
    """`prune` deletes through the tiered store, so `prune --max-size` (a bound on the local
    disk) also deletes the entries from the shared Redis tier, which other machines use; `clear`
    deliberately leaves the remote alone for that reason."""
    import redis

    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "cache"
    populate(work, cache, COMPILECACHE_REMOTE=redis_url, COMPILECACHE_REMOTE_UNSIGNED="1")
    client = redis.Redis.from_url(redis_url)
    before = {k for k in client.keys("*") if b"cc1/m/" in k}
    assert len(before) == 2
    result = data(
        run(
            cache,
            "prune",
            "--max-size",
            "1",
            "--json",
            COMPILECACHE_REMOTE=redis_url,
            COMPILECACHE_REMOTE_UNSIGNED="1",
        )
    )
    assert result["removed"] == 2
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # remote writes are queued: give them time
        time.sleep(0.1)
    after = {k for k in client.keys("*") if b"cc1/m/" in k}
    client.close()
    assert after == before


def test_prune_max_size_bounds_the_store_not_only_listed_entries(tmp_path: Path) -> None:
    """prune sizes only manifests with their artifacts: an orphaned artifact (its writer died
    before the manifest, or a reader discarded a corrupt manifest) is invisible to `ls`,
    `prune` and `verify`, so `prune --max-size` reports a store under the bound that is not."""
    from compilecache.stores import DiskStore

    cache = tmp_path / "cache"
    store = DiskStore(cache)
    for number in range(2):
        store.put_many(fake_entry(number, bytes([number]) * 50_000)[1])
    digest, orphan = fake_entry(9, b"o" * 1_000_000)
    store.put(f"cc1/a/{digest}", orphan[f"cc1/a/{digest}"])  # its manifest never written
    limit = 200_000
    report = data(run(cache, "prune", "--max-size", str(limit), "--json"))
    assert report["size_after"] <= limit
    size = DiskStore(cache).stats().size
    assert size is not None and size <= limit, size


# -- verify -----------------------------------------------------------------------------------


def test_verify_does_not_quarantine_a_value_rewritten_during_the_scan(tmp_path: Path) -> None:
    """verify reads every value first and quarantines at the end with an unconditional
    DiskStore.delete, so a good value that another process wrote meanwhile (a reader that
    found the corrupt entry recompiles and rewrites it) is deleted, unlike the row-matching
    delete the maintenance module's docstring promises."""
    from compilecache.artifacts._verify import verify_store
    from compilecache.stores import DiskStore

    cache = tmp_path / "cache"
    DiskStore(cache).put("k", b"the old value")
    conn = sqlite3.connect(cache / "index-v1.sqlite3")
    (value,) = conn.execute("SELECT value FROM entries WHERE key = 'k'").fetchone()
    conn.execute("UPDATE entries SET value = ? WHERE key = 'k'", (value[:-1] + b"!",))
    conn.commit()
    conn.close()
    other_process = DiskStore(cache)

    def progress(done: int, total: int) -> None:
        if done == total:  # the scan is over; quarantine has not started
            other_process.put("k", b"a fresh, good value")

    report = verify_store(DiskStore(cache), progress=progress)
    assert [key for key, _ in report.corrupt] == ["k"]
    assert DiskStore(cache).get("k") == b"a fresh, good value"


# -- counters -----------------------------------------------------------------------------------


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
    report = data(run(cache, "stats", "--json", COMPILECACHE_REMOTE=redis_url))
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


# -- configuration and logs ---------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """read_config_file catches OSError and TOMLDecodeError but not the UnicodeDecodeError
    that tomllib raises for bytes that are not UTF-8, so the error is not a ConfigError and
    does not name the file."""
    from compilecache._config import Config
    from compilecache._errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_bytes(b'salt = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"config\.toml"):
        Config.from_env({"COMPILECACHE_CONFIG": str(path), "COMPILECACHE_DIR": str(tmp_path)})


def test_top_level_settings_beside_a_compilecache_table_are_not_dropped(tmp_path: Path) -> None:
    """read_config_file reads only the [compilecache] table when there is one, so settings at
    the top level of the same file (both places are documented) are silently ignored, unknown
    ones included: here the salt, which then leaves every key unsalted."""
    from compilecache._config import Config
    from compilecache._errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('salt = "release-7"\n\n[compilecache]\nmax_size = "1G"\n')
    try:
        config = Config.from_env(
            {"COMPILECACHE_CONFIG": str(path), "COMPILECACHE_DIR": str(tmp_path)}
        )
    except ConfigError:
        return  # rejecting the mix is fine too
    assert config.max_size == 1 << 30
    assert config.salt == "release-7", config.sources


LOGS_SCRIPT = textwrap.dedent(
    """
    import logging
    logging.getLogger().setLevel(logging.DEBUG)  # the application's root level
    import compilecache
    @compilecache.jit
    def f(x):
        return x + 1
    for i in range(3):
        f(i * 1.5)
    """
)


def test_one_channel_does_not_turn_on_every_channel_at_the_roots_level() -> None:
    """set_logs installs its handler on the "compilecache" logger without giving that logger a
    level, so channels not named inherit the root logger's level: with an application at
    DEBUG, COMPILECACHE_LOGS=recompiles also prints every other channel's DEBUG records."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPILECACHE_")}
    env.update(COMPILECACHE_DISABLE="1", COMPILECACHE_LOGS="recompiles")
    done = subprocess.run(
        [sys.executable, "-c", LOGS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "[compilecache.recompiles]" in done.stderr
    others = [
        line
        for line in done.stderr.splitlines()
        if line.startswith("[compilecache.") and not line.startswith("[compilecache.recompiles]")
    ]
    assert others == [], others


# -- pinned behaviour (passing) -----------------------------------------------------------------


def test_report_escapes_function_and_store_names(tmp_path: Path) -> None:
    """The HTML report escapes function names and the store path (<, >, &, quotes)."""
    from html.parser import HTMLParser

    from compilecache.telemetry import CountersDB, Delta

    cache = tmp_path / 'c<a>&"b'
    delta = Delta()
    delta.add("tier:disk", "hits", 3)
    delta.add("tier:disk", "misses", 1)
    evil = "m:<script>alert('x')</script>&\"q\""
    delta.add(f"function:{evil}", "seconds saved", 2.0)
    delta.add(f"function:{evil}", "loads", 1)
    delta.size = (2, 100)
    CountersDB(cache).add(delta)
    page = tmp_path / "r.html"
    result = run(cache, "report", "--html", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "<script>" not in text and 'c<a>&"b' not in text
    assert "&lt;script&gt;" in text

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)

    parser = Tags()
    parser.feed(text)
    assert "script" not in parser.tags and parser.tags.count("svg") == 3


def test_stats_with_a_disabled_cache_is_a_usage_error(tmp_path: Path) -> None:
    """Commands refuse a disabled configuration with one line and status 2."""
    result = run(tmp_path / "c", "stats", COMPILECACHE_DISABLE="1")
    assert result.exit_code == EXIT_USAGE
    assert result.output.strip().splitlines() == [
        "compilecache: error: caching is disabled (COMPILECACHE_DISABLE): unset it to inspect "
        "the store"
    ]


def test_a_bad_bundle_header_entry_imports_nothing(tmp_path: Path) -> None:
    """A bundle whose header names a key that is not a hex digest is refused as a whole."""
    import struct

    from compilecache.artifacts._bundle import FORMAT, MAGIC

    header = json.dumps(
        {
            "format": FORMAT,
            "signed": False,
            "entries": [
                {
                    "key": "../../escape" + "0" * 52,
                    "manifest": 0,
                    "artifact": 0,
                    "manifest_sha256": "",
                    "artifact_sha256": "",
                }
            ],
        }
    ).encode()
    path = tmp_path / "evil.ccb"
    path.write_bytes(MAGIC + struct.pack(">Q", len(header)) + header)
    result = run(tmp_path / "c", "import", str(path))
    assert result.exit_code == EXIT_USAGE
    assert len(result.output.strip().splitlines()) == 1
    assert data(run(tmp_path / "c", "ls", "--json")) == []

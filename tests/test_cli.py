"""The compilecache command, through click's runner in-process (and a few real processes)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clihelpers import clean_env, corrupt_inline, fake_entry, populate, run_isolated
from compilecache.cli import main
from compilecache.cli._main import EXIT_BACKEND, EXIT_USAGE, EXIT_VERIFY

SECRET = "s" * 32


COMMANDS = [
    "stats",
    "ls",
    "show",
    "explain",
    "verify",
    "prune",
    "clear",
    "export",
    "import",
    "config",
    "report",
    "demo",
]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    populate(work, tmp_path / "cache", sizes=(4,))
    populate(work, tmp_path / "cache", sizes=(4,))  # a second run: loads, no compiles
    return tmp_path / "cache"


def run(cache: Path | None, *args: str, input: str | None = None, **env: str) -> Any:
    environment = {"COMPILECACHE_DIR": str(cache)} if cache is not None else {}
    unset = ("REMOTE", "REMOTE_UNSIGNED", "SECRET", "SECRET_PREVIOUS")
    environment.update({f"COMPILECACHE_{name}": None for name in unset})  # type: ignore[misc]
    environment.update(env)
    return CliRunner().invoke(main, list(args), env=environment, input=input)


def data(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_stats_counts_across_processes_and_zero(cache: Path) -> None:
    report = data(run(cache, "stats", "--json"))
    disk = report["tiers"]["disk"]
    assert disk["entries"] == 6  # two manifests, two artifacts, two function indexes
    assert disk["hits"] >= 4 and disk["misses"] >= 4
    assert report["artifacts"]["saved"] == 2 and report["artifacts"]["loaded"] == 2
    assert set(report["functions"]) == {"clipkg:scale", "clipkg:shift"}
    assert report["functions"]["clipkg:scale"]["loads"] == 1
    text = run(cache, "stats")
    assert "hit rate" in text.output and "compile time saved" in text.output
    assert run(cache, "stats", "--zero").output.strip() == "Statistics zeroed."
    after = data(run(cache, "stats", "--json"))
    assert after["tiers"]["disk"]["hits"] == 0 and after["since"] is not None
    assert after["tiers"]["disk"]["entries"] == 6  # zeroing keeps the entries


def test_stats_with_a_disabled_cache_is_a_usage_error(tmp_path: Path) -> None:
    """Commands refuse a disabled configuration with one line and status 2."""
    result = run_isolated(tmp_path / "c", "stats", COMPILECACHE_DISABLE="1")
    assert result.exit_code == EXIT_USAGE
    assert result.output.strip().splitlines() == [
        "compilecache: error: caching is disabled (COMPILECACHE_DISABLE): unset it to inspect "
        "the store"
    ]


def test_ls_filters_and_sorts(cache: Path, tmp_path: Path) -> None:
    populate(tmp_path / "work", cache, sizes=(16,))  # two more entries, newer
    listed = data(run(cache, "ls", "--json"))
    assert len(listed) == 4
    assert {e["function"] for e in listed} == {"clipkg:scale", "clipkg:shift"}
    only = data(run(cache, "ls", "--json", "--function", "shift"))
    assert [e["function"] for e in only] == ["clipkg:shift", "clipkg:shift"]
    assert data(run(cache, "ls", "--json", "--backend", "nope")) == []
    by_hits = data(run(cache, "ls", "--json", "--sort", "hits"))
    assert by_hits[0]["loads"] == 1 and by_hits[-1]["loads"] == 0
    assert len(data(run(cache, "ls", "--json", "--limit", "1"))) == 1
    assert "4 entries" in run(cache, "ls").output


def test_show_by_prefix_and_errors(cache: Path) -> None:
    key = data(run(cache, "ls", "--json", "--function", "scale"))[0]["key"]
    shown = data(run(cache, "show", key[:10], "--json"))
    assert shown["key"] == key and shown["function"] == "clipkg:scale"
    assert "x: shape (4,)" in shown["guards_in_words"]
    assert set(shown["components"]) == {
        "function",
        "dependencies",
        "inputs",
        "backend",
        "environment",
        "salt",
    }
    text = run(cache, "show", key[:10]).output
    assert "key components" in text and "k: equals 2" in text
    missing = run(cache, "show", "ffffffff")
    assert missing.exit_code == EXIT_USAGE
    assert missing.output.strip().splitlines() == [
        "compilecache: error: no stored entry has a key starting with 'ffffffff'"
    ]
    assert run(cache, "show", "ab").exit_code == EXIT_USAGE  # too short


def test_ls_leaves_a_corrupt_entry_for_verify_to_quarantine(tmp_path: Path) -> None:
    """`ls` reads every manifest through DiskStore.get, which silently deletes a corrupt
    value (no quarantine, its artifact left orphaned), so a listing destroys the evidence and
    the following `verify` reports a clean store."""
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "cache"
    populate(work, cache)
    corrupt = corrupt_inline(cache, "cc1/m/")
    assert run_isolated(cache, "ls", "--json").exit_code == 0
    result = run_isolated(cache, "verify", "--json")
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
    result = run_isolated(cache, "show", digest[:12], COMPILECACHE_SECRET=SECRET)
    assert result.exit_code in (EXIT_USAGE, EXIT_BACKEND, EXIT_VERIFY), result.output
    assert result.output.strip().splitlines()[-1].startswith("compilecache: error: ")


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
    assert len(data(run_isolated(cache, "ls", "--json"))) == 1100
    pruned = data(run_isolated(cache, "prune", "--older-than", "7d", "--json"))
    assert pruned["removed"] == 1100, pruned


def test_explain_a_function_and_two_keys(cache: Path, tmp_path: Path) -> None:
    populate(tmp_path / "work", cache, offset=5)  # shift's code changed
    result = data(run(cache, "explain", "clipkg:shift", "--json"))
    assert any("code" in line for line in result["differences"]), result
    scale_keys = [e["key"] for e in data(run(cache, "ls", "--json", "--function", "scale"))]
    assert len(scale_keys) == 1
    shift_keys = [e["key"] for e in data(run(cache, "ls", "--json", "--function", "shift"))]
    both = data(run(cache, "explain", shift_keys[0][:12], shift_keys[1][:12], "--json"))
    assert both["differences"]
    none = run(cache, "explain", "clipkg:nothing")
    assert none.exit_code == EXIT_USAGE and "no stored entries are recorded" in none.output


def test_explain_compares_the_latest_run_against_the_previous_run(tmp_path: Path) -> None:
    """`explain MODULE:QUALNAME` compares the two most recently created keys, which are two
    specializations compiled by the same run when a run compiles more than one, so it reports
    an input change and misses the code change between the runs."""
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "cache"
    populate(work, cache, sizes=(4, 16), offset=1)
    populate(work, cache, sizes=(4, 16), offset=5)  # shift's code changed; same inputs
    result = data(run_isolated(cache, "explain", "clipkg:shift", "--json"))
    assert any("code" in line for line in result["differences"]), result


def test_verify_quarantines_corrupt_truncated_and_forged(tmp_path: Path) -> None:
    from compilecache.stores import CodecStore, DiskStore, Signing

    secret = "s" * 32
    cache = tmp_path / "cache"
    work = tmp_path / "work"
    work.mkdir()
    populate(work, cache, COMPILECACHE_SECRET=secret)
    assert run(cache, "verify", COMPILECACHE_SECRET=secret).exit_code == 0
    corrupt = corrupt_inline(cache, "cc1/m/")
    disk = DiskStore(cache, inline_limit=0)
    # A large value (a file) truncated in the middle.
    signed = CodecStore(disk, [Signing(secret.encode())])
    signed.put("big", b"x" * 100_000)
    (filename,) = (
        disk._index.connection()
        .execute("SELECT filename FROM entries WHERE key = 'big'")
        .fetchone()
    )
    path = cache / filename
    path.write_bytes(path.read_bytes()[:5000])
    # A forged entry: written without the secret.
    disk.put("forged", b"evil")
    result = run(cache, "verify", "--json", COMPILECACHE_SECRET=secret)
    assert result.exit_code == EXIT_VERIFY
    report = json.loads(result.stdout)
    assert {c["key"] for c in report["corrupt"]} == {corrupt, "big"}
    assert [r["key"] for r in report["rejected"]] == ["forged"]
    assert len(report["quarantined"]) >= 3
    quarantined = list((cache / "quarantine").glob("*.json"))
    assert len(quarantined) >= 3
    assert "forged" not in set(DiskStore(cache).keys())
    again = run(cache, "verify", COMPILECACHE_SECRET=secret)
    assert again.exit_code == 0, again.output


def test_a_damaged_index_is_salvaged_and_verify_says_what_was_lost(tmp_path: Path) -> None:
    """Three bytes at offset 100 of the index once lost every entry silently: the index was
    moved aside at open and ``verify`` printed "checked 0 values" and exited 0. Now the
    payload files (values of more than 32 KiB) are re-adopted, the loss is logged and
    counted, and ``verify`` exits 4 once, saying what was lost."""
    import logging

    from compilecache.stores import DiskStore
    from compilecache.stores._disk_index import INDEX_NAME

    cache = tmp_path / "cache"
    store = DiskStore(cache)
    large = {f"large{i}": bytes([i]) * 100_000 for i in range(10)}
    for key, value in large.items():
        store.put(key, value)
    for i in range(10):
        store.put(f"small{i}", b"v" * 100)  # inline: lives in the index only
    store.close()
    with open(cache / INDEX_NAME, "r+b") as index:
        index.seek(100)
        index.write(b"\xff\xff\xff")
    logger = logging.getLogger("compilecache.store.disk")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        reopened = DiskStore(cache)
    finally:
        logger.removeHandler(handler)
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "10 entries re-adopted" in records[0].getMessage()
    assert {key: reopened.get(key) for key in large} == large
    assert reopened.get("small0") is None
    assert reopened.stats().corrupt >= 1
    reopened.close()
    result = run(cache, "verify")
    assert result.exit_code == EXIT_VERIFY, result.output
    assert "index damaged" in result.output and "10 entries re-adopted" in result.output
    assert "checked 10 values: 10 good" in result.output
    again = run(cache, "verify")  # reported once: the record went to quarantine/
    assert again.exit_code == 0, again.output


def test_verify_with_the_wrong_secret_quarantines_nothing(tmp_path: Path) -> None:
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    populate(work, cache, COMPILECACHE_SECRET="a" * 32)
    result = run(cache, "verify", "--json", COMPILECACHE_SECRET="b" * 32)
    assert result.exit_code == EXIT_VERIFY
    report = json.loads(result.stdout)
    assert report["secret_suspect"] and report["rejected"] and report["quarantined"] == []
    assert run(cache, "verify", COMPILECACHE_SECRET="a" * 32).exit_code == 0


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


def test_prune_by_function_age_and_size(cache: Path, tmp_path: Path) -> None:
    populate(tmp_path / "work", cache, sizes=(16,))
    assert len(data(run(cache, "ls", "--json"))) == 4
    removed = data(run(cache, "prune", "--function", "clipkg:shift", "--json"))
    assert removed["removed"] == 2
    assert {e["function"] for e in data(run(cache, "ls", "--json"))} == {"clipkg:scale"}
    listed = data(run(cache, "ls", "--json", "--sort", "used"))  # most recently used first
    total = data(run(cache, "stats", "--json"))["tiers"]["disk"]["bytes"]
    limit = total - listed[-1]["size"]  # room for all but the least recently used entry
    limited = data(run(cache, "prune", "--max-size", str(limit), "--json"))
    assert limited["removed"] == 1 and limited["size_after"] <= limit
    assert [e["key"] for e in data(run(cache, "ls", "--json"))] == [listed[0]["key"]]
    assert data(run(cache, "stats", "--json"))["tiers"]["disk"]["bytes"] <= limit
    assert data(run(cache, "prune", "--older-than", "1d", "--json"))["removed"] == 0
    assert data(run(cache, "prune", "--older-than", "0s", "--json"))["removed"] == 1
    assert run(cache, "prune").exit_code == EXIT_USAGE
    bad = run(cache, "prune", "--max-size", "lots")
    assert bad.exit_code == EXIT_USAGE and "not a size" in bad.output


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
        run_isolated(
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
    report = data(run_isolated(cache, "prune", "--max-size", str(limit), "--json"))
    assert report["size_after"] <= limit
    size = DiskStore(cache).stats().size
    assert size is not None and size <= limit, size


def test_clear_asks_first(cache: Path) -> None:
    declined = run(cache, "clear", input="n\n")
    assert declined.exit_code != 0 and "Aborted" in declined.output
    assert len(data(run(cache, "ls", "--json"))) == 2
    assert run(cache, "clear", "--yes").exit_code == 0
    assert data(run(cache, "ls", "--json")) == []


def test_export_import_and_malformed_bundles(cache: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "warm.ccb"
    exported = data(run(cache, "export", str(bundle), "--json"))
    assert len(exported["exported"]) == 2
    other = tmp_path / "other"
    imported = data(run(other, "import", str(bundle), "--json"))
    assert len(imported["imported"]) == 2 and imported["skipped"] == []
    again = run(other, "import", str(bundle))
    assert again.exit_code == 0 and "skipped 2: already in the store" in again.output
    raw = bundle.read_bytes()
    for name, damaged in {
        "truncated": raw[: len(raw) // 2],
        "garbage": b"not a bundle at all",
        "flipped": raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:],
    }.items():
        path = tmp_path / f"{name}.ccb"
        path.write_bytes(damaged)
        empty = tmp_path / f"empty-{name}"
        result = run(empty, "import", str(path))
        assert result.exit_code == EXIT_USAGE, (name, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert data(run(empty, "ls", "--json")) == []  # nothing half-imported


def test_config_names_sources(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text('salt = "from-file"\nmax_size = "1G"\n')
    result = data(
        run(tmp_path / "c", "config", "--json", "--remote", "", COMPILECACHE_CONFIG=str(file))
    )
    settings = result["settings"]
    assert settings["COMPILECACHE_DIR"]["source"] == "environment"
    assert settings["COMPILECACHE_SALT"] == {"value": "from-file", "source": f"file {file}"}
    assert settings["COMPILECACHE_MAX_SIZE"]["value"] == 1 << 30
    assert settings["COMPILECACHE_REMOTE"]["source"] == "command line (--remote)"
    assert settings["COMPILECACHE_SECRET"]["value"] is None
    assert result["file"] == str(file)


def test_errors_are_one_line_with_distinct_codes(tmp_path: Path) -> None:
    bad = run(tmp_path / "c", "stats", COMPILECACHE_MAX_SIZE="lots")
    assert bad.exit_code == EXIT_USAGE
    assert bad.output.strip().splitlines() == [
        "compilecache: error: COMPILECACHE_MAX_SIZE='lots' is not a size: write bytes or a "
        "number with a unit K, M, G or T (for example 10GiB or 512M)"
    ]
    from redisserver import free_port

    dead = run(
        tmp_path / "c",
        "stats",
        "--remote",
        f"redis://127.0.0.1:{free_port()}/0",
        COMPILECACHE_REMOTE_UNSIGNED="1",
    )
    assert dead.exit_code == EXIT_BACKEND
    assert len(dead.output.strip().splitlines()) == 1 and "does not answer" in dead.output
    debug = CliRunner().invoke(main, ["--debug", "stats"], env={"COMPILECACHE_MAX_SIZE": "lots"})
    assert debug.exception is not None  # --debug lets the traceback through


def test_report_html_is_self_contained(cache: Path, tmp_path: Path) -> None:
    from html.parser import HTMLParser

    page = tmp_path / "report.html"
    assert run(cache, "report", "--html", str(page)).exit_code == 0
    text = page.read_text()

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[tuple[str, dict[str, str | None]]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append((tag, dict(attrs)))

    parser = Collect()
    parser.feed(text)
    tags = [tag for tag, _ in parser.tags]
    assert tags.count("svg") == 3  # disk hits/misses, time saved per function, size
    bars = [attrs for tag, attrs in parser.tags if tag == "rect" and attrs.get("class") == "bar"]
    assert {attrs["data-series"] for attrs in bars} >= {"hits", "misses", "saved"}
    assert not any(tag == "script" for tag in tags)
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # no fetches
    assert "clipkg:scale" in text and "compile time saved" in text


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
    result = run_isolated(cache, "report", "--html", str(page))
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


def test_report_renders_in_a_headless_browser(cache: Path, tmp_path: Path) -> None:
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        from redisserver import in_ci

        if in_ci():
            pytest.fail("chromium is missing in CI (scripts/setup-env installs it)")
        pytest.skip("no chromium here; test_report_html_is_self_contained covers the page")
    page = tmp_path / "report.html"
    assert run(cache, "report", "--html", str(page)).exit_code == 0
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<svg") == 3 and 'class="bar"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=800,1000",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert _distinct_colours(shot.read_bytes()) > 4  # charts drawn, not a blank page


def _distinct_colours(png: bytes) -> int:
    """How many distinct pixel values a PNG has (RGB/RGBA, 8-bit; enough for a screenshot)."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks, header = 8, [], b""
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        body = png[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, _depth, colour = struct.unpack(">IIBB", header[:10])
    channels = {2: 3, 6: 4}[colour]
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    seen: set[bytes] = set()
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + predictor) & 0xFF
        if row % 7 == 0:
            seen.update(bytes(line[i : i + channels]) for i in range(0, stride, channels * 3))
        previous = line
    return len(seen)


@pytest.mark.slow
def test_real_processes_exit_codes(cache: Path) -> None:
    env = clean_env(cache)
    stats = subprocess.run(
        [sys.executable, "-m", "compilecache", "stats", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stats.returncode == 0 and json.loads(stats.stdout)["tiers"]["disk"]["entries"] == 6
    corrupt_inline(cache, "cc1/a/")
    verify = subprocess.run(
        [sys.executable, "-m", "compilecache", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == EXIT_VERIFY and "corrupt" in verify.stdout
    usage = subprocess.run(
        [sys.executable, "-m", "compilecache", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == EXIT_USAGE and "Missing argument" in usage.stderr


READER = """
import hashlib, sys, time
sys.path.insert(0, {src!r})
from compilecache.stores import DiskStore
store = DiskStore({cache!r})
expected = {expected!r}
deadline = time.monotonic() + {seconds}
reads = hits = 0
print("ready", flush=True)
while time.monotonic() < deadline:
    found = 0
    for key, digest in expected.items():
        value = store.get(key)
        reads += 1
        if value is not None:
            hits += 1
            found += 1
            assert hashlib.sha256(value).hexdigest() == digest, "partial or wrong value"
    if hits and not found:
        break  # everything was pruned, and every read before that was whole
print(reads, hits, store.stats().corrupt)
"""


@pytest.mark.slow
def test_prune_never_cuts_a_read_short(tmp_path: Path) -> None:
    """A process reading large (file-backed) entries in a loop while prune removes them gets
    each value whole or a miss, never a partial value, and counts nothing corrupt."""
    import hashlib

    from compilecache.stores import DiskStore

    cache = tmp_path / "cache"
    store = DiskStore(cache)
    expected = {}
    for number in range(12):
        digest, values = fake_entry(number, bytes([number]) * (3 << 20))
        store.put_many(values)
        artifact = values[f"cc1/a/{digest}"]
        expected[f"cc1/a/{digest}"] = hashlib.sha256(artifact).hexdigest()
    src = str(Path(__file__).parents[1] / "src")
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            READER.format(src=src, cache=str(cache), expected=expected, seconds=60),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    import time

    time.sleep(0.5)  # let it read a few rounds whole
    result = data(run(cache, "prune", "--max-size", "1", "--json"))
    assert result["removed"] == 12 and result["size_after"] == 0
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    reads, hits, corrupt = map(int, out.split())
    assert hits > 0 and reads > hits  # it read values whole, then misses
    assert corrupt == 0


def test_a_command_run_from_python_leaves_no_configuration_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command's --dir is its own: later compiles in the same process use the
    configuration of the environment again."""
    from click.testing import CliRunner

    from compilecache._runtime import runtime
    from compilecache.cli._main import main

    monkeypatch.setenv("COMPILECACHE_DIR", str(tmp_path / "env"))
    result = CliRunner().invoke(main, ["stats", "--dir", str(tmp_path / "flag")])
    assert result.exit_code == 0, result.output
    assert runtime().config.dir == tmp_path / "env"

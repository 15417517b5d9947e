"""Bundles: carry stored entries to another cache; bad bundles import nothing."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

import compilecache
from artifactbackend import FileLoggedBackend, compiles
from compilecache.artifacts import (
    ArtifactHooks,
    BundleError,
    export_bundle,
    import_bundle,
)
from compilecache.dispatch import jit, reset
from compilecache.stores import DiskStore

SECRET = b"bundle-secret-0123456789"


@pytest.fixture
def compiled_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any, str]:
    """A cache directory holding the compiled entries of two functions."""
    (tmp_path / "bundled.py").write_text(
        "def add(x, y):\n    return x + y\n\ndef mul(x, y):\n    return x * y\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("bundled", None)
    import bundled  # type: ignore[import-not-found]

    log = str(tmp_path / "log")
    hooks = ArtifactHooks(DiskStore(tmp_path / "a"))
    for fn in (bundled.add, bundled.mul):
        jit(fn, backend=FileLoggedBackend(log), hooks=hooks)(2, 3)
    reset()
    return tmp_path, bundled, log


def entries(store: DiskStore) -> set[str]:
    return {k for k in store.keys() if k.startswith("cc1/m/")}


def test_round_trip_to_another_cache_loads_without_compiling(
    compiled_cache: tuple[Path, Any, str],
) -> None:
    tmp_path, bundled, log = compiled_cache
    bundle = tmp_path / "warm.ccb"
    exported = export_bundle(bundle, store=DiskStore(tmp_path / "a"), secret=SECRET)
    assert len(exported.exported) == 2
    target = DiskStore(tmp_path / "b")
    report = import_bundle(bundle, store=target, secret=SECRET)
    assert len(report.imported) == 2 and report.skipped == []
    again = import_bundle(bundle, store=target, secret=SECRET)
    assert again.imported == [] and {r for _, r in again.skipped} == {"already in the store"}
    hooks = ArtifactHooks(target)
    assert jit(bundled.add, backend=FileLoggedBackend(log), hooks=hooks)(2, 3) == ("loaded", 5)
    assert compiles(log) == 2  # the two original compiles only


def test_export_selects_functions(compiled_cache: tuple[Path, Any, str]) -> None:
    tmp_path, _, _ = compiled_cache
    report = export_bundle(
        tmp_path / "one.ccb", store=DiskStore(tmp_path / "a"), functions=["bundled:mul"]
    )
    assert len(report.exported) == 1


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    elif how == "flip-artifact-byte":
        data[-40] ^= 0x01
    elif how == "magic":
        data[:4] = b"ZIP!"
    elif how == "huge-header-length":
        data[10:18] = struct.pack(">Q", 1 << 40)
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncate", "truncated"),
        ("flip-artifact-byte", "signature does not verify"),
        ("magic", "not a compilecache bundle"),
        ("huge-header-length", "implausible"),
        ("empty", "not a compilecache bundle"),
    ],
)
def test_damaged_or_forged_bundles_import_nothing(
    compiled_cache: tuple[Path, Any, str], how: str, message: str
) -> None:
    tmp_path, _, _ = compiled_cache
    bundle = tmp_path / "bad.ccb"
    export_bundle(bundle, store=DiskStore(tmp_path / "a"), secret=SECRET)
    corrupt(bundle, how)
    target = DiskStore(tmp_path / "b")
    with pytest.raises(BundleError, match=message) as info:
        import_bundle(bundle, store=target, secret=SECRET)
    assert isinstance(info.value, ValueError)
    assert entries(target) == set(), "a failed import left entries behind"


def test_unsigned_bundle_is_refused_when_a_secret_is_set(
    compiled_cache: tuple[Path, Any, str],
) -> None:
    tmp_path, _, _ = compiled_cache
    bundle = tmp_path / "plain.ccb"
    export_bundle(bundle, store=DiskStore(tmp_path / "a"))
    with pytest.raises(BundleError, match="not signed"):
        import_bundle(bundle, store=DiskStore(tmp_path / "b"), secret=SECRET)
    with pytest.raises(BundleError, match="signature"):
        signed = tmp_path / "signed.ccb"
        export_bundle(signed, store=DiskStore(tmp_path / "a"), secret=b"another-secret-xxxxxx")
        import_bundle(signed, store=DiskStore(tmp_path / "b"), secret=SECRET)
    assert len(import_bundle(bundle, store=DiskStore(tmp_path / "c")).imported) == 2


def rewrite_header(path: Path, change: Any) -> None:
    data = path.read_bytes()
    (length,) = struct.unpack_from(">Q", data, 10)
    header = json.loads(data[18 : 18 + length])
    change(header)
    new = json.dumps(header).encode()
    path.write_bytes(data[:10] + struct.pack(">Q", len(new)) + new + data[18 + length :])


def test_a_key_that_is_not_a_digest_is_refused(compiled_cache: tuple[Path, Any, str]) -> None:
    tmp_path, _, _ = compiled_cache
    bundle = tmp_path / "evil.ccb"
    export_bundle(bundle, store=DiskStore(tmp_path / "a"))

    def traverse(header: dict[str, Any]) -> None:
        header["entries"][0]["key"] = "../../../etc/passwd"

    rewrite_header(bundle, traverse)
    target = DiskStore(tmp_path / "b")
    with pytest.raises(BundleError, match="malformed entry"):
        import_bundle(bundle, store=target)
    assert entries(target) == set()


def test_entries_built_elsewhere_are_skipped_with_the_reason(
    compiled_cache: tuple[Path, Any, str],
) -> None:
    tmp_path, _, _ = compiled_cache
    source = DiskStore(tmp_path / "a")
    name = sorted(entries(source))[0]
    manifest = json.loads(source.get(name))  # type: ignore[arg-type]
    manifest["components"]["environment"]["summary"]["python"] = "CPython 3.99.0"
    source.put(name, json.dumps(manifest).encode())
    bundle = tmp_path / "mixed.ccb"
    export_bundle(bundle, store=source)
    report = import_bundle(bundle, store=DiskStore(tmp_path / "b"))
    assert len(report.imported) == 1
    ((_, reason),) = report.skipped
    assert "python CPython 3.99.0" in reason and "here CPython" in reason


def test_top_level_helpers_use_the_configuration(
    compiled_cache: tuple[Path, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path, _, _ = compiled_cache
    monkeypatch.setenv("COMPILECACHE_DIR", str(tmp_path / "a"))
    monkeypatch.delenv("COMPILECACHE_SECRET", raising=False)
    bundle = str(tmp_path / "top.ccb")
    assert len(compilecache.export_bundle(bundle).exported) == 2  # type: ignore[attr-defined]
    monkeypatch.setenv("COMPILECACHE_DIR", str(tmp_path / "z"))
    # The configuration is read once per process: still "a", where every entry already is.
    assert not compilecache.import_bundle(bundle).imported  # type: ignore[attr-defined]
    assert not os.path.exists(tmp_path / "z")
    compilecache.reconfigure()
    assert len(compilecache.import_bundle(bundle).imported) == 2  # type: ignore[attr-defined]
    assert os.path.exists(tmp_path / "z")

"""Bundles: carry stored entries to another cache; bad bundles import nothing."""

from __future__ import annotations

import json
import os
import struct
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import compilecache
from artifactbackend import FileLoggedBackend, compiles
from clihelpers import data, fake_entry, run_isolated
from compilecache.artifacts import (
    ArtifactHooks,
    BundleError,
    export_bundle,
    import_bundle,
)
from compilecache.cli._main import EXIT_USAGE
from compilecache.dispatch import jit, reset
from compilecache.stores import DiskStore, MemoryStore

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


# -- through the command ------------------------------------------------------------------
def test_a_manifest_with_wrong_field_types_is_not_imported(tmp_path: Path) -> None:
    """Manifest.from_bytes checks only some field types, so a bundle whose manifest says
    compile_seconds "fast" passes every import check, is imported, and then `ls` fails for the
    whole store (Unknown format code 'f'), and `ls --sort compile` exits 3."""
    from compilecache.stores import DiskStore

    source = tmp_path / "source"
    _, values = fake_entry(1, b"artifact", compile_seconds="fast")
    DiskStore(source).put_many(values)
    bundle = tmp_path / "b.ccb"
    assert run_isolated(source, "export", str(bundle)).exit_code == 0
    target = tmp_path / "target"
    imported = run_isolated(target, "import", str(bundle), "--json")
    listed = run_isolated(target, "ls")
    assert imported.exit_code == EXIT_USAGE or listed.exit_code == 0, (
        imported.output,
        listed.output,
    )
    assert run_isolated(target, "ls", "--sort", "compile").exit_code == 0


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
    result = run_isolated(tmp_path / "c", "import", str(path))
    assert result.exit_code == EXIT_USAGE
    assert len(result.output.strip().splitlines()) == 1
    assert data(run_isolated(tmp_path / "c", "ls", "--json")) == []

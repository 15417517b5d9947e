"""Compression and signing codecs, and the store wrapper that applies them."""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compilecache import ConfigError, CorruptEntryError, RejectedEntryError
from compilecache.stores import CodecStore, Compression, MemoryStore, Signing
from compilecache.stores._codecs import zstd_available

SECRET = b"s" * 32


@pytest.mark.parametrize("algorithm", ["zlib", "zstd"])
@given(value=st.binary(max_size=3000))
def test_compression_round_trips(algorithm: str, value: bytes) -> None:
    codec = Compression(algorithm=algorithm)
    assert codec.decode("k", codec.encode("k", value)) == value


def test_compression_shrinks_repetitive_values_and_stores_random_ones_raw() -> None:
    codec = Compression()
    assert codec.algorithm == ("zstd" if zstd_available() else "zlib")
    assert len(codec.encode("k", b"abc" * 10_000)) < 1000
    noise = os.urandom(4096)
    assert codec.encode("k", noise) == b"\x00" + noise


@pytest.mark.parametrize("data", [b"\x01not zlib", b"\x02not zstd", b"\x07unknown", b""])
def test_undecodable_compressed_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        Compression().decode("k", data)


def test_unknown_algorithm_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="algorithm"):
        Compression(algorithm="lz4")


@given(st.binary(max_size=500))
def test_signing_round_trips(value: bytes) -> None:
    signer = Signing(SECRET)
    assert signer.decode("key", signer.encode("key", value)) == value


def test_signing_rejects_forgeries_moves_and_other_secrets() -> None:
    signer = Signing(SECRET)
    signed = signer.encode("key", b"compiled code")
    tampered = signed[:-1] + bytes([signed[-1] ^ 1])
    with pytest.raises(RejectedEntryError, match="does not verify"):
        signer.decode("key", tampered)
    with pytest.raises(RejectedEntryError):
        signer.decode("other-key", signed)  # a signed value copied under another key
    with pytest.raises(RejectedEntryError):
        Signing(b"t" * 32).decode("key", signed)
    with pytest.raises(RejectedEntryError, match="not signed"):
        signer.decode("key", b"plain bytes")


def test_signing_needs_a_long_secret_and_hides_it() -> None:
    with pytest.raises(ConfigError, match="COMPILECACHE_SECRET"):
        Signing(b"short")
    assert "s" * 16 not in repr(Signing(SECRET))


def test_codec_store_rejects_forged_entries_counts_and_leaves_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = MemoryStore()
    store = CodecStore(inner, [Compression(), Signing(SECRET)])
    store.put("k", b"genuine" * 100)
    assert store.get("k") == b"genuine" * 100
    inner.put("k", b"S1" + b"\x00" * 32 + b"malicious payload")
    with caplog.at_level(logging.WARNING, "compilecache"):
        assert store.get("k") is None
    stats = store.stats()
    assert (stats.rejected, stats.hits, stats.misses) == (1, 1, 1)
    assert "refused" in caplog.text
    # Left in place (another client may hold the right secret); a put replaces it.
    assert inner.get("k") == b"S1" + b"\x00" * 32 + b"malicious payload"
    store.put("k", b"healed")
    assert store.get("k") == b"healed"


def test_codec_store_get_many_drops_bad_entries() -> None:
    inner = MemoryStore()
    store = CodecStore(inner, [Signing(SECRET)])
    store.put_many({"a": b"1", "b": b"2"})
    inner.put("b", b"junk")
    assert store.get_many(["a", "b", "c"]) == {"a": b"1"}
    assert store.stats().rejected == 1


def test_codec_rejecting_an_entry_keeps_a_concurrent_good_write() -> None:
    """A rejected entry is removed with an unconditional delete(key): a good value written
    between the read and the delete is deleted too."""
    inner = MemoryStore()
    good_writer = CodecStore(inner, [Signing(SECRET)])
    inner.put("k", b"forged")

    class RacingSigning(Signing):
        def decode(self, key: str, data: bytes) -> bytes:
            good_writer.put(key, b"good")  # lands between inner.get and inner.delete
            return super().decode(key, data)

    reader = CodecStore(inner, [RacingSigning(SECRET)])
    assert reader.get("k") is None
    assert good_writer.get("k") == b"good", "a good concurrent write was deleted as rejected"


def test_no_pickle_anywhere_in_the_storage_layer() -> None:
    import compilecache.stores as stores_package

    root = os.path.dirname(stores_package.__file__)
    for name in os.listdir(root):
        if name.endswith(".py"):
            with open(os.path.join(root, name)) as source:
                assert "import pickle" not in source.read(), name

"""MemoryStore: LRU bounds, thread safety, and pre-population from the seed format."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compilecache import CacheTypeError, CacheUsageError, SeedFormatError
from compilecache.stores import MemoryStore, format_seed, parse_seed


def test_entry_bound_evicts_least_recently_used() -> None:
    store = MemoryStore(max_entries=3)
    for key in "abc":
        store.put(key, key.encode())
    assert store.get("a") == b"a"  # a is now the most recent
    store.put("d", b"d")
    assert sorted(store) == ["a", "c", "d"]
    assert store.stats().evictions == 1


def test_byte_bound_evicts_until_it_fits_and_skips_oversized_values() -> None:
    store = MemoryStore(max_bytes=10)
    store.put("a", b"12345")
    store.put("b", b"12345")
    store.put("c", b"123")
    assert sorted(store) == ["b", "c"]
    assert store.stats().size == 8
    store.put("huge", b"x" * 11)
    assert "huge" not in store and store.stats().write_skips == 1
    assert sorted(store) == ["b", "c"]


def test_overwrite_updates_size() -> None:
    store = MemoryStore()
    store.put("a", b"123456")
    store.put("a", b"1")
    store.delete("missing")
    assert store.stats().size == 1 and store.stats().entries == 1


@pytest.mark.parametrize("bound", [0, -1, 1.5, "3"])
def test_bad_bounds_raise(bound: object) -> None:
    with pytest.raises(CacheUsageError, match="max_entries"):
        MemoryStore(max_entries=bound)  # type: ignore[arg-type]


def test_threads_hammering_keep_counts_exact() -> None:
    store = MemoryStore(max_entries=50)

    def work(worker: int) -> None:
        for i in range(2000):
            key = f"k{(worker * 7 + i) % 80}"
            store.put(key, key.encode())
            value = store.get(key)
            assert value is None or value == key.encode()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = store.stats()
    assert stats.hits + stats.misses == 8 * 2000
    assert stats.writes == 8 * 2000
    assert stats.entries == len(list(store)) <= 50
    assert stats.size == sum(len(store.get(k) or b"") for k in list(store))


def test_memory_insert_of_a_value_too_large_to_store_returns_false() -> None:
    """_store skips a value larger than max_bytes, but insert() still reports True."""
    store = MemoryStore(max_bytes=10)
    accepted = store.insert("k", b"x" * 11)
    assert store.get("k") is None and store.stats().write_skips == 1
    assert accepted is False, "insert() returned True for a value it did not store"


def test_memory_get_with_an_unhashable_key_raises_cache_type_error() -> None:
    """The lock-free hit path looks the key up before check_key: an unhashable key raises a
    bare TypeError ('unhashable type') instead of CacheTypeError."""
    with pytest.raises(CacheTypeError):
        MemoryStore().get(["k"])  # type: ignore[arg-type]


def test_memory_get_with_a_str_subclass_key_raises_cache_type_error() -> None:
    """check_key rejects non-exact str types; the hit path returns a value for one."""

    class Key(str):
        pass

    store = MemoryStore()
    store.put("k", b"v")
    with pytest.raises(CacheTypeError):
        store.get(Key("k"))


def test_from_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = {"a": b"\x00\x01", "b": b""}
    monkeypatch.setenv("SEED_VAR", format_seed(seed))
    store = MemoryStore.from_env_var("SEED_VAR", max_entries=10)
    assert store.get_many(["a", "b"]) == seed
    monkeypatch.setenv("SEED_VAR", "")
    assert list(MemoryStore.from_env_var("SEED_VAR")) == []
    monkeypatch.delenv("SEED_VAR")
    assert list(MemoryStore.from_env_var("SEED_VAR")) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"k": 3}', "must be a base64 string"),
        ('{"k": "%%%"}', "not valid base64"),
        ('{"k": "YQ="}', "not valid base64"),
        ('{"bad key": "YQ=="}', "bad key"),
        ('{"k": "YQ==", "k": "Yg=="}', "appears twice with different values"),
    ],
)
def test_malformed_env_var_names_variable_and_item(
    monkeypatch: pytest.MonkeyPatch, text: str, fragment: str
) -> None:
    monkeypatch.setenv("SEED_VAR", text)
    with pytest.raises(SeedFormatError) as info:
        MemoryStore.from_env_var("SEED_VAR")
    message = str(info.value)
    assert "SEED_VAR" in message and fragment in message
    assert info.value.setting is not None and "SEED_VAR" in info.value.setting


def test_duplicate_key_with_same_value_is_fine() -> None:
    assert parse_seed('{"k": "YQ==", "k": "YQ=="}', "test") == {"k": b"a"}


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    assert list(MemoryStore.from_file(path)) == []  # missing
    path.write_text("")
    assert list(MemoryStore.from_file(path)) == []  # empty
    path.write_text(json.dumps({"k": base64.b64encode(b"value").decode()}))
    assert MemoryStore.from_file(path).get("k") == b"value"
    path.write_bytes(b'{"k": "\xff\xfe"}')
    with pytest.raises(SeedFormatError, match=r"seed\.json.*not UTF-8"):
        MemoryStore.from_file(path)
    path.write_text('{"k": "!!"}')
    with pytest.raises(SeedFormatError, match=r"seed\.json.*'k'"):
        MemoryStore.from_file(path)


KEYS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


@given(st.dictionaries(KEYS, st.binary(max_size=100), max_size=20))
def test_seed_round_trips(items: dict[str, bytes]) -> None:
    assert parse_seed(format_seed(items), "property") == items


@given(st.text(max_size=200))
def test_arbitrary_seed_text_parses_or_raises_seed_error(text: str) -> None:
    try:
        result = parse_seed(text, "fuzz")
    except SeedFormatError as error:
        assert "fuzz" in str(error)
    else:
        assert all(isinstance(v, bytes) for v in result.values())

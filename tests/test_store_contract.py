"""The behaviour every store promises, run against each of them.

Each case yields ``(store, writer)``: the store under test reads; ``writer`` is the store itself,
except for the read-only wrapper, whose contents are written through the store it wraps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from compilecache import CacheTypeError, InvalidKeyError
from compilecache.stores import (
    BaseStore,
    CodecStore,
    Compression,
    DiskStore,
    MemoryStore,
    ReadOnly,
    Signing,
    Store,
    TieredStore,
)

Factory = Callable[[Path, str], tuple[BaseStore, BaseStore]]


def _redis(url: str) -> BaseStore:
    from compilecache.stores import RedisStore

    return RedisStore(url, part_size=4096)


def _same(store: BaseStore) -> tuple[BaseStore, BaseStore]:
    return store, store


def _read_only(inner: BaseStore) -> tuple[BaseStore, BaseStore]:
    return ReadOnly(inner), inner


CASES: dict[str, tuple[Factory, bool]] = {
    "memory": (lambda tmp, url: _same(MemoryStore()), False),
    "disk": (lambda tmp, url: _same(DiskStore(tmp / "disk", inline_limit=2048)), False),
    "redis": (lambda tmp, url: _same(_redis(url)), True),
    "tiered-memory-disk": (
        lambda tmp, url: _same(TieredStore([MemoryStore(), DiskStore(tmp / "disk")])),
        False,
    ),
    "tiered-disk-redis": (
        lambda tmp, url: _same(TieredStore([DiskStore(tmp / "disk"), _redis(url)])),
        True,
    ),
    "codecs-over-disk": (
        lambda tmp, url: _same(
            CodecStore(DiskStore(tmp / "disk"), [Compression(), Signing(b"k" * 32)])
        ),
        False,
    ),
    "read-only-memory": (lambda tmp, url: _read_only(MemoryStore()), False),
    "read-only-disk": (lambda tmp, url: _read_only(DiskStore(tmp / "disk")), False),
}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.redis] if needs_redis else [])
        for name, (_, needs_redis) in CASES.items()
    ]
)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[BaseStore, BaseStore]]:
    factory, needs_redis = CASES[request.param]
    url = request.getfixturevalue("redis_url") if needs_redis else ""
    store, writer = factory(tmp_path, url)
    yield store, writer
    store.close()
    writer.close()


@pytest.fixture
def store(stores: tuple[BaseStore, BaseStore]) -> BaseStore:
    return stores[0]


@pytest.fixture
def writer(stores: tuple[BaseStore, BaseStore]) -> BaseStore:
    return stores[1]


SMALL = b"\x00small\xff" * 10
LARGE = bytes(range(256)) * 400  # 100 KiB: above inline and part limits of the cases


def test_satisfies_protocol(store: BaseStore) -> None:
    assert isinstance(store, Store)


def test_missing_key_is_none(store: BaseStore) -> None:
    assert store.get("absent") is None
    assert "absent" not in store


@pytest.mark.parametrize("value", [b"", SMALL, LARGE], ids=["empty", "small", "large"])
def test_round_trip(store: BaseStore, writer: BaseStore, value: bytes) -> None:
    writer.put("k", value)
    assert store.get("k") == value
    assert "k" in store


def test_insert_never_overwrites(store: BaseStore, writer: BaseStore) -> None:
    assert writer.insert("k", b"first") is True
    assert writer.insert("k", b"second") is False
    assert writer.insert("k", LARGE) is False
    assert store.get("k") == b"first"


def test_put_overwrites_small_with_large_and_back(store: BaseStore, writer: BaseStore) -> None:
    writer.put("k", b"one")
    writer.put("k", LARGE)
    assert store.get("k") == LARGE
    writer.put("k", b"two")
    assert store.get("k") == b"two"


def test_delete(store: BaseStore, writer: BaseStore) -> None:
    writer.put("k", LARGE)
    assert writer.delete("k") is True
    assert store.get("k") is None
    assert writer.delete("k") is False
    assert writer.insert("k", b"again") is True


def test_keys_lists_what_was_written(store: BaseStore, writer: BaseStore) -> None:
    wanted = {f"key/{i}" for i in range(20)} | {"big"}
    for key in wanted - {"big"}:
        writer.put(key, key.encode())
    writer.put("big", LARGE)
    assert set(store.keys()) == wanted
    assert set(store) == wanted


def test_get_many_and_put_many(store: BaseStore, writer: BaseStore) -> None:
    items = {f"m{i}": bytes([i]) * i for i in range(30)}
    items["big"] = LARGE
    writer.put_many(items)
    found = store.get_many([*items, "absent-1", "absent-2"])
    assert found == items


def test_values_are_copied_from_bytearray(store: BaseStore, writer: BaseStore) -> None:
    buffer = bytearray(b"mutable")
    writer.put("k", buffer)  # type: ignore[arg-type]
    buffer[:] = b"changed"
    assert store.get("k") == b"mutable"


@pytest.mark.parametrize("bad", ["", "has space", "tab\t", "é", "x" * 513, "new\nline"])
def test_invalid_keys_raise_value_errors(store: BaseStore, writer: BaseStore, bad: str) -> None:
    for call in (
        lambda: store.get(bad),
        lambda: writer.put(bad, b"v"),
        lambda: writer.insert(bad, b"v"),
        lambda: writer.delete(bad),
        lambda: bad in store,
    ):
        with pytest.raises(InvalidKeyError) as info:
            call()
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [b"bytes-key", 7, None])
def test_non_str_keys_raise_type_errors(store: BaseStore, bad: object) -> None:
    with pytest.raises(CacheTypeError) as info:
        store.get(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError)


def test_non_bytes_values_raise_type_errors(writer: BaseStore) -> None:
    with pytest.raises(CacheTypeError, match="must be bytes"):
        writer.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        writer.insert("k", 12)  # type: ignore[arg-type]


def test_longest_and_oddest_valid_key(store: BaseStore, writer: BaseStore) -> None:
    key = ("!~{}[]/\\:%'\"" * 50)[:512]
    writer.put(key, b"v")
    assert store.get(key) == b"v"
    assert key in set(store.keys())


def test_stats_count_hits_misses_and_bytes(store: BaseStore, writer: BaseStore) -> None:
    writer.put("a", b"12345")
    before = store.stats()
    assert store.get("a") == b"12345"
    assert store.get("nope") is None
    after = store.stats()
    assert after.hits - before.hits == 1
    assert after.misses - before.misses == 1
    assert after.bytes_read - before.bytes_read == 5
    assert after.errors == 0
    if after.entries is not None:
        assert after.entries >= 1


def test_async_variants(store: BaseStore, writer: BaseStore) -> None:
    with ThreadPoolExecutor(2) as pool:
        assert writer.insert_async("a", b"1", pool).result(10) is True
        assert writer.insert_async("a", b"2").result(10) is False
        writer.put_async("b", LARGE, pool).result(10)
        assert store.get_async("a", pool).result(10) == b"1"
        assert store.get_async("b").result(10) == LARGE
        assert store.get_async("c").result(10) is None


def test_concurrent_inserts_one_winner(store: BaseStore, writer: BaseStore) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        results.append(writer.insert("race", f"value-{i}".encode() * 100))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A tiered store reports True when any tier accepted, so several racers may each win a tier.
    winners = results.count(True)
    assert winners >= 1 if isinstance(writer, TieredStore) else winners == 1
    value = store.get("race")
    assert value is not None and value in {f"value-{i}".encode() * 100 for i in range(8)}


def test_context_manager_closes(stores: tuple[BaseStore, BaseStore]) -> None:
    store, _ = stores
    with store as entered:
        assert entered is store

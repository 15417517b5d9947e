"""RedisStore against real redis-server processes: layout, healing, processes, crashes.

No mocks: every test talks to a real server on a loopback port; the crash tests kill it with
SIGKILL or freeze it with SIGSTOP.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from compilecache import (
    BackendError,
    CacheTypeError,
    CacheUsageError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
)
from compilecache.stores import Store, _frame
from compilecache.stores._breaker import CircuitBreaker
from compilecache.stores._redis import RedisStore

sys.path.insert(0, str(Path(__file__).parent))
from redisserver import RedisServer, redis_server_or_skip

pytestmark = pytest.mark.redis

PART = 1024
BIG = 10 * 1024


class Clock:
    """A clock the test moves by hand, for breaker cooldowns."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    server = redis_server_or_skip()
    yield server
    server.close()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, to kill, freeze and restart."""
    server = redis_server_or_skip()
    yield server
    server.close()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_store(server: RedisServer, namespace: str) -> Iterator[Callable[..., RedisStore]]:
    made: list[RedisStore] = []

    def make(**options: Any) -> RedisStore:
        options.setdefault("namespace", namespace)
        options.setdefault("part_size", PART)
        store = RedisStore(options.pop("url", server.url), **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., RedisStore]) -> RedisStore:
    return make_store()


def big(seed: int, size: int = BIG) -> bytes:
    return os.urandom(8) + bytes([seed % 256]) * (size - 8)


def raw_get(client: redis.Redis, name: str | bytes) -> bytes | None:
    value = client.get(name)
    assert value is None or isinstance(value, bytes)
    return value


def part_keys(raw: redis.Redis, namespace: str, key: str | None = None) -> set[bytes]:
    pattern = f"{namespace}#part:{key}:*" if key else f"{namespace}#part:*"
    return set(raw.scan_iter(match=pattern))


def all_keys(raw: redis.Redis, namespace: str) -> set[bytes]:
    return set(raw.scan_iter(match=f"{namespace}[:#]*"))


def frame_overhead(namespace: str) -> int:
    return _frame.HEADER_SIZE + len(f"compilecache-redis/{namespace}")


# -- layout and round trips ---------------------------------------------------------------


def test_is_a_remote_store(store: RedisStore) -> None:
    assert isinstance(store, Store)
    assert store.name == "redis" and store.remote is True


def test_small_value_is_one_framed_key(store: RedisStore, raw: redis.Redis, namespace: str) -> None:
    store.put("fn/1", b"compiled")
    assert store.get("fn/1") == b"compiled"
    stored = raw.get(f"{namespace}:fn/1")
    assert stored == _frame.encode(f"compilecache-redis/{namespace}".encode(), b"compiled")
    assert all_keys(raw, namespace) == {f"{namespace}:fn/1".encode()}


def test_split_value_round_trips_through_parts_and_a_manifest(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    value = big(1)
    store.put("fn/big", value)
    assert store.get("fn/big") == value
    manifest = raw_get(raw, f"{namespace}:fn/big")
    assert manifest is not None and manifest.startswith(b"CCM1")
    parts = part_keys(raw, namespace, "fn/big")
    frame_length = len(value) + frame_overhead(namespace)
    assert len(parts) == -(-frame_length // PART)
    assert all(len(raw_get(raw, part) or b"") <= PART for part in parts)
    stats = store.stats()
    assert (stats.hits, stats.bytes_read, stats.writes, stats.bytes_written) == (
        1,
        BIG,
        1,
        BIG,
    )


def test_values_at_the_part_size_boundary(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    fits = b"a" * (PART - frame_overhead(namespace))
    store.put("fits", fits)
    store.put("over", fits + b"b")
    store.put("empty", b"")
    assert (store.get("fits"), store.get("over"), store.get("empty")) == (fits, fits + b"b", b"")
    assert not part_keys(raw, namespace, "fits")
    assert len(part_keys(raw, namespace, "over")) == 2


def test_insert_never_overwrites_and_leaves_no_stray_parts(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    first = big(1)
    assert store.insert("k", first) is True
    parts = part_keys(raw, namespace)
    assert store.insert("k", big(2)) is False
    assert store.insert("k", b"small") is False
    assert store.get("k") == first
    assert part_keys(raw, namespace) == parts  # the losing insert's parts were removed
    assert store.insert("s", b"small") is True
    assert store.insert("s", big(3)) is False
    assert store.get("s") == b"small"
    assert part_keys(raw, namespace) == parts
    assert store.stats().writes == 2


def test_put_over_a_split_value_deletes_its_old_parts(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    store.put("k", big(1))
    old_parts = part_keys(raw, namespace)
    store.put("k", big(2))
    new_parts = part_keys(raw, namespace)
    assert new_parts and not (old_parts & new_parts)
    store.put("k", b"small now")
    assert store.get("k") == b"small now"
    assert all_keys(raw, namespace) == {f"{namespace}:k".encode()}


def test_delete_removes_the_entry_and_its_parts(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    store.put("k", big(1))
    store.put("s", b"small")
    assert store.delete("k") is True
    assert store.delete("k") is False
    assert store.get("k") is None
    assert all_keys(raw, namespace) == {f"{namespace}:s".encode()}
    assert store.delete("s") is True
    assert all_keys(raw, namespace) == set()


def test_keys_lists_only_user_keys(
    make_store: Callable[..., RedisStore], raw: redis.Redis, namespace: str
) -> None:
    store = make_store()
    other = make_store(namespace=namespace + "x")
    # A user key may look like a part key of the brief's first layout: it must still be listed.
    wanted = {"a", "b:c", "big", f"x:part:{'0' * 32}:0", "~!"}
    for key in wanted:
        store.put(key, big(2) if key == "big" else key.encode())
    other.put("elsewhere", big(3))
    raw.set(f"{namespace}:has space", b"not a store key")
    assert sorted(store.keys()) == sorted(wanted)
    assert set(store) == wanted
    assert list(other.keys()) == ["elsewhere"]


def test_keys_walks_every_scan_batch(store: RedisStore, raw: redis.Redis) -> None:
    store.put_many({f"k{i}": b"v" for i in range(2500)})
    listed = list(store.keys())
    assert len(listed) == len(set(listed)) == 2500


def test_contains_uses_the_entry(store: RedisStore) -> None:
    store.put("here", big(1))
    assert "here" in store
    assert "absent" not in store
    with pytest.raises(InvalidKeyError):
        _ = "bad key" in store


def test_ttl_applies_to_the_entry_and_every_part(
    make_store: Callable[..., RedisStore], raw: redis.Redis, namespace: str
) -> None:
    store = make_store(ttl=30)
    store.put("split", big(1))
    store.insert("inserted", big(2))
    store.put_many({"small": b"s", "many-big": big(3)})
    names = all_keys(raw, namespace)
    assert len(names) > 4 * 1 + 3 * 10
    for name in names:
        assert 25_000 < raw.pttl(name) <= 30_000, name


def test_without_ttl_nothing_expires(store: RedisStore, raw: redis.Redis, namespace: str) -> None:
    store.put("split", big(1))
    store.put("small", b"s")
    assert {raw.pttl(name) for name in all_keys(raw, namespace)} == {-1}


def test_entries_expire(make_store: Callable[..., RedisStore], raw: redis.Redis) -> None:
    store = make_store(ttl=0.2)
    store.put("split", big(1))
    store.put("small", b"s")
    time.sleep(0.35)
    assert store.get("split") is None and store.get("small") is None


def test_get_many_and_put_many(store: RedisStore, raw: redis.Redis, namespace: str) -> None:
    items = {f"s{i}": f"value {i}".encode() for i in range(20)}
    items |= {"big1": big(1), "big2": big(2)}
    store.put("big1", big(9))  # overwritten below: its parts must go
    store.put_many(items)
    assert store.get_many([*items, "absent", "s1", "s1"]) == items
    assert len(part_keys(raw, namespace, "big1")) == len(part_keys(raw, namespace, "big2"))
    stats = store.stats()
    assert (stats.hits, stats.misses, stats.writes) == (22, 1, 23)
    assert store.get_many([]) == {}


def test_get_many_reads_whole_values_with_one_command(store: RedisStore, raw: redis.Redis) -> None:
    store.put_many({f"s{i}": b"v" for i in range(10)})

    def calls(command: str) -> int:
        stat = raw.info("commandstats").get(f"cmdstat_{command}", {"calls": 0})
        return int(stat["calls"])

    before = calls("mget"), calls("get")
    assert len(store.get_many(f"s{i}" for i in range(10))) == 10
    assert (calls("mget"), calls("get")) == (before[0] + 1, before[1])


# -- bad frames ---------------------------------------------------------------------------


def _truncated(frame: bytes) -> bytes:
    return frame[:-1]


def _flipped(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 1])


@pytest.mark.parametrize(
    "spoil",
    [
        lambda frame: b"garbage",
        lambda frame: b"",
        _truncated,
        _flipped,
        lambda frame: b"CCM1" + frame,  # a manifest marker on a frame that is not JSON
        lambda frame: b"CCM1{not a frame}",
    ],
    ids=["garbage", "empty", "truncated", "flipped", "manifest-of-junk", "manifest-unframed"],
)
def test_a_bad_value_is_a_counted_miss_and_is_deleted(
    store: RedisStore, raw: redis.Redis, namespace: str, spoil: Callable[[bytes], bytes]
) -> None:
    store.put("k", b"good value")
    name = f"{namespace}:k"
    raw.set(name, spoil(raw_get(raw, name) or b""))
    assert store.get("k") is None
    stats = store.stats()
    assert (stats.corrupt, stats.misses, stats.hits, stats.errors) == (1, 1, 0, 0)
    assert raw.exists(name) == 0
    store.put("k", b"healed")
    assert store.get("k") == b"healed"


def test_a_bad_part_is_a_counted_miss_and_entry_and_parts_are_deleted(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    store.put("k", big(1))
    part = sorted(part_keys(raw, namespace))[0]
    raw.setrange(part, 100, b"\xff\x00")
    assert store.get("k") is None
    assert store.stats().corrupt == 1
    assert all_keys(raw, namespace) == set()


def test_an_entry_that_lost_a_part_is_a_miss_and_is_deleted(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    # Redis's own eviction (maxmemory-policy allkeys-*) can drop one part of an entry.
    store.put("k", big(1))
    raw.delete(sorted(part_keys(raw, namespace))[3])
    assert store.get("k") is None
    stats = store.stats()
    assert (stats.misses, stats.corrupt, stats.errors) == (1, 0, 0)
    assert all_keys(raw, namespace) == set()
    assert store.insert("k", b"again") is True  # not stuck behind the broken manifest
    assert store.get("k") == b"again"


def test_a_manifest_with_impossible_fields_is_corrupt(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    tag = f"compilecache-redis/{namespace}".encode()
    raw.set(f"{namespace}:k", b"CCM1" + _frame.encode(tag, b'{"token": "zz", "parts": 1}'))
    assert store.get("k") is None
    assert store.stats().corrupt == 1
    assert raw.exists(f"{namespace}:k") == 0


def test_a_value_from_another_namespace_is_a_miss(
    make_store: Callable[..., RedisStore], raw: redis.Redis, namespace: str
) -> None:
    mine, theirs = make_store(), make_store(namespace=namespace + "-other")
    theirs.put("small", b"theirs")
    theirs.put("split", big(1))
    for key in ("small", "split"):
        raw.set(f"{namespace}:{key}", raw_get(raw, f"{namespace}-other:{key}") or b"")
        assert mine.get(key) is None
    assert mine.stats().corrupt == 2
    assert theirs.get("small") == b"theirs"


def test_a_concurrent_good_write_survives_healing(
    store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    # Healing deletes only the bytes it judged bad: a value written since then stays.
    raw.set(f"{namespace}:k", b"junk")
    store._corrupt("k", b"other junk", [], CorruptEntryError("test"))
    assert raw.get(f"{namespace}:k") == b"junk"


def test_a_server_error_reply_is_counted_but_keeps_the_breaker_closed(
    make_store: Callable[..., RedisStore], raw: redis.Redis, namespace: str
) -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    store = make_store(breaker=breaker)
    # Someone else's hash at an entry key: GET and SET ... GET both answer WRONGTYPE. The store
    # reports it and leaves the data alone (it is not a frame of ours to heal).
    raw.hset(f"{namespace}:k", "field", "value")
    assert store.get("k") is None
    store.put("k", b"v")
    stats = store.stats()
    assert (stats.errors, stats.misses, stats.write_skips, stats.corrupt) == (2, 1, 1, 0)
    assert breaker.state == "closed"  # the server answered: reads elsewhere go on
    store.put("other", b"fine")
    assert store.get("other") == b"fine"
    assert raw.hget(f"{namespace}:k", "field") == b"value"


# -- processes ----------------------------------------------------------------------------

SHARED_KEY = "shared/big"


def _overwrite(store: RedisStore, values: list[bytes], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    writes = 0
    while time.monotonic() < deadline:
        store.put(SHARED_KEY, values[writes % len(values)])
        writes += 1
    return writes


def _read(store: RedisStore, values: list[bytes], seconds: float) -> tuple[int, int, int, int]:
    allowed = set(values)
    deadline = time.monotonic() + seconds
    reads = hits = wrong = 0
    while time.monotonic() < deadline:
        value = store.get(SHARED_KEY)
        reads += 1
        if value is not None:
            hits += 1
            wrong += value not in allowed
    return reads, hits, wrong, store.stats().corrupt


def _observe(url: str, namespace: str, seconds: float) -> tuple[int, int]:
    """Watch the raw layout: a manifest that is still the current value must never point to a
    missing part (parts go first, old parts go only after the manifest that replaced them)."""
    import json

    client = redis.Redis.from_url(url)
    tag = f"compilecache-redis/{namespace}".encode()
    name = f"{namespace}:{SHARED_KEY}"
    deadline = time.monotonic() + seconds
    checks = violations = 0
    while time.monotonic() < deadline:
        manifest = raw_get(client, name)
        if manifest is None or not manifest.startswith(b"CCM1"):
            continue
        body = json.loads(_frame.decode(manifest[4:], tag))
        parts = [f"{namespace}#part:{SHARED_KEY}:{body['token']}:{i}" for i in range(body["parts"])]
        present = client.exists(*parts)
        checks += 1
        if present != len(parts) and client.get(name) == manifest:
            violations += 1
    client.close()
    return checks, violations


@pytest.mark.slow
def test_processes_overwriting_a_split_value_never_expose_a_partial_one(
    server: RedisServer, store: RedisStore, raw: redis.Redis, namespace: str
) -> None:
    values = [big(seed, BIG + seed * 100) for seed in range(6)]
    store.put(SHARED_KEY, values[0])
    context = multiprocessing.get_context("spawn")
    with context.Pool(7) as pool:
        writers = [pool.apply_async(_overwrite, (store, values[i::2], 2.0)) for i in range(2)]
        readers = [pool.apply_async(_read, (store, values, 2.0)) for _ in range(4)]
        observer = pool.apply_async(_observe, (server.url, namespace, 2.0))
        writes = sum(result.get(60) for result in writers)
        outcomes = [result.get(60) for result in readers]
        checks, violations = observer.get(60)
    assert checks > 50
    assert violations == 0, "a current manifest pointed to missing parts"
    reads = sum(outcome[0] for outcome in outcomes)
    hits = sum(outcome[1] for outcome in outcomes)
    assert writes > 50 and reads > 50
    assert sum(outcome[2] for outcome in outcomes) == 0, "a reader saw a value never written"
    assert sum(outcome[3] for outcome in outcomes) == 0, "a reader saw a mixed entry"
    # A miss needs two overwrites during one read (about 1% here); the bound is loose so that a
    # busy machine, which stretches reads, cannot make it flaky.
    assert hits >= 0.5 * reads, (hits, reads)
    final = store.get(SHARED_KEY)
    assert final in values
    # Every replaced value's parts were deleted: only the final manifest's parts remain.
    remaining = part_keys(raw, namespace)
    assert len({name.rsplit(b":", 2)[1] for name in remaining}) == 1
    assert len(remaining) == -(-(len(final or b"") + frame_overhead(namespace)) // PART)


def _child_uses_store(store: RedisStore, key: str, rounds: int) -> None:
    for i in range(rounds):
        value = f"child {i}".encode() * 50
        store.put(key, value)
        if store.get(key) != value:
            os._exit(1)
    os._exit(0 if store.stats().errors == 0 else 2)


def test_a_store_survives_fork_in_parent_and_child(store: RedisStore) -> None:
    big_value = big(1)
    store.put("parent", big_value)
    assert store.get("parent") == big_value  # the pool now holds a live connection
    child = multiprocessing.get_context("fork").Process(
        target=_child_uses_store, args=(store, "child", 300)
    )
    child.start()
    # Parent and child work at once: a socket shared across the fork would interleave replies.
    for i in range(300):
        value = f"parent {i}".encode() * 50
        store.put("parent", value)
        assert store.get("parent") == value
    child.join(30)
    assert child.exitcode == 0
    assert store.get("child") == b"child 299" * 50
    assert store.stats().errors == 0


def test_a_pickled_store_keeps_its_settings(
    make_store: Callable[..., RedisStore], namespace: str
) -> None:
    store = make_store(ttl=60, name="remote")
    store.put("k", big(1))
    copy = pickle.loads(pickle.dumps(store))
    try:
        assert (copy.name, copy.get("k")) == ("remote", store.get("k"))
        assert copy._px == 60_000 and copy._part_size == PART
    finally:
        copy.close()


# -- a failing server ---------------------------------------------------------------------


def timed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_a_killed_server_fails_open_and_the_breaker_stops_calling_it(
    own_server: RedisServer,
) -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=5.0, clock=clock)
    timeout = 0.5
    store = RedisStore(own_server.url, timeout=timeout, part_size=PART, breaker=breaker)
    store.put("k", b"before")
    assert store.get("k") == b"before"
    own_server.kill()

    for call, expected in [
        (lambda: store.get("k"), None),
        (lambda: store.put("k", big(1)), None),
        (lambda: store.insert("new", b"v"), False),
    ]:
        result, elapsed = timed(call)
        assert result == expected
        assert elapsed < timeout * 2 + 0.5
    assert breaker.state == "open"
    stats = store.stats()
    assert (stats.errors, stats.misses, stats.write_skips) == (3, 1, 2)

    # Open: nothing reaches the network, so a hundred calls cost almost nothing.
    start = time.monotonic()
    for _ in range(25):
        assert store.get("k") is None
        store.put("k", b"v")
        assert store.insert("k", b"v") is False
        assert store.delete("k") is False
    assert time.monotonic() - start < 0.1
    stats = store.stats()
    assert (stats.errors, stats.misses, stats.write_skips) == (103, 26, 52)

    own_server.start()  # same port, empty
    raw = redis.Redis.from_url(own_server.url)
    store.put("k", b"skipped")  # still open: the restarted server is not asked
    assert raw.exists("compilecache:k") == 0

    clock.now += 5.0  # cooldown over: the next call is the probe
    assert breaker.state == "half-open"
    store.put("k", b"after")
    assert breaker.state == "closed"
    assert store.get("k") == b"after"
    assert raw.get("compilecache:k") is not None
    raw.close()
    store.close()


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_a_frozen_server_costs_about_the_timeout_per_call(own_server: RedisServer) -> None:
    timeout = 0.3
    breaker = CircuitBreaker(failure_threshold=2, cooldown=60)
    store = RedisStore(own_server.url, timeout=timeout, breaker=breaker)
    store.put("k", b"v")  # a pooled connection exists
    own_server.pause()
    try:
        for call in (lambda: store.get("k"), lambda: store.put("k", b"w")):
            _, elapsed = timed(call)
            # It waited for the reply (the kernel accepted the connection) but not for long.
            assert timeout * 0.8 < elapsed < timeout * 2 + 0.5
        assert breaker.state == "open"
        _, elapsed = timed(lambda: store.get("k"))
        assert elapsed < 0.05
    finally:
        own_server.resume()
    store.close()


@pytest.mark.slow
@pytest.mark.timeout(30)
def test_calls_succeed_again_after_a_restart_and_the_cooldown(own_server: RedisServer) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=0.2)
    store = RedisStore(own_server.url, timeout=0.5, breaker=breaker)
    own_server.kill()
    assert store.get("k") is None and store.insert("k", b"v") is False
    assert breaker.state == "open"
    own_server.start()
    time.sleep(0.25)
    assert store.insert("k", b"back") is True
    assert store.get("k") == b"back"
    assert breaker.state == "closed"
    store.close()


@pytest.mark.timeout(30)
def test_strict_raises_backend_errors(own_server: RedisServer) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    store = RedisStore(own_server.url, strict=True, breaker=breaker, name="remote")
    store.put("k", b"v")
    own_server.kill()
    with pytest.raises(BackendError) as info:
        store.get("k")
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    assert (info.value.key, info.value.tier) == ("k", "remote")
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"v"),
        lambda: store.insert("k", b"v"),
        lambda: store.delete("k"),
        lambda: list(store.keys()),
    ):
        with pytest.raises(BackendError, match="circuit breaker is open"):
            call()
    assert store.stats().errors == 6
    store.close()


def test_fail_open_calls_on_an_unreachable_server(make_store: Callable[..., RedisStore]) -> None:
    # Port 1 on loopback refuses at once; a fresh breaker lets the first three calls try.
    store = make_store(url="redis://127.0.0.1:1/0")
    assert store.get_many(["a", "b"]) == {}
    store.put_many({"a": b"1", "b": big(1)})
    assert list(store.keys()) == []
    assert "a" not in store
    stats = store.stats()
    assert (stats.misses, stats.write_skips, stats.hits, stats.writes) == (2, 2, 0, 0)
    assert stats.errors == 5


# -- construction -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"url": "http://localhost:6379"}, "url"),
        ({"url": "localhost:6379"}, "url"),
        ({"url": b"redis://localhost"}, "url"),
        ({"url": "redis://localhost:notaport"}, "url"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": "a:b"}, "namespace"),
        ({"namespace": "a*"}, "namespace"),
        ({"namespace": "x" * 101}, "namespace"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": -5}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"ttl": "60"}, "ttl"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"part_size": 1023}, "part_size"),
        ({"part_size": 4096.0}, "part_size"),
        ({"part_size": 1 << 30}, "part_size"),
    ],
)
def test_bad_arguments_raise_config_error_naming_them(
    options: dict[str, Any], setting: str
) -> None:
    url = options.pop("url", "redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match=setting) as info:
        RedisStore(url, **options)
    assert info.value.setting == setting
    assert isinstance(info.value, ValueError)


def test_construction_does_not_contact_the_server() -> None:
    _, elapsed = timed(lambda: RedisStore("redis://10.255.255.1:6379/0", timeout=5))
    assert elapsed < 0.5
    for url in ("rediss://localhost:6380/0", "unix:///tmp/redis.sock?db=1"):
        RedisStore(url).close()


def test_keys_and_values_are_checked(store: RedisStore) -> None:
    with pytest.raises(InvalidKeyError):
        store.put("two words", b"v")
    with pytest.raises(CacheTypeError):
        store.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(CacheTypeError):
        store.put_many({"k": 1})  # type: ignore[dict-item]
    assert store.stats().writes == 0


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_package_does_not_import_redis() -> None:
    result = _run(
        "import sys, compilecache, compilecache.stores, compilecache.stores._redis\n"
        "assert 'redis' not in sys.modules, 'redis was imported'\n"
    )
    assert result.returncode == 0, result.stderr


def test_missing_redis_py_is_a_usage_error_with_the_install_hint() -> None:
    result = _run(
        "import sys\n"
        "sys.modules['redis'] = None  # makes 'import redis' raise ImportError\n"
        "from compilecache.stores._redis import RedisStore\n"
        "from compilecache import CacheUsageError\n"
        "try:\n"
        "    RedisStore('redis://127.0.0.1:6379/0')\n"
        "except CacheUsageError as error:\n"
        "    print(error)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'compilecache[redis]'" in result.stdout
    assert issubclass(CacheUsageError, ValueError)

"""Artifacts through a shared Redis tier (a real redis-server): machines share compiles."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from artifactbackend import FileLoggedBackend, compiles
from compilecache._locks import RedisLock
from compilecache.artifacts import ArtifactHooks
from compilecache.dispatch import jit, reset
from compilecache.stores import DiskStore, RedisStore, TieredStore

pytestmark = pytest.mark.redis


def machine(root: Path, url: str) -> ArtifactHooks:
    """One machine's view: its own disk, the shared Redis tier."""
    store = TieredStore([DiskStore(root), RedisStore(url, namespace="artifacts")])
    return ArtifactHooks(store, lock_timeout=10)


def test_a_compile_on_one_machine_is_loaded_on_another(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "shared_fn.py").write_text(
        textwrap.dedent(
            """
            def area(w, h):
                return w * h
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import shared_fn  # type: ignore[import-not-found]

        log = str(tmp_path / "log")
        first = machine(tmp_path / "a", redis_url)
        f = jit(shared_fn.area, backend=FileLoggedBackend(log), hooks=first)
        assert f(3, 4) == ("compiled", 12)
        reset()
        second = machine(tmp_path / "b", redis_url)
        g = jit(shared_fn.area, backend=FileLoggedBackend(log), hooks=second)
        assert g(3, 4) == ("loaded", 12)
        assert compiles(log) == 1
        assert second.stats.loaded == 1
        # Machine b's disk now holds the entry too (backfilled from Redis).
        assert any(k.startswith("cc1/m/") for k in DiskStore(tmp_path / "b").keys())
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("shared_fn", None)


def test_redis_lock_excludes_releases_and_expires(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    first = RedisLock(client, "lock-test", ttl=0.5)
    second = RedisLock(client, "lock-test", ttl=0.5)
    assert first.acquire(timeout=1)
    assert not second.acquire(timeout=0.1)
    first.release()
    assert second.acquire(timeout=1)
    # The holder "dies" (never releases): the lock expires and a third owner takes it.
    third = RedisLock(client, "lock-test", ttl=5)
    started = time.monotonic()
    assert third.acquire(timeout=5)
    assert time.monotonic() - started < 2
    second.release()  # an expired owner's release must not free the new owner's lock
    assert third.held() and client.get("lock-test") is not None
    third.release()
    assert not third.held()


@pytest.mark.slow
def test_three_machines_starting_cold_compile_once(tmp_path: Path, redis_url: str) -> None:
    """Three processes, each with its own disk store (a machine), one Redis tier: the Redis lock
    lets one compile while the others wait and load its artifact."""
    (tmp_path / "userpkg.py").write_text("def cube(x):\n    return x ** 3\n")
    log = tmp_path / "log"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(tmp_path)!r}]
        import compilecache
        from artifactbackend import FileLoggedBackend
        import userpkg
        f = compilecache.jit(userpkg.cube, backend=FileLoggedBackend({str(log)!r}, delay=1.5))
        print(f(3)[0])
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env={
                **os.environ,
                "COMPILECACHE_DIR": str(tmp_path / f"machine-{i}"),
                "COMPILECACHE_REMOTE": redis_url,
                "COMPILECACHE_REMOTE_UNSIGNED": "1",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    assert compiles(str(log)) == 1, log.read_text()
    assert sorted(outputs) == ["compiled", "loaded", "loaded"]


@pytest.mark.parametrize("policy", ["local-only", "local-then-remote"])
def test_per_tier_admission_keeps_the_write_policy(
    tmp_path: Path, redis_url: str, policy: str
) -> None:
    """Per-tier admission once wrote every admitting tier directly: a LOCAL_ONLY remote was
    written, and LOCAL_THEN_REMOTE remote writes were synchronous. Now the tiered store
    writes, by its policy."""
    from compilecache.artifacts import Admission

    (tmp_path / "policy_fn.py").write_text("def volume(w, h):\n    return w * h * 2\n")
    namespace = f"policy-{policy}"
    remote = RedisStore(redis_url, namespace=namespace)
    store = TieredStore([DiskStore(tmp_path / "disk"), remote], write_policy=policy)
    hooks = ArtifactHooks(store, admission={"disk": Admission(), remote.name: Admission()})
    sys.path.insert(0, str(tmp_path))
    try:
        import policy_fn  # type: ignore[import-not-found]

        f = jit(policy_fn.volume, backend=FileLoggedBackend(str(tmp_path / "log")), hooks=hooks)
        assert f(3, 4) == ("compiled", 24)
        assert store.flush(10)
        assert any(k.startswith("cc1/m/") for k in DiskStore(tmp_path / "disk").keys())
        published = [k for k in remote.keys() if k.startswith("cc1/m/")]
        assert bool(published) == (policy == "local-then-remote"), published
        if policy == "local-then-remote":
            assert store.stats().tiers[1].writes >= 2  # manifest and artifact, from the queue
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("policy_fn", None)
        reset()


def test_a_redis_lease_is_renewed_while_kept_and_expires_once_stopped(redis_url: str) -> None:
    from compilecache._locks import LeaseKeeper

    client = redis.Redis.from_url(redis_url)
    holder = RedisLock(client, "lease-test", ttl=0.3)
    other = RedisLock(client, "lease-test", ttl=0.3)
    assert holder.acquire(timeout=1)
    keeper = LeaseKeeper(holder)
    time.sleep(1.0)  # three TTLs
    assert not other.acquire(timeout=0)
    keeper.stop()
    assert other.acquire(timeout=2)
    assert not holder.renew()  # the key is another owner's now: left alone
    assert client.get("lease-test") == other._token.encode()
    other.release()

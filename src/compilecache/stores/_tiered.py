"""A store made of stores: fastest first, each slower tier a fallback and a backfill source."""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from .._errors import BackendError, ConfigError
from ._base import BaseStore, LockFactory, check_value
from ._keys import check_key
from ._stats import StoreStats
from ._write_behind import WriteBehindQueue

if TYPE_CHECKING:
    from pathlib import Path

    from ._maintenance import Maintenance

logger = logging.getLogger("compilecache.store.tiered")


class WritePolicy(enum.Enum):
    """Which tiers a write reaches, and when.

    ``ALL``: every tier, synchronously. ``LOCAL_THEN_REMOTE``: local tiers synchronously, remote
    tiers (``store.remote`` is True) from a bounded background queue. ``LOCAL_ONLY``: local tiers
    only; remote tiers are read but never written.
    """

    ALL = "all"
    LOCAL_THEN_REMOTE = "local-then-remote"
    LOCAL_ONLY = "local-only"


class TieredStore(BaseStore):
    """Reads ``tiers`` fastest first; a hit in a slower tier is copied into the faster ones.

    Writes follow ``write_policy``. ``insert`` inserts into every tier the policy writes and
    returns True if any of them accepted the value. A tier's failure is that tier's counted miss
    or skipped write; the tiered store keeps serving from the others. ``stats().tiers`` holds
    each tier's stats, fastest first.

    >>> from compilecache.stores import MemoryStore
    >>> fast, slow = MemoryStore(), MemoryStore()
    >>> slow.put("k", b"v")
    >>> TieredStore([fast, slow]).get("k"), fast.get("k")
    (b'v', b'v')
    """

    name = "tiered"

    def __init__(
        self,
        tiers: Sequence[BaseStore],
        *,
        write_policy: WritePolicy | str = WritePolicy.ALL,
        queue_size: int = 1024,
        name: str | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(name=name, strict=strict)
        if not tiers:
            raise ConfigError("TieredStore needs at least one tier")
        try:
            self.write_policy = WritePolicy(write_policy)
        except ValueError:
            choices = ", ".join(p.value for p in WritePolicy)
            raise ConfigError(
                f"TieredStore: unknown write_policy {write_policy!r}; use one of {choices}"
            ) from None
        self.tiers = tuple(tiers)
        self.remote = any(tier.remote for tier in self.tiers)
        self._background = WriteBehindQueue(self._counters, maxsize=queue_size, name=self.name)
        policy = self.write_policy
        # A read-only tier is written synchronously: its writes are counted skips, and queueing
        # them would only start a background thread for nothing.
        self._sync_tiers = tuple(
            t for t in self.tiers if policy is WritePolicy.ALL or not t.remote or t.read_only
        )
        self._async_tiers = tuple(
            t
            for t in self.tiers
            if policy is WritePolicy.LOCAL_THEN_REMOTE and t.remote and not t.read_only
        )

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        check_key(key)
        for depth, tier in enumerate(self.tiers):
            value = self._tier_get(tier, key)
            if value is not None:
                self._counters.hit(len(value))
                for faster in self.tiers[:depth]:
                    self._tier_write(faster, "insert", key, value)
                return value
        self._counters.miss()
        return None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        found: dict[str, bytes] = {}
        for depth, tier in enumerate(self.tiers):
            missing = [k for k in wanted if k not in found]
            if not missing:
                break
            try:
                got = tier.get_many(missing)
            except BackendError as error:
                self._tier_failed(tier, "get_many", error)
                continue
            for key, value in got.items():
                found[key] = value
                for faster in self.tiers[:depth]:
                    self._tier_write(faster, "insert", key, value)
        for value in found.values():
            self._counters.hit(len(value))
        self._counters.add("misses", len(wanted) - len(found))
        return found

    def __contains__(self, key: object) -> bool:
        key = check_key(key)
        for tier in self.tiers:
            try:
                if key in tier:
                    return True
            except BackendError as error:
                self._tier_failed(tier, "contains", error)
        return False

    def keys(self) -> Iterator[str]:
        seen: set[str] = set()
        for tier in self.tiers:
            try:
                for key in tier.keys():
                    if key not in seen:
                        seen.add(key)
                        yield key
            except BackendError as error:
                self._tier_failed(tier, "keys", error)

    # -- writes --------------------------------------------------------------------------
    def insert(self, key: str, value: bytes) -> bool:
        check_key(key)
        value = check_value(value)
        accepted = False
        for tier in self._sync_tiers:
            accepted = bool(self._tier_write(tier, "insert", key, value)) or accepted
        for tier in self._async_tiers:
            accepted = self._background.submit(_job(tier, "insert", key, value)) or accepted
        if accepted:
            self._counters.wrote(len(value))
        return accepted

    def put(self, key: str, value: bytes) -> None:
        check_key(key)
        value = check_value(value)
        for tier in self._sync_tiers:
            self._tier_write(tier, "put", key, value)
        for tier in self._async_tiers:
            self._background.submit(_job(tier, "put", key, value))
        self._counters.wrote(len(value))

    def put_to(self, names: Collection[str], key: str, value: bytes) -> bool:
        """``put`` into only the tiers named ``names``, by the write policy still (a
        ``LOCAL_ONLY`` remote tier is not written; a ``LOCAL_THEN_REMOTE`` one from the
        queue). Returns whether any tier was written or queued."""
        check_key(key)
        value = check_value(value)
        wanted = set(names)
        written = False
        for tier in self._sync_tiers:
            if tier.name in wanted:
                self._tier_write(tier, "put", key, value)
                written = True
        for tier in self._async_tiers:
            if tier.name in wanted:
                written = self._background.submit(_job(tier, "put", key, value)) or written
        if written:
            self._counters.wrote(len(value))
        return written

    def put_many(self, items: Mapping[str, bytes]) -> None:
        checked = {check_key(k): check_value(v) for k, v in items.items()}
        for tier in self._sync_tiers:
            try:
                tier.put_many(checked)
            except BackendError as error:
                self._tier_failed(tier, "put_many", error)
        for tier in self._async_tiers:
            self._background.submit(functools.partial(tier.put_many, checked))
        for value in checked.values():
            self._counters.wrote(len(value))

    def delete(self, key: str) -> bool:
        """Delete from the tiers the policy writes; returns whether a synchronous tier held it.
        Background tiers get the delete through their queue, after any queued write of the key
        (deleting directly could be undone by an older queued put)."""
        check_key(key)
        removed = False
        for tier in self._sync_tiers:
            removed = bool(self._tier_write(tier, "delete", key, None)) or removed
        for tier in self._async_tiers:
            self._background.submit(_job(tier, "delete", key, None))
        return removed

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for background writes to finish, then flush each tier; return whether they
        all did in time."""
        done = self._background.flush(timeout)
        for tier in self.tiers:
            done = tier.flush(timeout) and done
        return done

    # -- capabilities: the tiers' ------------------------------------------------------
    def layers(self, *, writable: bool = False) -> tuple[BaseStore, ...]:
        return tuple(layer for tier in self.tiers for layer in tier.layers(writable=writable))

    @property
    def read_only(self) -> bool:
        return all(tier.read_only for tier in self.tiers)

    @property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(tier.name for tier in self.tiers)

    def lock_factory(self, ttl: float, *, shared: bool = True) -> LockFactory | None:
        """A remote tier's locks first (they span machines), else the first tier's that
        offers any."""
        ordered = [t for t in self.tiers if t.remote] + [t for t in self.tiers if not t.remote]
        for tier in ordered:
            found = tier.lock_factory(ttl, shared=shared)
            if found is not None:
                return found
        return None

    def tier_counters(self) -> dict[str, dict[str, int]]:
        merged: dict[str, dict[str, int]] = {}
        for tier in self.tiers:
            merged.update(tier.tier_counters())
        return merged

    def local_directory(self) -> Path | None:
        """The first writable local tier's (telemetry never goes to a shared tier), the one
        :meth:`maintenance` picks too."""
        for tier in self.tiers:
            if not tier.remote and not tier.read_only:
                found = tier.local_directory()
                if found is not None:
                    return found
        return None

    def maintenance(self) -> Maintenance | None:
        """The first writable local tier's handle, else a read-only one's (a remote tier is
        shared: maintenance leaves it)."""
        local = [tier for tier in self.tiers if not tier.remote]
        for tier in sorted(local, key=lambda t: t.read_only):  # stable: writable ones first
            found = tier.maintenance()
            if found is not None:
                return found
        return None

    def stats(self) -> StoreStats:
        tiers = tuple(tier.stats() for tier in self.tiers)
        return self._counters.snapshot(
            self.name, entries=tiers[0].entries, size=tiers[0].size, tiers=tiers
        )

    def close(self) -> None:
        """Flush background writes, then close every tier."""
        self._background.close()
        for tier in self.tiers:
            tier.close()

    # -- helpers -------------------------------------------------------------------------
    def _tier_get(self, tier: BaseStore, key: str) -> bytes | None:
        try:
            return tier.get(key)
        except BackendError as error:
            self._tier_failed(tier, "get", error)
            return None

    def _tier_write(
        self, tier: BaseStore, operation: str, key: str, value: bytes | None
    ) -> bool | None:
        try:
            return _job(tier, operation, key, value)()
        except BackendError as error:
            self._tier_failed(tier, operation, error)
            return False

    def _tier_failed(self, tier: BaseStore, operation: str, error: BackendError) -> None:
        # A strict tier raised: the tiered store still fails open unless it is strict itself.
        self._backend_failed(f"{operation} on tier {tier.name}", error.key, error)


def _job(
    tier: BaseStore, operation: str, key: str, value: bytes | None
) -> Callable[[], bool | None]:
    """The write ``operation`` of ``key`` on ``tier`` as a call to make now or in the background."""
    if operation == "delete":
        return lambda: tier.delete(key)
    assert value is not None
    if operation == "insert":
        return lambda: tier.insert(key, value)
    return lambda: tier.put(key, value)

"""A wrapper that turns any store into a read-only view of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from ._base import BaseStore, LockFactory, check_value
from ._keys import check_key
from ._stats import StoreStats
from ._wrapper import WrappingStore

if TYPE_CHECKING:
    from pathlib import Path

    from ._maintenance import Maintenance


class ReadOnly(WrappingStore):
    """Reads go to ``store``; writes are skipped and counted, never raised.

    For consumers of a shared cache (CI runners, inference replicas) that must not change it.
    ``insert`` returns False and ``delete`` returns False, as if the write lost a race.

    >>> from compilecache.stores import MemoryStore
    >>> inner = MemoryStore(); inner.put("k", b"v")
    >>> view = ReadOnly(inner)
    >>> view.put("k", b"w"); view.get("k")
    b'v'
    """

    def __init__(self, store: BaseStore, *, name: str | None = None) -> None:
        super().__init__(store, name=name or f"read-only {store.name}")

    def insert(self, key: str, value: bytes) -> bool:
        check_key(key)
        check_value(value)
        self._counters.add("write_skips")
        return False

    def put(self, key: str, value: bytes) -> None:
        check_key(key)
        check_value(value)
        self._counters.add("write_skips")

    def put_many(self, items: Mapping[str, bytes]) -> None:
        for key, value in items.items():
            self.put(key, value)

    def delete(self, key: str) -> bool:
        check_key(key)
        self._counters.add("write_skips")
        return False

    def stats(self) -> StoreStats:
        inner = self.inner.stats()
        skips = self._counters.snapshot(self.name).write_skips
        return dataclasses.replace(inner, name=self.name, write_skips=skips)

    # -- capabilities: the inner store's, with nothing writable ---------------------------
    def layers(self, *, writable: bool = False) -> tuple[BaseStore, ...]:
        return () if writable else self.inner.layers()

    @property
    def read_only(self) -> bool:
        return True

    def lock_factory(self, ttl: float, *, shared: bool = True) -> LockFactory | None:
        """Only the inner store's unshared locks: a read-only consumer of a shared store
        writes nothing there, not even a lock."""
        return self.inner.lock_factory(ttl, shared=False)

    def put_to(self, names: Collection[str], key: str, value: bytes) -> bool:
        self.put(key, value)
        return False

    def local_directory(self) -> Path | None:
        return None  # nothing is written into a read-only store's directory

    def maintenance(self) -> Maintenance | None:
        found = self.inner.maintenance()
        return None if found is None else found.read_only()

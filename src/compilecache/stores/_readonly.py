"""A wrapper that turns any store into a read-only view of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping

from ._base import BaseStore, check_value
from ._keys import check_key
from ._stats import StoreStats


class ReadOnly(BaseStore):
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
        super().__init__(name=name or f"read-only {store.name}")
        self.inner = store

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return self.inner.get_many(keys)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def keys(self) -> Iterator[str]:
        return self.inner.keys()

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

    def close(self) -> None:
        self.inner.close()

"""The store used when caching is disabled: it holds nothing."""

from __future__ import annotations

from collections.abc import Iterator

from ._base import BaseStore, check_value
from ._keys import check_key
from ._stats import StoreStats


class NullStore(BaseStore):
    """Every read misses, every write is skipped (``COMPILECACHE_DISABLE=1``)."""

    name = "disabled"

    def get(self, key: str) -> bytes | None:
        check_key(key)
        self._counters.miss()
        return None

    def insert(self, key: str, value: bytes) -> bool:
        check_key(key)
        check_value(value)
        self._counters.add("write_skips")
        return False

    def put(self, key: str, value: bytes) -> None:
        self.insert(key, value)

    def delete(self, key: str) -> bool:
        check_key(key)
        return False

    def keys(self) -> Iterator[str]:
        return iter(())

    def stats(self) -> StoreStats:
        return self._counters.snapshot(self.name, entries=0, size=0)

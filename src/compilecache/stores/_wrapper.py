"""The base of stores that wrap one other store (codecs, read-only views, your own).

:class:`WrappingStore` passes every call, capabilities included, to ``inner``; a wrapper
overrides only what it changes. A new wrapper written on it works with everything above the
storage layer (admission, locks, telemetry, verify, prune) without changes there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from ._base import BaseStore, LockFactory
from ._stats import StoreStats

if TYPE_CHECKING:
    from pathlib import Path

    from ._maintenance import Maintenance


class WrappingStore(BaseStore):
    """A store that is ``inner`` seen through something: every call goes to ``inner``.

    >>> from compilecache.stores import MemoryStore
    >>> wrapped = WrappingStore(MemoryStore(name="memory"))
    >>> wrapped.put("k", b"v"); wrapped.get("k"), wrapped.layers()
    (b'v', (<MemoryStore 'memory'>,))
    """

    def __init__(self, store: BaseStore, *, name: str | None = None) -> None:
        super().__init__(name=name or store.name)
        self.inner = store
        self.remote = store.remote

    # -- the store contract ----------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return self.inner.get_many(keys)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def keys(self) -> Iterator[str]:
        return self.inner.keys()

    def insert(self, key: str, value: bytes) -> bool:
        return self.inner.insert(key, value)

    def put(self, key: str, value: bytes) -> None:
        self.inner.put(key, value)

    def put_many(self, items: Mapping[str, bytes]) -> None:
        self.inner.put_many(items)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def stats(self) -> StoreStats:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()

    # -- capabilities ----------------------------------------------------------------------
    def layers(self, *, writable: bool = False) -> tuple[BaseStore, ...]:
        return self.inner.layers(writable=writable)

    @property
    def read_only(self) -> bool:
        return self.inner.read_only

    @property
    def tier_names(self) -> tuple[str, ...]:
        return self.inner.tier_names

    def flush(self, timeout: float | None = None) -> bool:
        return self.inner.flush(timeout)

    def lock_factory(self, ttl: float, *, shared: bool = True) -> LockFactory | None:
        return self.inner.lock_factory(ttl, shared=shared)

    def put_to(self, names: Collection[str], key: str, value: bytes) -> bool:
        return self.inner.put_to(names, key, value)

    def tier_counters(self) -> dict[str, dict[str, int]]:
        return self.inner.tier_counters()

    def local_directory(self) -> Path | None:
        return self.inner.local_directory()

    def maintenance(self) -> Maintenance | None:
        return self.inner.maintenance()

"""An in-process store with optional LRU bounds."""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from .._errors import CacheUsageError, SeedFormatError
from ._base import BaseStore, check_value
from ._keys import check_key
from ._seed import parse_seed
from ._stats import StoreStats


class MemoryStore(BaseStore):
    """A thread-safe dict of ``str`` to ``bytes`` with least-recently-used eviction.

    ``max_entries`` and ``max_bytes`` (sum of value lengths) bound it; ``None`` means unbounded.
    A value larger than ``max_bytes`` on its own is not stored (counted as a write skip).

    >>> store = MemoryStore(max_entries=2)
    >>> store.put("a", b"1"); store.put("b", b"2"); store.put("c", b"3")
    >>> sorted(store)
    ['b', 'c']
    """

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        for setting, bound in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if bound is not None and (type(bound) is not int or bound <= 0):
                raise CacheUsageError(f"MemoryStore: {setting} must be a positive int or None")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bounded = max_entries is not None or max_bytes is not None
        self._hit_sizes = self._counters.hit_sizes
        if not getattr(sys, "_is_gil_enabled", lambda: True)():
            self.get = self._get_locked  # type: ignore[method-assign]
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @classmethod
    def from_env_var(cls, name: str, **options: int | str | None) -> MemoryStore:
        """A store pre-populated from the seed (see :mod:`._seed`) in environment variable
        ``name``; unset or empty means empty. Raises :class:`SeedFormatError` naming it."""
        store = cls(**options)  # type: ignore[arg-type]
        store.put_many(parse_seed(os.environ.get(name, ""), f"environment variable {name}"))
        return store

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: int | str | None) -> MemoryStore:
        """A store pre-populated from the seed file at ``path``; a missing or empty file means
        empty. Raises :class:`SeedFormatError` naming the file for bad JSON, base64 or UTF-8."""
        file = Path(path)
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            raw = b""
        source = f"seed file {str(file)!r}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SeedFormatError(
                f"{source}: not UTF-8 text (byte {error.start}); seed files are JSON",
                setting=str(file),
            ) from None
        store = cls(**options)  # type: ignore[arg-type]
        store.put_many(parse_seed(text, source))
        return store

    def get(self, key: str) -> bytes | None:
        # The hit path takes no lock: with the GIL, OrderedDict.get and move_to_end are each
        # atomic, and Counters.hit records without a lock.
        # Only valid keys are ever stored, so a found key needs no validation: check_key runs
        # on the miss path alone. Free-threaded builds take the lock (see __init__).
        if type(key) is not str:  # unhashable keys and str subclasses: the clear error
            check_key(key)
        value = self._data.get(key)
        if value is not None:
            if self._bounded:
                try:
                    self._data.move_to_end(key)
                except KeyError:  # evicted by another thread since the lookup: still a hit
                    pass
            # Counters.hit, inlined: this is the whole cost of a hit after the lookup.
            sizes = self._hit_sizes
            sizes.append(len(value))
            if len(sizes) > 4096:
                self._counters.fold()
            return value
        check_key(key)
        with self._lock:
            self._counters.misses += 1
        return None

    def _get_locked(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                if self._bounded:
                    self._data.move_to_end(key)
                self._counters.hit(len(value))
                return value
            self._counters.misses += 1
        check_key(key)
        return None

    def __contains__(self, key: object) -> bool:
        return check_key(key) in self._data

    def insert(self, key: str, value: bytes) -> bool:
        check_key(key)
        value = check_value(value)
        with self._lock:
            if key in self._data:
                return False
            return self._store(key, value)

    def put(self, key: str, value: bytes) -> None:
        check_key(key)
        value = check_value(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._store(key, value)

    def _store(self, key: str, value: bytes) -> bool:
        # Called with the lock held. Counter fields are bumped directly under this lock: the
        # store's own lock already serialises them, and Counters' lock would double the cost.
        if self._max_bytes is not None and len(value) > self._max_bytes:
            self._counters.write_skips += 1
            return False
        self._data[key] = value
        self._size += len(value)
        self._counters.writes += 1
        self._counters.bytes_written += len(value)
        while (self._max_entries is not None and len(self._data) > self._max_entries) or (
            self._max_bytes is not None and self._size > self._max_bytes
        ):
            # The entry just written is the most recent, so it is never the one evicted.
            _, evicted = self._data.popitem(last=False)
            self._size -= len(evicted)
            self._counters.evictions += 1
        return True

    def delete(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            old = self._data.pop(key, None)
            if old is None:
                return False
            self._size -= len(old)
            return True

    def keys(self) -> Iterator[str]:
        with self._lock:
            snapshot = list(self._data)
        return iter(snapshot)

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._data.clear()
            self._size = 0

    def stats(self) -> StoreStats:
        with self._lock:
            entries, size = len(self._data), self._size
            # Counters are only touched under self._lock here, so the snapshot is consistent.
            return self._counters.snapshot(self.name, entries=entries, size=size)

"""A store wrapper that passes every value through a chain of codecs."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .._errors import CorruptEntryError, RejectedEntryError
from .._ratelimit import RateLimitedLog
from ._base import BaseStore, check_value
from ._codecs import Codec
from ._keys import check_key
from ._stats import StoreStats
from ._wrapper import WrappingStore

if TYPE_CHECKING:
    from ._maintenance import Maintenance

logger = logging.getLogger("compilecache.store.codec")


class CodecStore(WrappingStore):
    """Encodes values with ``codecs`` (in order) on write, decodes in reverse on read.

    A value that fails to decode is never returned: a bad signature counts as ``rejected``,
    unreadable bytes as ``corrupt``; both are misses, logged (rate-limited). The entry is left
    in ``store``: a client with another secret must not erase what other clients read
    correctly; ``put`` replaces it.

    >>> from compilecache.stores import MemoryStore, Signing
    >>> inner = MemoryStore()
    >>> signed = CodecStore(inner, [Signing(b"0123456789abcdef")])
    >>> signed.put("k", b"v")
    >>> inner.put("k", b"forged")
    >>> signed.get("k") is None, signed.stats().rejected
    (True, 1)
    """

    def __init__(
        self, store: BaseStore, codecs: Sequence[Codec], *, name: str | None = None
    ) -> None:
        super().__init__(store, name=name)
        self.codecs = tuple(codecs)
        self._log = RateLimitedLog(logger, interval=300.0)

    def encode(self, key: str, value: bytes) -> bytes:
        """``value`` as this store writes it under ``key`` (through every codec)."""
        return self._encode(key, value)

    def _encode(self, key: str, value: bytes) -> bytes:
        for codec in self.codecs:
            value = codec.encode(key, value)
        return value

    def _decode(self, key: str, data: bytes) -> bytes | None:
        try:
            for codec in reversed(self.codecs):
                data = codec.decode(key, data)
        except (RejectedEntryError, CorruptEntryError) as error:
            rejected = isinstance(error, RejectedEntryError)
            self._counters.add("rejected" if rejected else "corrupt")
            self._log.log(
                logging.WARNING,
                f"{type(error).__name__}:{key}",
                "%s: refused entry %r: %s",
                self.name,
                key,
                error,
            )
            # The entry stays: a client with another secret, or without zstandard, must not
            # erase entries that other clients read correctly. A put replaces it.
            return None
        return data

    def get(self, key: str) -> bytes | None:
        data = self.inner.get(key)
        value = None if data is None else self._decode(key, data)
        if value is None:
            self._counters.miss()
        else:
            self._counters.hit(len(value))
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        for key, data in self.inner.get_many(wanted).items():
            value = self._decode(key, data)
            if value is not None:
                found[key] = value
                self._counters.hit(len(value))
        self._counters.add("misses", len(wanted) - len(found))
        return found

    def insert(self, key: str, value: bytes) -> bool:
        value = check_value(value)
        accepted = self.inner.insert(check_key(key), self._encode(key, value))
        if accepted:
            self._counters.wrote(len(value))
        return accepted

    def put(self, key: str, value: bytes) -> None:
        value = check_value(value)
        self.inner.put(check_key(key), self._encode(key, value))
        self._counters.wrote(len(value))

    def put_many(self, items: Mapping[str, bytes]) -> None:
        encoded = {check_key(k): self._encode(k, check_value(v)) for k, v in items.items()}
        self.inner.put_many(encoded)
        for value in items.values():
            self._counters.wrote(len(value))

    def stats(self) -> StoreStats:
        inner = self.inner.stats()
        own = self._counters.snapshot(self.name)
        # Hits and misses are the caller's view (after decoding); sizes and tiers are the inner
        # store's, since only it knows what it holds.
        return dataclasses.replace(
            inner,
            name=self.name,
            hits=own.hits,
            misses=own.misses,
            rejected=own.rejected + inner.rejected,
            corrupt=own.corrupt + inner.corrupt,
            bytes_read=own.bytes_read,
        )

    # -- capabilities: the inner store's, seen through the codecs -------------------------
    def put_to(self, names: Collection[str], key: str, value: bytes) -> bool:
        value = check_value(value)
        written = self.inner.put_to(names, check_key(key), self._encode(key, value))
        if written:
            self._counters.wrote(len(value))
        return written

    def tier_counters(self) -> dict[str, dict[str, int]]:
        """Over one tier, that tier's counters with this store's view of reads (hits after
        decoding, refusals); over several, this store's own counts under its own name."""
        inner = self.inner.tier_counters()
        own = self._counters.peek()
        if len(inner) == 1:
            ((name, values),) = inner.items()
            values = dict(values)
            for field in ("hits", "misses", "bytes_read"):
                values[field] = own[field]
            values["rejected"] += own["rejected"]
            values["corrupt"] += own["corrupt"]
            return {name: values}
        inner[self.name] = own
        return inner

    def maintenance(self) -> Maintenance | None:
        found = self.inner.maintenance()
        return None if found is None else found.through(self.codecs)

"""Counters kept by every store and the snapshot they report."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class StoreStats:
    """A snapshot of one store's counters since it was created (this process only).

    ``entries`` and ``size`` describe what the store holds now; ``None`` means the backend cannot
    tell cheaply (a shared Redis namespace). ``rejected`` counts entries refused for a bad
    signature; ``corrupt`` counts entries that failed their frame checks (both are also misses).
    ``tiers`` holds the stats of a tiered store's tiers, fastest first.
    """

    name: str
    hits: int = 0
    misses: int = 0
    errors: int = 0
    rejected: int = 0
    corrupt: int = 0
    writes: int = 0
    write_skips: int = 0
    evictions: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    entries: int | None = None
    size: int | None = None
    tiers: tuple[StoreStats, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """The snapshot as plain JSON-ready data."""
        return asdict(self)


class Counters:
    """Thread-safe counters behind :class:`StoreStats`.

    Increments take a lock: ``+=`` on an attribute is not atomic across threads, and a lost count
    would make stats lie exactly when they matter (under contention). Hits, the hot path, take
    none: they append to ``hit_sizes``, which :meth:`fold` sums into the totals.
    """

    __slots__ = (
        "_lock",
        "bytes_read",
        "bytes_written",
        "corrupt",
        "errors",
        "evictions",
        "hit_sizes",
        "hits",
        "misses",
        "rejected",
        "write_skips",
        "writes",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hit_sizes: list[int] = []
        self.hits = self.misses = self.errors = self.rejected = self.corrupt = 0
        self.writes = self.write_skips = self.evictions = 0
        self.bytes_read = self.bytes_written = 0

    #: sizes of hits not yet folded into ``hits``/``bytes_read``; stores may append to it
    #: directly (the list object never changes)
    hit_sizes: list[int]

    def hit(self, nbytes: int) -> None:
        # Hits are the hot path: appending to a list is atomic (with or without the GIL) and
        # needs no lock; fold() sums a prefix and deletes exactly that prefix, so no concurrent
        # append is lost.
        sizes = self.hit_sizes
        sizes.append(nbytes)
        if len(sizes) > 4096:
            self.fold()

    def fold(self) -> None:
        """Move recorded hits into the totals."""
        with self._lock:
            sizes = self.hit_sizes
            count = len(sizes)
            total = sum(sizes[:count])
            del sizes[:count]
            self.hits += count
            self.bytes_read += total

    def miss(self) -> None:
        with self._lock:
            self.misses += 1

    def wrote(self, nbytes: int) -> None:
        with self._lock:
            self.writes += 1
            self.bytes_written += nbytes

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def peek(self) -> dict[str, int]:
        """The counters now, read without the lock (safe in a forked child, where the lock may
        be held by a thread that no longer exists); hits not folded yet are included."""
        sizes = list(self.hit_sizes)
        return {
            "hits": self.hits + len(sizes),
            "misses": self.misses,
            "errors": self.errors,
            "rejected": self.rejected,
            "corrupt": self.corrupt,
            "writes": self.writes,
            "evictions": self.evictions,
            "bytes_read": self.bytes_read + sum(sizes),
            "bytes_written": self.bytes_written,
        }

    def snapshot(
        self,
        name: str,
        *,
        entries: int | None = None,
        size: int | None = None,
        tiers: tuple[StoreStats, ...] = (),
    ) -> StoreStats:
        self.fold()
        with self._lock:
            return StoreStats(
                name=name,
                hits=self.hits,
                misses=self.misses,
                errors=self.errors,
                rejected=self.rejected,
                corrupt=self.corrupt,
                writes=self.writes,
                write_skips=self.write_skips,
                evictions=self.evictions,
                bytes_read=self.bytes_read,
                bytes_written=self.bytes_written,
                entries=entries,
                size=size,
                tiers=tiers,
            )

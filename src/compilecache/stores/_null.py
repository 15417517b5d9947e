"""The store used when caching is disabled: it holds nothing."""

from __future__ import annotations

from ._memory import MemoryStore
from ._readonly import ReadOnly


class NullStore(ReadOnly):
    """Every read misses, every write is skipped (``COMPILECACHE_DISABLE=1``, or no tier that
    can be trusted): a read-only view of a store that stays empty."""

    def __init__(self, *, name: str = "disabled") -> None:
        super().__init__(MemoryStore(), name=name)

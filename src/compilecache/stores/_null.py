"""The store used when caching is disabled: it holds nothing."""

from __future__ import annotations

from ._memory import MemoryStore
from ._readonly import ReadOnly


class NullStore(ReadOnly):
    """Every read misses, every write is skipped (``COMPILECACHE_DISABLE=1``): a read-only view
    of a store that stays empty."""

    def __init__(self) -> None:
        super().__init__(MemoryStore(), name="disabled")

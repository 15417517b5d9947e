"""In-memory tiers that write policies treat as remote, for tiered-store tests."""

from __future__ import annotations

import time

from compilecache.stores import MemoryStore


class RemoteMemory(MemoryStore):
    """A memory store that write policies treat as remote."""

    remote = True


class SlowRemote(RemoteMemory):
    """A remote tier whose writes take ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def put(self, key: str, value: bytes) -> None:
        time.sleep(self.delay)
        super().put(key, value)

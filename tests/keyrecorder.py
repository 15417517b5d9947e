"""Hooks for key tests: compute the key of each miss and never load."""

from __future__ import annotations

from typing import Any

from compilecache.artifacts import ArtifactHooks
from compilecache.dispatch import CompileRequest, LoadedEntry
from compilecache.keys import CacheKey
from compilecache.stores import MemoryStore


class KeyRecorder(ArtifactHooks):
    """Computes the key of each miss and never loads (so every call is keyed afresh)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(MemoryStore(), **options)
        self.keys: list[CacheKey | None] = []

    def load(self, request: CompileRequest) -> tuple[LoadedEntry, ...]:
        self.keys.append(self.key_of(request))
        return ()

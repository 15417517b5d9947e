"""Publishing a compiled entry: its artifact, then its manifest (the manifest is what makes
the entry visible), into the tiers whose admission rules take it, through the store (so its
write policy and codecs hold), and flushed before the compile lock is released."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..stores import BaseStore
from . import _layout as layout
from ._hooks_telemetry import ArtifactStats


@dataclass(frozen=True)
class Admission:
    """Which compiled artifacts are worth persisting: at least ``min_compile_seconds`` to
    compile and at most ``max_bytes`` big (None: no bound)."""

    min_compile_seconds: float = 0.0
    max_bytes: int | None = None

    def admits(self, compile_seconds: float, size: int) -> bool:
        if compile_seconds < self.min_compile_seconds:
            return False
        return self.max_bytes is None or size <= self.max_bytes


class Publication:
    """Writes entries into ``store`` by ``admission``: one :class:`Admission` for the whole
    store, or one per tier name (tiers not named admit everything); skips are counted per
    tier in ``stats``."""

    def __init__(
        self,
        store: BaseStore,
        admission: Admission | Mapping[str, Admission],
        stats: ArtifactStats,
    ) -> None:
        self.store = store
        self.admission = admission
        self.stats = stats

    def publish(
        self, digest: str, artifact: bytes, manifest: bytes, compile_seconds: float
    ) -> bool:
        """Write the entry where admission allows; return whether anything was written."""
        if self.store.read_only:  # nothing would be written: not published, not counted saved
            return False
        writes = [(layout.artifact_key(digest), artifact), (layout.manifest_key(digest), manifest)]
        rules = self.admission
        if isinstance(rules, Admission):
            if not rules.admits(compile_seconds, len(artifact)):
                self.stats.admission_skips[self.store.name] += 1
                return False
            for name, value in writes:
                self.store.put(name, value)
            return True
        admitted = []
        for tier in self.store.tier_names:
            if rules.get(tier, Admission()).admits(compile_seconds, len(artifact)):
                admitted.append(tier)
            else:
                self.stats.admission_skips[tier] += 1
        if not admitted:
            return False
        wrote = False
        for name, value in writes:
            wrote = self.store.put_to(admitted, name, value) or wrote
        return wrote

    def flush(self, timeout: float = 60.0) -> None:
        """Finish queued remote writes: before the lock is released, or a process waiting for
        the key would find neither the lock nor the entry and compile again."""
        self.store.flush(timeout)

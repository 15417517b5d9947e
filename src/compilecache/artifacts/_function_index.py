"""The per-function index: for each jit function, the keys stored for it and their
components (the newest :data:`INDEX_LIMIT`), so that ``explain`` can say what differs between
a call and what is stored. It only serves explanations: losing an update loses no entry."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from .._locks import Lock
from ..keys import CacheKey
from ..stores import BaseStore
from . import _layout as layout
from ._hooks_telemetry import HooksTelemetry
from ._manifest import Manifest

INDEX_LIMIT = 32  # entries remembered per function for explanations


class FunctionIndex:
    def __init__(
        self,
        store: BaseStore,
        lock_factory: Callable[[str], Lock],
        telemetry: HooksTelemetry,
    ) -> None:
        self.store = store
        self.lock_factory = lock_factory
        self.telemetry = telemetry

    def record(self, fn: Any, key: CacheKey, manifest: Manifest) -> None:
        """Remember this entry's components under ``fn``. The index is read, changed and
        written under a lock of its own (processes compiling two shapes of one function at
        once would otherwise lose one record); without the lock within a few seconds, it is
        updated anyway."""
        function_id = layout.function_id(fn)
        try:
            lock: Lock | None = self.lock_factory(layout.lock_name(f"index-{function_id}"))
            held = lock is not None and lock.acquire(timeout=5.0)
        except Exception:
            lock, held = None, False
        try:
            self._update(layout.index_key(function_id), key, manifest)
        finally:
            if held and lock is not None:
                try:
                    lock.release()
                except Exception as error:
                    self.telemetry.note(
                        "unlock-index", f"releasing an index lock failed: {error!r}"
                    )

    def _update(self, name: str, key: CacheKey, manifest: Manifest) -> None:
        index = _parse(self.store.get(name))
        entries = index.get("entries", {}) if isinstance(index.get("entries"), dict) else {}
        entries[key.digest] = {
            "components": key.as_json(),
            "created": manifest.created,
            "run": run_id(),  # which process compiled it: explain compares runs, not siblings
        }
        if len(entries) > INDEX_LIMIT:
            newest = sorted(entries.items(), key=lambda item: item[1].get("created", 0))
            entries = dict(newest[-INDEX_LIMIT:])
        index = {"function": manifest.function, "entries": entries}
        self.store.put(name, json.dumps(index, sort_keys=True).encode())


def read_index(store: BaseStore, fn: Any) -> dict[str, Any]:
    """The index of ``fn`` in ``store`` ({} when there is none or it does not parse)."""
    return _parse(store.get(layout.index_key(layout.function_id(fn))))


def _parse(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        index = json.loads(raw)
    except ValueError:
        return {}
    return index if isinstance(index, dict) else {}


_run: tuple[int, str] | None = None


def run_id() -> str:
    """An id of this process's run (a forked child gets its own)."""
    global _run
    pid = os.getpid()
    if _run is None or _run[0] != pid:
        _run = (pid, f"{pid}-{time.time_ns()}")
    return _run[1]

"""Dispatch hooks that persist compiled entries in a store and compile each key once.

On a miss the hooks compute the call's key; a stored manifest and artifact for it become a
precompile entry (its stored guards checked before use). With none stored, the process takes the
key's lock and compiles; other processes missing on the same key meanwhile wait (bounded) for
its entry and load it, or take the lock over if its owner died or it expired. With no store
answering, everyone compiles. A backend without ``dumps``/``loads`` is never persisted, and a
call that cannot be keyed stably is a counted bypass, logged once per function and reason at
WARNING (the user loses the warm start): it still compiles and runs. A backend with a
``bypassed(reason)`` method is told, to count it per model.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._locks import FileLock, LeaseKeeper, Lock
from ..dispatch._entries import CacheEntry
from ..dispatch._hooks import CompileRequest, LoadedEntry
from ..keys import CacheKey, Unfingerprintable, build_key
from ..stores import BaseStore
from . import _layout as layout
from ._guard_format import GuardFormatError, dump_guards, load_guards
from ._manifest import Manifest, ManifestError

logger = logging.getLogger("compilecache.artifacts")

INDEX_LIMIT = 32  # entries remembered per function for explanations


@dataclass
class ArtifactStats:
    """What the hooks did in this process."""

    loaded: int = 0
    misses: int = 0
    saved: int = 0
    load_failures: int = 0
    waited: int = 0
    lock_timeouts: int = 0
    admission_skips: collections.Counter[str] = field(default_factory=collections.Counter)
    bypasses: collections.Counter[str] = field(default_factory=collections.Counter)


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


def persistable(backend: Any) -> bool:
    return callable(getattr(backend, "dumps", None)) and callable(getattr(backend, "loads", None))


class ArtifactHooks:
    """Persistence for jit functions through ``store`` (see the module docstring).

    ``salt`` (``COMPILECACHE_SALT``) and ``key_extra`` enter every key. ``lock_timeout`` bounds
    the wait for another process's compile; ``lock_ttl`` is how long a lock lives unreleased.
    ``admission`` decides which artifacts are worth storing: one :class:`Admission` for the
    whole store, or one per tier name (``{"disk": Admission(), "redis": Admission(1.0)}``:
    tiers not named admit everything); skips are counted per tier. With ``record`` (the
    default) and a disk store in ``store``, the counters persist in its directory (see
    :mod:`compilecache.telemetry`).
    """

    def __init__(
        self,
        store: BaseStore,
        *,
        salt: str | None = None,
        key_extra: Any = None,
        admission: Admission | Mapping[str, Admission] | None = None,
        lock_factory: Callable[[str], Lock] | None = None,
        lock_timeout: float = 300.0,
        lock_ttl: float = 600.0,
        poll: float = 0.05,
        record: bool = True,
    ) -> None:
        self.store = store
        self.salt = salt
        self.key_extra = key_extra
        self.admission = admission or Admission()
        self.lock_timeout = lock_timeout
        self.poll = poll
        self.stats = ArtifactStats()
        self._lock_factory = lock_factory or default_lock_factory(store, lock_ttl)
        self._logged: set[str] = set()
        self._log_lock = threading.Lock()
        self.recorder: Any = _recorder_for(store, self) if record else None

    # -- the DispatchHooks protocol -------------------------------------------------------
    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        try:
            return self._load(request)
        finally:
            if self.recorder is not None:
                self.recorder.maybe_flush()

    def _load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        if not persistable(request.backend):
            return ()
        key = self.key_of(request)
        if key is None:
            return ()
        found = self._read(request, key)
        if found is not None:
            return (found,)
        self.stats.misses += 1
        lock = self._lock_factory(layout.lock_name(key.digest))
        deadline = time.monotonic() + self.lock_timeout
        waited = False
        while True:
            try:
                if lock.acquire(timeout=0):
                    request.options["lock"] = lock
                    if callable(getattr(lock, "renew", None)):
                        # Held while compiling, however long that takes: a compile that
                        # outlives the TTL must not let the waiters compile too.
                        request.options["lease"] = LeaseKeeper(lock)
                    # Another process may have finished between our read and our lock.
                    found = self._read(request, key)
                    return (found,) if found is not None else ()
            except Exception as error:  # no store answers: compile without the lock
                self._note("lock", f"lock on the store failed ({error!r}); compiling without it")
                return ()
            if not waited:
                waited = True
                self.stats.waited += 1
                logger.info("waiting for another process compiling %s", request.fn.__qualname__)
            found = self._read(request, key)
            if found is not None:
                return (found,)
            if time.monotonic() >= deadline:
                self.stats.lock_timeouts += 1
                self._note(
                    "lock-timeout",
                    f"waited {self.lock_timeout:.0f} s for another process compiling "
                    f"{request.fn.__qualname__}; compiling here too",
                )
                return ()
            time.sleep(self.poll)

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        try:
            key: CacheKey | None = request.options.get("key")
            if key is None or not persistable(request.backend):
                return
            artifact = request.backend.dumps(entry.compiled)
            if not isinstance(artifact, bytes):
                raise TypeError(f"backend dumps returned {type(artifact).__name__}, not bytes")
            manifest = Manifest.build(
                key,
                function=f"{request.fn.__module__}:{request.fn.__qualname__}",
                backend=request.backend_name,
                guards=request.options["guards"],
                spec=request.spec.describe(),
                compile_seconds=entry.compile_seconds,
                artifact=artifact,
            )
            # The artifact first, the manifest last: the manifest is what publishes the entry.
            if not self._admitted_put(
                [
                    (layout.artifact_key(key.digest), artifact),
                    (layout.manifest_key(key.digest), manifest.to_bytes()),
                ],
                entry.compile_seconds,
                len(artifact),
            ):
                return
            self.stats.saved += 1
            if self.recorder is not None:
                self.recorder.compiled(manifest.function, entry.compile_seconds)
            self._index(request.fn, key, manifest)  # type: ignore[arg-type]
            # Remote writes may be queued: publish them before releasing the lock, or a process
            # waiting for this key would find neither the lock nor the entry and compile again.
            self.store.flush(60.0)
        finally:
            self.finish(request)
            if self.recorder is not None:
                self.recorder.maybe_flush()

    def _admitted_put(
        self, writes: list[tuple[str, bytes]], compile_seconds: float, size: int
    ) -> bool:
        """Write ``writes`` in order where admission allows; return whether anything was."""
        rules = self.admission
        if isinstance(rules, Admission):
            if not rules.admits(compile_seconds, size):
                self.stats.admission_skips[self.store.name] += 1
                return False
            for name, value in writes:
                self.store.put(name, value)
            return True
        # Per tier: only the admitting tiers, through the store (its write policy and its
        # codecs hold: a LOCAL_ONLY remote is not written, signing still applies).
        admitted = []
        for tier in self.store.tier_names:
            if rules.get(tier, Admission()).admits(compile_seconds, size):
                admitted.append(tier)
            else:
                self.stats.admission_skips[tier] += 1
        if not admitted:
            return False
        wrote = False
        for name, value in writes:
            wrote = self.store.put_to(admitted, name, value) or wrote
        return wrote

    def finish(self, request: CompileRequest) -> None:
        """Release the key's lock (after a save, or a compile that failed)."""
        lease = request.options.pop("lease", None)
        if lease is not None:
            lease.stop()
        lock = request.options.pop("lock", None)
        if lock is not None:
            try:
                lock.release()
            except Exception as error:
                self._note("unlock", f"releasing a compile lock failed: {error!r}")

    # -- keys -----------------------------------------------------------------------------
    def key_of(self, request: CompileRequest, *, count: bool = True) -> CacheKey | None:
        """The key of ``request`` (cached on it), or None after counting why it has none (the
        reason is then in ``request.options["bypass"]``; ``count=False`` neither counts nor
        logs it, for explanations)."""
        if "key" in request.options:
            key: CacheKey | None = request.options["key"]
            return key
        try:
            guards = dump_guards(request.guards)
            key = build_key(
                request.fn,  # type: ignore[arg-type]
                guards_data=guards,
                described=request.spec.describe(),
                backend=request.backend,
                backend_name=request.backend_name,
                salt=self.salt,
                key_extra=self.key_extra,
                reached=_reached_through_arguments(request.guards),
            )
        except Unfingerprintable as error:
            request.options["key"] = None
            request.options["bypass"] = error.reason
            if not count:
                return None
            self.stats.bypasses[error.reason] += 1
            told = getattr(request.backend, "bypassed", None)
            if callable(told):  # the backend counts it per model, for its own stats
                told(error.reason)
            name = f"{request.fn.__module__}:{request.fn.__qualname__}"
            self._note(
                f"bypass:{name}:{error.reason}",
                f"not persisting {name}, so every process compiles it again: {error.reason}",
            )
            request.options["key"] = None
            return None
        request.options["key"] = key
        request.options["guards"] = guards
        return key

    # -- reading --------------------------------------------------------------------------
    def _read(self, request: CompileRequest, key: CacheKey) -> LoadedEntry | None:
        data = self.store.get(layout.manifest_key(key.digest))
        if data is None:
            return None
        try:
            manifest = Manifest.from_bytes(data, key.digest)
            artifact = self.store.get(layout.artifact_key(key.digest))
            if artifact is None:
                raise ManifestError("artifact missing")
            manifest.check_artifact(artifact)
            guards = load_guards(manifest.guards, request.fn.__globals__, request.inputs.cells)
            compiled = request.backend.loads(artifact)
            if not callable(compiled):
                raise TypeError("backend loads returned something not callable")
        except (ManifestError, GuardFormatError, Unfingerprintable, Exception) as error:
            # A bad or unloadable entry is a miss: counted, and the next compile replaces it.
            self.stats.load_failures += 1
            self._note(
                f"load:{key.digest}",
                f"stored entry of {request.fn.__qualname__} is unusable ({error!r}); recompiling",
            )
            return None
        self.stats.loaded += 1
        if self.recorder is not None:
            self.recorder.loaded(manifest.function, key.digest, manifest.compile_seconds)
        return LoadedEntry(
            guards,
            compiled,
            request.spec,
            annotation=f"loaded from the store (key {key.digest[:12]})",
            compile_seconds=manifest.compile_seconds,
            artifact=key.digest,
        )

    def _index(self, fn: types.FunctionType, key: CacheKey, manifest: Manifest) -> None:
        """Remember this entry's components under the function, for explanations. The index
        is read, changed and written under a lock of its own (processes compiling two shapes
        of one function at once would otherwise lose one record); without the lock within a
        few seconds, it is updated anyway: it only serves explanations."""
        function_id = layout.function_id(fn)
        try:
            lock: Lock | None = self._lock_factory(layout.lock_name(f"index-{function_id}"))
            held = lock is not None and lock.acquire(timeout=5.0)
        except Exception:
            lock, held = None, False
        try:
            self._update_index(layout.index_key(function_id), key, manifest)
        finally:
            if held and lock is not None:
                try:
                    lock.release()
                except Exception as error:
                    self._note("unlock-index", f"releasing an index lock failed: {error!r}")

    def _update_index(self, name: str, key: CacheKey, manifest: Manifest) -> None:
        try:
            raw = self.store.get(name)
            index = json.loads(raw) if raw else {}
            if not isinstance(index, dict):
                index = {}
        except ValueError:
            index = {}
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

    def _note(self, topic: str, message: str, level: int = logging.WARNING) -> None:
        """Log ``message`` once per topic (a reason repeated on every call is noise)."""
        with self._log_lock:
            if topic in self._logged:
                return
            self._logged.add(topic)
        logger.log(level, "%s", message)


def _reached_through_arguments(guards: list[Any]) -> list[tuple[str, Any]]:
    """Code an argument brings: functions, classes and modules matched by identity, and the
    user classes that TYPE guards name (a dataclass argument's methods run in the call)."""
    from ..dispatch._guards import GuardKind, path_text
    from ..keys._deps import module_origin

    found: list[tuple[str, Any]] = []
    for guard in guards:
        if guard.path[0][0] != "arg":
            continue
        value = guard.expected
        if guard.kind is GuardKind.IDENTITY and isinstance(
            value, (types.FunctionType, type, types.ModuleType)
        ):
            found.append((f"argument {path_text(guard.path)}", value))
        elif (
            guard.kind is GuardKind.TYPE
            and isinstance(value, type)
            and module_origin(value.__module__)[0] == "user"
        ):
            found.append((f"type of argument {path_text(guard.path)}", value))
    return found


_run: tuple[int, str] | None = None


def run_id() -> str:
    """An id of this process's run (a forked child gets its own)."""
    global _run
    pid = os.getpid()
    if _run is None or _run[0] != pid:
        _run = (pid, f"{pid}-{time.time_ns()}")
    return _run[1]


def _recorder_for(store: BaseStore, hooks: ArtifactHooks) -> Any:
    """The counters recorder of the disk store's directory, or None without a disk store or
    when the store is read-only (nothing is written into a read-only store's directory)."""
    from ..telemetry import CountersDB
    from ..telemetry._recorder import recorder_for

    local = store.maintenance()
    if local is None or store.read_only:
        return None
    return recorder_for(CountersDB(local.root), store, hooks.stats, hooks)


def default_lock_factory(store: BaseStore, ttl: float) -> Callable[[str], Lock]:
    """The locks the store offers (``store.lock_factory``: a Redis lock when it writes a
    Redis tier, else a file lock in its disk store's directory), else a lock local to this
    process's temp directory."""
    offered = store.lock_factory(ttl)
    if offered is not None:
        return offered
    import tempfile

    # One directory per user, private: a shared one in /tmp would let other users hold or
    # break our locks. One that someone else made first (the name is predictable) is not
    # used: a fresh private one of this process is (locks then span only this process).
    from ..stores._private_dir import directory_problem, make_private_directory

    user = os.geteuid() if hasattr(os, "geteuid") else "user"
    fallback = Path(tempfile.gettempdir()) / f"compilecache-locks-{user}"
    try:
        make_private_directory(fallback)
        if directory_problem(fallback) is not None:
            fallback = Path(tempfile.mkdtemp(prefix="compilecache-locks-"))
    except OSError:
        fallback = Path(tempfile.mkdtemp(prefix="compilecache-locks-"))
    return lambda name: FileLock(fallback, name, ttl=ttl)

"""Dispatch hooks that persist compiled entries in a store and compile each key once.

:class:`ArtifactHooks` joins the pipeline's named parts, each a module of its own:

- key derivation (:mod:`._key_derivation`): the key of a miss, or a bypass with its reason;
- single flight (:mod:`._single_flight`): the key's lock across processes, and the wait;
- publication (:mod:`._publication`): admission, then artifact and manifest through the store;
- the function index (:mod:`._function_index`): what explain compares a call against;
- telemetry (:mod:`._hooks_telemetry`): counts, persisted counters, messages logged once.

Their state for one miss travels on the request as a :class:`~._request_state.RequestState`.

On a miss the hooks compute the call's key; a stored manifest and artifact for it become a
precompile entry (its stored guards checked before use). With none stored, the process takes
the key's lock and compiles; others wait for its entry (bounded). A backend without
``dumps``/``loads`` is never persisted, and a call that cannot be keyed stably is a counted
bypass, logged once per function and reason at WARNING (the user loses the warm start): it
still compiles and runs. A backend with a ``bypassed(reason)`` method is told, to count it per
model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._locks import FileLock, Lock
from ..dispatch._entries import CacheEntry
from ..dispatch._hooks import CompileRequest, LoadedEntry
from ..keys import CacheKey, Unfingerprintable
from ..stores import BaseStore
from . import _layout as layout
from ._function_index import FunctionIndex
from ._guard_format import GuardFormatError, load_guards
from ._hooks_telemetry import ArtifactStats, HooksTelemetry
from ._key_derivation import KeyDerivation
from ._manifest import Manifest, ManifestError
from ._publication import Admission, Publication
from ._request_state import state_of
from ._single_flight import SingleFlight

__all__ = ["Admission", "ArtifactHooks", "ArtifactStats", "default_lock_factory", "persistable"]


def persistable(backend: Any) -> bool:
    return callable(getattr(backend, "dumps", None)) and callable(getattr(backend, "loads", None))


class ArtifactHooks:
    """Persistence for jit functions through ``store`` (see the module docstring).

    ``salt`` (``COMPILECACHE_SALT``) and ``key_extra`` enter every key. ``lock_timeout`` bounds
    the wait for another process's compile; ``lock_ttl`` is how long a lock lives unrenewed.
    ``admission`` decides which artifacts are worth storing: one :class:`Admission` for the
    whole store, or one per tier name (``{"disk": Admission(), "redis": Admission(1.0)}``:
    tiers not named admit everything); skips are counted per tier. With ``record`` (the
    default) and a local store in ``store``, the counters persist in its directory (see
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
        self.key_derivation = KeyDerivation(salt, key_extra)
        self.telemetry = HooksTelemetry(store, self, record=record)
        locks = lock_factory or default_lock_factory(store, lock_ttl)
        self.single_flight = SingleFlight(locks, self.telemetry, timeout=lock_timeout, poll=poll)
        self.publication = Publication(store, admission or Admission(), self.telemetry.stats)
        self.index = FunctionIndex(store, locks, self.telemetry)

    @property
    def stats(self) -> ArtifactStats:
        return self.telemetry.stats

    @property
    def recorder(self) -> Any:
        return self.telemetry.recorder

    # -- the DispatchHooks protocol -------------------------------------------------------
    def load(self, request: CompileRequest) -> Iterable[LoadedEntry]:
        try:
            if not persistable(request.backend):
                return ()
            key = self.key_of(request)
            state_of(request).owner = self  # save and finish go to these hooks
            if key is None:
                return ()
            found = self._read(request, key)
            if found is not None:
                return (found,)
            self.stats.misses += 1
            found, claim = self.single_flight.claim(
                layout.lock_name(key.digest),
                lambda: self._read(request, key),
                request.fn.__qualname__,
            )
            state = state_of(request)
            state.claim = claim
            return (found,) if found is not None else ()
        finally:
            self.telemetry.maybe_flush()

    def save(self, request: CompileRequest, entry: CacheEntry) -> None:
        try:
            state = state_of(request)
            if state.key is None or state.guards is None or not persistable(request.backend):
                return
            artifact = request.backend.dumps(entry.compiled)
            if not isinstance(artifact, bytes):
                raise TypeError(f"backend dumps returned {type(artifact).__name__}, not bytes")
            manifest = Manifest.build(
                state.key,
                function=f"{request.fn.__module__}:{request.fn.__qualname__}",
                backend=request.backend_name,
                guards=state.guards,
                spec=request.spec.describe(),
                compile_seconds=entry.compile_seconds,
                artifact=artifact,
            )
            if not self.publication.publish(
                state.key.digest, artifact, manifest.to_bytes(), entry.compile_seconds
            ):
                return
            self.telemetry.saved(manifest.function, entry.compile_seconds)
            self.index.record(request.fn, state.key, manifest)
            self.publication.flush()
        finally:
            self.finish(request)
            self.telemetry.maybe_flush()

    def finish(self, request: CompileRequest) -> None:
        """Release the key's lock (after a save, or a compile that failed)."""
        state = state_of(request)
        claim, state.claim = state.claim, None
        if claim is not None:
            self.single_flight.release(claim)

    # -- keys -----------------------------------------------------------------------------
    def key_of(self, request: CompileRequest, *, count: bool = True) -> CacheKey | None:
        """The key of ``request`` (kept on it), or None after counting why it has none (the
        reason is then in ``state_of(request).bypass``; ``count=False`` neither counts nor
        logs it, for explanations)."""
        state = self.key_derivation.derive(request)
        if state.key is None and count and not state.bypass_counted:
            state.bypass_counted = True
            name = f"{request.fn.__module__}:{request.fn.__qualname__}"
            self.telemetry.bypassed(name, state.bypass or "not keyable", request.backend)
        return state.key

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
            self.telemetry.note(
                f"load:{key.digest}",
                f"stored entry of {request.fn.__qualname__} is unusable ({error!r}); recompiling",
            )
            return None
        self.telemetry.loaded(manifest.function, key.digest, manifest.compile_seconds)
        return LoadedEntry(
            guards,
            compiled,
            request.spec,
            annotation=f"loaded from the store (key {key.digest[:12]})",
            compile_seconds=manifest.compile_seconds,
            artifact=key.digest,
        )


def default_lock_factory(store: BaseStore, ttl: float) -> Callable[[str], Lock]:
    """The locks the store offers (``store.lock_factory``: a Redis lock when it writes a
    Redis tier, else a file lock in its disk store's directory), else a lock local to this
    process's temp directory."""
    offered = store.lock_factory(ttl)
    if offered is not None:
        return offered
    import tempfile  # here: it imports shutil, bz2, lzma and random, milliseconds at the first miss

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

"""The store contract: ``str`` keys to ``bytes`` values.

:class:`Store` is the protocol every store satisfies; :class:`BaseStore` gives a new backend the
optional parts (batches, async variants, membership, context management, fail-open error handling)
with safe defaults, so a backend only writes ``get``, ``insert``, ``put``, ``delete``, ``keys`` and
``stats``. It also gives the *capabilities* (docs/stores.md): what a store is made of
(``layers``, ``read_only``, ``tier_names``) and what it offers (``flush``, ``lock_factory``,
``put_to``, ``tier_counters``, ``maintenance``). Wrappers and tiered stores answer them by
delegating, so that nothing outside this package takes a store stack apart.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._errors import BackendError, CacheTypeError
from .._ratelimit import RateLimitedLog
from ._keys import check_key
from ._stats import Counters, StoreStats

if TYPE_CHECKING:
    from pathlib import Path

    from .._locks import Lock
    from ._maintenance import Maintenance

#: Makes the lock of a name (see ``BaseStore.lock_factory``).
LockFactory = Callable[[str], "Lock"]

logger = logging.getLogger("compilecache.store")


@runtime_checkable
class Store(Protocol):
    """What every compilecache store does.

    Keys are ``str`` (see :func:`check_key`), values ``bytes``. Reads fail open: a backend failure
    is a counted, logged miss. ``insert`` never overwrites; ``put`` does.
    """

    name: str
    remote: bool

    def get(self, key: str) -> bytes | None: ...

    def insert(self, key: str, value: bytes) -> bool: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> bool: ...

    def __contains__(self, key: object) -> bool: ...

    def __iter__(self) -> Iterator[str]: ...

    def keys(self) -> Iterator[str]: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]: ...

    def put_many(self, items: Mapping[str, bytes]) -> None: ...

    def stats(self) -> StoreStats: ...

    def close(self) -> None: ...

    def get_async(self, key: str, executor: Executor | None = None) -> Future[bytes | None]: ...

    def insert_async(
        self, key: str, value: bytes, executor: Executor | None = None
    ) -> Future[bool]: ...

    def put_async(
        self, key: str, value: bytes, executor: Executor | None = None
    ) -> Future[None]: ...


# What a failed operation turns into when the store fails open, for the log line.
_OUTCOMES = {
    "get": "a miss",
    "get_many": "misses",
    "contains": "absent",
    "insert": "a skipped write",
    "put": "a skipped write",
    "put_many": "skipped writes",
    "delete": "nothing deleted",
}

_executor_lock = threading.Lock()
_default_executor: ThreadPoolExecutor | None = None


def default_executor() -> ThreadPoolExecutor:
    """The process-wide executor used by ``*_async`` calls that are given none.

    Created on first use with four threads; shut down at interpreter exit (pending work finishes).
    """
    global _default_executor
    with _executor_lock:
        if _default_executor is None:
            _default_executor = ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="compilecache-store"
            )
            atexit.register(_default_executor.shutdown, wait=True)
        return _default_executor


def check_value(value: object) -> bytes:
    """Return ``value`` as ``bytes``; accept ``bytearray`` and ``memoryview`` by copying."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise CacheTypeError(
        f"store values must be bytes, got {type(value).__name__}: serialize the value first "
        "(compilecache never pickles implicitly)"
    )


class BaseStore:
    """Shared behaviour of the concrete stores.

    Subclasses implement ``get``, ``insert``, ``put``, ``delete``, ``keys`` and ``stats``, and may
    override the batched calls and ``__contains__`` with cheaper ones.

    ``strict`` decides what a backend failure does: ``False`` (the default) logs it (rate-limited),
    counts it and carries on as a miss or a skipped write; ``True`` raises :class:`BackendError`.
    """

    name: str = "store"
    #: True for stores on another machine (Redis): tiered write policies treat them as remote.
    remote: bool = False

    def __init__(self, *, name: str | None = None, strict: bool = False) -> None:
        if name is not None:
            self.name = name
        self.strict = strict
        self._counters = Counters()
        self._failure_log = RateLimitedLog(logger)

    # -- the required part ---------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def insert(self, key: str, value: bytes) -> bool:
        raise NotImplementedError

    def put(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def keys(self) -> Iterator[str]:
        raise NotImplementedError

    def stats(self) -> StoreStats:
        raise NotImplementedError

    # -- defaults ------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return self.get(check_key(key)) is not None

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Return the values found for ``keys`` (missing keys are left out)."""
        found: dict[str, bytes] = {}
        for key in keys:
            value = self.get(key)
            if value is not None:
                found[key] = value
        return found

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store every pair of ``items``, overwriting."""
        for key, value in items.items():
            self.put(key, value)

    def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""

    def get_async(self, key: str, executor: Executor | None = None) -> Future[bytes | None]:
        """``get`` on ``executor`` (default: :func:`default_executor`)."""
        return (executor or default_executor()).submit(self.get, key)

    def insert_async(
        self, key: str, value: bytes, executor: Executor | None = None
    ) -> Future[bool]:
        """``insert`` on ``executor`` (default: :func:`default_executor`)."""
        return (executor or default_executor()).submit(self.insert, key, value)

    def put_async(self, key: str, value: bytes, executor: Executor | None = None) -> Future[None]:
        """``put`` on ``executor`` (default: :func:`default_executor`)."""
        return (executor or default_executor()).submit(self.put, key, value)

    # -- capabilities (docs/stores.md): wrappers and tiered stores override by delegating --
    def layers(self, *, writable: bool = False) -> tuple[BaseStore, ...]:
        """The concrete stores inside this one, fastest first: itself, for a concrete store.
        ``writable``: only those that writes reach (none behind a read-only view)."""
        return (self,)

    @property
    def read_only(self) -> bool:
        """True when no write reaches any layer of this store."""
        return False

    @property
    def tier_names(self) -> tuple[str, ...]:
        """The names that admission rules and :meth:`put_to` address."""
        return (self.name,)

    def flush(self, timeout: float | None = None) -> bool:
        """Make this store's pending writes visible to other processes; return whether all
        of them were within ``timeout`` seconds. Nothing is pending here."""
        return True

    def lock_factory(self, ttl: float, *, shared: bool = True) -> LockFactory | None:
        """The locks that coordinate compiles of this store's keys across the processes using
        it (a lock lives ``ttl`` seconds unrenewed), or None when the store offers none.
        ``shared=False``: only locks that write nothing another machine reads."""
        return None

    def put_to(self, names: Collection[str], key: str, value: bytes) -> bool:
        """``put`` into only the tiers named ``names`` (see :attr:`tier_names`), by this
        store's write policy; return whether any tier was written (or queued)."""
        if self.name not in names:
            return False
        self.put(key, value)
        return True

    def tier_counters(self) -> dict[str, dict[str, int]]:
        """Per tier, the counters its ``stats()`` would report, read without locks or I/O."""
        return {self.name: self._counters.peek()}

    def local_directory(self) -> Path | None:
        """The directory of the local store in this store, where this process may keep files
        about it (the persisted counters), or None: no local store, or a read-only one
        (nothing is written into a read-only store's directory)."""
        return None

    def maintenance(self) -> Maintenance | None:
        """The maintenance handle of the local disk store in this store, seen through the
        codecs above it (to list, read raw, delete many, quarantine), or None without one."""
        return None

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- failure handling ----------------------------------------------------------------
    def _backend_failed(self, operation: str, key: str | None, error: BaseException) -> None:
        """Count a backend failure; log it (rate-limited); raise it if the store is strict."""
        self._counters.add("errors")
        self._failure_log.log(
            logging.WARNING,
            f"{self.name}:{operation}:{type(error).__name__}",
            "%s: %s of key %r failed, treated as %s: %s",
            self.name,
            operation,
            key,
            _OUTCOMES.get(operation, "a failed call"),
            error,
        )
        if self.strict:
            raise BackendError(
                f"{self.name}: {operation} failed: {error}", key=key, tier=self.name
            ) from error

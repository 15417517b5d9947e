"""A store in a Redis server, shared by every process and machine that reaches it."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .._config import redact_url
from .._errors import BackendError, CacheUsageError, ConfigError, CorruptEntryError
from . import _frame
from ._base import BaseStore, LockFactory, check_value
from ._breaker import CircuitBreaker
from ._keys import check_key
from ._redis_layout import MANIFEST, Layout, check_settings
from ._stats import StoreStats

if TYPE_CHECKING:
    import redis

T = TypeVar("T")
logger = logging.getLogger("compilecache.store.redis")

# Deletes the keys only if the first still holds the bad bytes that were read: healing a corrupt
# entry must not delete a good value another process wrote in between.
_DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', unpack(KEYS))
end
return 0
"""


class _Unserved(Exception):
    """The server did not serve a call (failed or skipped); the failure is already counted."""


class RedisStore(BaseStore):
    """A store in Redis under ``namespace``, shared by every client of the server.

    Takes a ``url`` (``redis://``, ``rediss://`` or ``unix://``, as redis-py's
    ``ConnectionPool.from_url`` reads it; query options such as ``?db=2`` are honoured) and:

    * ``namespace``: prefix of every Redis key (1-100 of ``A-Z a-z 0-9 _ . - /``); also part of
      every frame's tag, so an entry copied under another namespace is a miss.
    * ``ttl``: seconds before an entry expires after its last write (``None``: never).
    * ``timeout``: seconds for connecting and for each reply; a dead server costs about this much
      per call, and nothing while the breaker is open.
    * ``part_size``: framed values longer than this are split into parts of this size.
    * ``strict``: raise :class:`BackendError` on a backend failure or an open breaker instead
      of failing open (a miss, ``False`` from ``insert``, a skipped ``put``).
    * ``breaker``: the :class:`CircuitBreaker` to use (default: 3 failures, 30 s cooldown).

    The constructor never contacts the server. It raises :class:`ConfigError` naming the bad
    argument, and :class:`CacheUsageError` if redis-py is not installed. Requires Redis >= 6.2
    (``SET ... GET``, ``GETDEL``).

    Layout (see :mod:`._redis_layout`): an entry at ``<namespace>:<key>``; a value whose frame
    is longer than ``part_size`` goes into parts, written first, and a manifest at the entry,
    written last, so readers see a whole value or none. An overwrite deletes the old parts only
    after its manifest is in place; ``ttl`` applies to parts too. A write that fails between
    parts and manifest can leave unreferenced parts (with ``ttl`` they expire). A bad frame, or
    an entry whose parts are gone (evicted), is a miss, and the entry is deleted so the next
    write heals it.

    Failures: every call first asks the breaker. A connection error or timeout is counted in
    ``errors``, logged (rate-limited) and reported to the breaker. A server error reply (full
    memory, wrong type, read-only replica) is counted and logged too, but tells the breaker the
    server is reachable: refused writes must not also stop reads. A call skipped by an open
    breaker costs no network time and is counted exactly as a failed one: ``errors`` plus the
    outcome (a miss for reads, a write skip for writes); only the first skip per minute is logged.

    Processes: redis-py's pool notices a fork (it compares ``os.getpid()``) and opens new
    connections in the child, so a store made before ``fork`` works in parent and child. A
    pickled store (for a spawned worker) carries its settings, not its connections.

    >>> store = RedisStore("redis://127.0.0.1:6379/0", namespace="demo", ttl=86400)
    >>> store.put("fn/3f2a", b"compiled")  # doctest: +SKIP
    >>> store.get("fn/3f2a")  # doctest: +SKIP
    b'compiled'
    """

    name = "redis"
    remote = True

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "compilecache",
        ttl: float | None = None,
        timeout: float = 0.5,
        part_size: int = 1 << 20,
        strict: bool = False,
        breaker: CircuitBreaker | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name, strict=strict)
        check_settings(url, namespace, ttl, timeout, part_size)
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise CacheUsageError(
                "RedisStore needs redis-py: pip install 'compilecache[redis]'"
            ) from None
        self._settings: dict[str, Any] = {
            "namespace": namespace,
            "ttl": ttl,
            "timeout": timeout,
            "part_size": part_size,
            "strict": strict,
            "breaker": breaker,
            "name": name,
        }
        self._url = url
        self._auth_logged = False
        self._redis = redis
        self._errors = (redis.RedisError, OSError)
        self._layout = Layout(namespace)
        self._tag = self._layout.tag
        self._px = None if ttl is None else max(1, round(ttl * 1000))
        self._part_size = part_size
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        try:
            # No retries: a retry would double the time a dead server costs; the breaker and the
            # next call are the retry.
            self._pool = redis.ConnectionPool.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except (ValueError, TypeError) as error:
            # (Not the parser's own message: it can quote part of the password.)
            raise ConfigError(
                f"RedisStore: redis-py cannot read the url {redact_url(url)!r} "
                f"({type(error).__name__}): check the host and port, and percent-encode "
                "special characters of the user and password (/ ? # @ :)",
                setting="url",
            ) from None
        self._client = redis.Redis(connection_pool=self._pool)
        self._delete_if_unchanged = self._client.register_script(_DELETE_IF_UNCHANGED)

    # -- reads ---------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """Return the value at ``key``, or ``None`` for a miss (also on failure, unless strict)."""
        check_key(key)
        try:
            value = self._resolve(key, self._read_entry(key), retry=True)
        except _Unserved:
            value = None
        self._count_read(value)
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Return the values found for ``keys`` (missing keys left out), in one round trip for
        values stored whole."""
        wanted = list(dict.fromkeys(check_key(key) for key in keys))
        if not wanted:
            return {}
        names = [self._layout.entry(key) for key in wanted]
        try:
            raws = _as_bytes_list(self._call("get", None, lambda c: c.mget(names)))
        except _Unserved:
            raws = [None] * len(wanted)
        found: dict[str, bytes] = {}
        for key, raw in zip(wanted, raws, strict=True):
            try:
                value = self._resolve(key, raw, retry=True)
            except _Unserved:
                value = None
            self._count_read(value)
            if value is not None:
                found[key] = value
        return found

    def __contains__(self, key: object) -> bool:
        """Whether an entry exists at ``key`` (one ``EXISTS``; a split entry whose parts have
        expired, or a corrupt one, still counts until a ``get`` finds out)."""
        checked = check_key(key)
        name = self._layout.entry(checked)
        try:
            return bool(self._call("contains", checked, lambda c: c.exists(name)))
        except _Unserved:
            return False

    def keys(self) -> Iterator[str]:
        """Yield the keys in this namespace (``SCAN``, lazily, each once). Redis keys under the
        prefix that are not valid store keys are skipped. On failure the iteration ends early
        (raises :class:`BackendError` if strict)."""
        seen: set[str] = set()  # SCAN may return a key more than once
        cursor = 0
        while True:

            def scan(client: redis.Redis, at: int = cursor) -> tuple[int, list[bytes]]:
                found = client.scan(at, match=self._layout.pattern, count=1000)
                return int(found[0]), [name for name in found[1] if isinstance(name, bytes)]

            try:
                cursor, batch = self._call("keys", None, scan)
            except _Unserved:
                return
            for name in batch:
                key = self._layout.key_of(name)
                if key is not None and key not in seen:
                    seen.add(key)
                    yield key
            if cursor == 0:
                return

    # -- writes --------------------------------------------------------------------------
    def insert(self, key: str, value: bytes) -> bool:
        """Store ``value`` at ``key`` unless an entry exists; return whether it was stored
        (``False`` also on failure, unless strict)."""
        check_key(key)
        value = check_value(value)
        try:
            stored = self._write(key, _frame.encode(self._tag, value), only_new=True)
        except _Unserved:
            self._counters.add("write_skips")
            return False
        if stored:
            self._counters.wrote(len(value))
        return stored

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` at ``key``, replacing any entry (skipped on failure, unless strict)."""
        check_key(key)
        value = check_value(value)
        self._put_frame(key, _frame.encode(self._tag, value), len(value))

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store every pair of ``items``, overwriting; values stored whole go in one round trip."""
        framed: dict[str, tuple[bytes, int]] = {}
        for key, value in items.items():
            payload = check_value(value)
            framed[check_key(key)] = (_frame.encode(self._tag, payload), len(payload))
        whole = {key: item for key, item in framed.items() if len(item[0]) <= self._part_size}
        for key, (frame, size) in framed.items():
            if key not in whole:
                self._put_frame(key, frame, size)
        if not whole:
            return

        def send(client: redis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for key, (frame, _) in whole.items():
                pipe.set(self._layout.entry(key), frame, px=self._px, get=True)
            return pipe.execute(raise_on_error=False)

        try:
            replies = self._call("put", None, send)
        except _Unserved:
            self._counters.add("write_skips", len(whole))
            return
        stale: list[str] = []
        failed: list[tuple[str, Exception]] = []
        for (key, (_, size)), reply in zip(whole.items(), replies, strict=True):
            if isinstance(reply, Exception):
                failed.append((key, reply))
            else:
                self._counters.wrote(size)
                stale += self._parts_of(key, _as_bytes(reply))
        self._drop(stale)
        for key, error in failed:
            self._counters.add("write_skips")
            self._backend_failed("put", key, error)

    def delete(self, key: str) -> bool:
        """Remove the entry at ``key`` and its parts; return whether there was one (``False``
        also on failure, unless strict)."""
        check_key(key)
        try:
            old = _as_bytes(self._call("delete", key, lambda c: c.getdel(self._layout.entry(key))))
        except _Unserved:
            return False
        if old is None:
            return False
        self._drop(self._parts_of(key, old))
        return True

    def stats(self) -> StoreStats:
        """This process's counters; ``entries`` and ``size`` are ``None`` (a shared namespace
        cannot be measured cheaply)."""
        return self._counters.snapshot(self.name)

    def lock_factory(self, ttl: float, *, shared: bool = True) -> LockFactory | None:
        """Redis locks (they span machines); None with ``shared=False``."""
        if not shared:
            return None
        from .._locks import RedisLock

        client = self._client
        return lambda name: RedisLock(client, name, ttl=ttl)

    def close(self) -> None:
        """Disconnect the pool's connections (a later call would reconnect)."""
        self._pool.disconnect()

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (self._url, self._settings))

    def __repr__(self) -> str:
        return f"<RedisStore {self.name!r} namespace={self._layout.namespace!r}>"

    # -- internals -----------------------------------------------------------------------
    def _read_entry(self, key: str) -> bytes | None:
        return _as_bytes(self._call("get", key, lambda c: c.get(self._layout.entry(key))))

    def _count_read(self, value: bytes | None) -> None:
        if value is None:
            self._counters.miss()
        else:
            self._counters.hit(len(value))

    def _call(self, operation: str, key: str | None, call: Callable[[redis.Redis], T]) -> T:
        """Run ``call`` on the client behind the breaker; raise :class:`_Unserved` (or
        :class:`BackendError` if strict) when it fails or is skipped."""
        if not self._breaker.allow():
            self._skipped(operation, key)
        reachable = False
        try:
            result = call(self._client)
            reachable = True
            return result
        except self._redis.ResponseError as error:
            reachable = True
            self._backend_failed(operation, key, error)
            raise _Unserved from None
        except self._redis.AuthenticationError as error:
            self._refused_credentials(operation, key, error)
            raise _Unserved from None
        except self._errors as error:
            self._backend_failed(operation, key, error)
            raise _Unserved from None
        finally:
            # Every allowed call must report, or a probe would hold the breaker half-open.
            if reachable:
                self._breaker.record_success()
            else:
                self._breaker.record_failure()

    def _refused_credentials(self, operation: str, key: str | None, error: Exception) -> None:
        """A wrong or missing password: one clear WARNING per process (not one per call), then
        counted like any failure; the breaker soon skips the server."""
        self._counters.add("errors")
        if not self._auth_logged:
            self._auth_logged = True
            logger.warning(
                "%s: the Redis server at %s refused the credentials (%s): check the user and "
                "password in COMPILECACHE_REMOTE; the remote tier is skipped while it fails",
                self.name,
                redact_url(self._url),
                error,
            )
        if self.strict:
            raise BackendError(
                f"{self.name}: {operation} failed: the Redis server at {redact_url(self._url)} "
                f"refused the credentials ({error})",
                key=key,
                tier=self.name,
            ) from error

    def _skipped(self, operation: str, key: str | None) -> NoReturn:
        self._counters.add("errors")
        self._failure_log.log(
            logging.WARNING,
            f"{self.name}:breaker-open",
            "%s: circuit breaker open after repeated failures: calls skip the server "
            "(counted as errors) until a probe succeeds",
            self.name,
        )
        if self.strict:
            raise BackendError(
                f"{self.name}: {operation} skipped: the circuit breaker is open after repeated "
                "failures",
                key=key,
                tier=self.name,
            )
        raise _Unserved

    def _resolve(self, key: str, raw: bytes | None, *, retry: bool) -> bytes | None:
        """The value held by ``raw`` (what ``GET`` returned for ``key``), or ``None``."""
        if raw is None:
            return None
        if not raw.startswith(MANIFEST):
            try:
                return _frame.decode(raw, self._tag)
            except CorruptEntryError as error:
                self._corrupt(key, raw, [], error)
                return None
        try:
            token, count, length = self._layout.read_manifest(raw)
        except CorruptEntryError as error:
            self._corrupt(key, raw, [], error)
            return None
        names = self._layout.parts(key, token, count)
        parts = _as_bytes_list(self._call("get", key, lambda c: c.mget(names)))
        if any(part is None for part in parts):
            if not retry:
                return None
            # Usually the entry was overwritten since the manifest was read (its parts are
            # deleted only after that): the key holds a newer manifest. If it still holds this
            # one, parts were evicted or expired first; delete it, or insert() could never
            # replace it.
            again = self._read_entry(key)
            if again != raw:
                return self._resolve(key, again, retry=False)
            self._failure_log.log(
                logging.INFO,
                f"{self.name}:lost-parts",
                "%s: entry %r lost parts (evicted or expired), treated as a miss and deleted",
                self.name,
                key,
            )
            self._delete_unchanged(key, raw, names)
            return None
        data = b"".join(part for part in parts if part is not None)
        try:
            if len(data) != length:
                raise CorruptEntryError(f"parts hold {len(data)} bytes, manifest says {length}")
            return _frame.decode(data, self._tag)
        except CorruptEntryError as error:
            self._corrupt(key, raw, names, error)
            return None

    def _corrupt(self, key: str, raw: bytes, parts: list[str], error: CorruptEntryError) -> None:
        self._counters.add("corrupt")
        self._failure_log.log(
            logging.WARNING,
            f"{self.name}:corrupt",
            "%s: entry %r is corrupt, treated as a miss and deleted: %s",
            self.name,
            key,
            error,
        )
        self._delete_unchanged(key, raw, parts)

    def _delete_unchanged(self, key: str, raw: bytes, parts: list[str]) -> None:
        """Delete the entry at ``key`` and ``parts`` if the entry still holds ``raw``."""
        names = [self._layout.entry(key), *parts]
        try:
            self._call("delete", key, lambda c: self._delete_if_unchanged(names, [raw], client=c))
        except _Unserved:
            pass  # counted; the next read finds it bad again and retries the delete

    def _put_frame(self, key: str, frame: bytes, size: int) -> None:
        try:
            self._write(key, frame, only_new=False)
        except _Unserved:
            self._counters.add("write_skips")
            return
        self._counters.wrote(size)

    def _write(self, key: str, frame: bytes, *, only_new: bool) -> bool:
        """Publish ``frame`` at ``key``; with ``only_new``, only if there is no entry."""
        operation = "insert" if only_new else "put"
        name = self._layout.entry(key)
        if len(frame) > self._part_size:
            size = self._part_size
            count = -(-len(frame) // size)
            token = os.urandom(16).hex()
            parts = self._layout.parts(key, token, count)

            def send_parts(client: redis.Redis) -> None:
                pipe = client.pipeline(transaction=False)
                for i, part in enumerate(parts):
                    pipe.set(part, frame[i * size : (i + 1) * size], px=self._px)
                pipe.execute()

            # The parts go first and the manifest that makes them visible last, so no reader
            # can find a manifest whose parts are still on their way.
            self._call(operation, key, send_parts)
            value = self._layout.manifest(token, count, len(frame))
        else:
            parts, value = [], frame
        if only_new:
            if self._call(operation, key, lambda c: c.set(name, value, px=self._px, nx=True)):
                return True
            self._drop(parts)
            return False
        # GET returns the replaced value, so its parts (if it was split) can be deleted once
        # nothing points to them any more.
        old = _as_bytes(
            self._call(operation, key, lambda c: c.set(name, value, px=self._px, get=True))
        )
        self._drop(self._parts_of(key, old))
        return True

    def _parts_of(self, key: str, old: bytes | None) -> list[str]:
        """The part keys of the replaced value ``old`` ([] unless it was a readable manifest)."""
        if old is None or not old.startswith(MANIFEST):
            return []
        try:
            token, count, _ = self._layout.read_manifest(old)
        except CorruptEntryError:
            return []
        return self._layout.parts(key, token, count)

    def _drop(self, names: list[str]) -> None:
        """Delete keys nothing points to; a failure is counted and leaves them (to the ttl)."""
        if names:
            try:
                self._call("delete", None, lambda c: c.delete(*names))
            except _Unserved:
                pass


# The pool does not decode replies, so GET-like replies are bytes or None; these narrow the
# types redis-py declares (which allow str for decoding clients).
def _as_bytes(reply: object) -> bytes | None:
    return reply if isinstance(reply, bytes) else None


def _as_bytes_list(replies: list[Any]) -> list[bytes | None]:
    return [_as_bytes(reply) for reply in replies]


def _restore(url: str, settings: dict[str, Any]) -> RedisStore:
    return RedisStore(url, **settings)

"""Cross-process locks with an owner token and an expiry: one compile per key at a time.

A lock is held by a token. It is released by its owner, broken by anyone once it expires, and
on the same host broken at once when its owner process is gone (killed). Every wait is bounded.

* :class:`FileLock`: a lock file created with ``O_EXCL`` in a directory (the disk store's),
  holding ``{"token", "pid", "host", "expires"}`` as JSON. Works for the processes of one
  machine; on a network file system only the expiry protects a dead owner's lock.
* :class:`RedisLock`: ``SET key token NX PX ttl``; released with a compare-and-delete script, so
  a lock that expired and was taken by another owner is never released by the old one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ._errors import LockTimeoutError


class Lock(Protocol):
    """A lock on one name: ``acquire`` (waits up to ``timeout`` seconds; False if it could
    not), ``release``, and whether it is ``held`` by anyone now."""

    def acquire(self, timeout: float) -> bool: ...

    def release(self) -> None: ...

    def held(self) -> bool: ...


def _hostname() -> str:
    # os.uname, not socket.gethostname: importing socket costs milliseconds on the first miss.
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket

    return socket.gethostname()


def _as_int(value: object) -> int:
    # A lock file written by something else (or damaged) must read as stale, never raise.
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return 0


def _as_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLock:
    """A lock file ``directory/name.lock`` (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str,
        *,
        ttl: float = 600.0,
        poll: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(directory) / f"{name}.lock"
        self.ttl = ttl
        self.poll = poll
        self._clock = clock
        self._token = os.urandom(16).hex()
        self._host = _hostname()
        self._owned = False

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        # 0700: a lock directory others could write would let them hold or break our locks.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            if self._try_create():
                return True
            if self._break_if_stale():
                continue
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)

    def acquire_or_raise(self, timeout: float) -> None:
        if not self.acquire(timeout):
            raise LockTimeoutError(f"lock {self.path} still held after {timeout:.1f} s")

    def _try_create(self) -> bool:
        record = {
            "token": self._token,
            "pid": os.getpid(),
            "host": self._host,
            "expires": self._clock() + self.ttl,
        }
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            json.dump(record, file)
        self._owned = True
        return True

    def _owner(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # Being written right now (created, not yet filled) or garbage: judge it by age.
            try:
                age = self._clock() - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            return {"expires": self._clock() + 1.0} if age < 5.0 else {"expires": 0}
        return record if isinstance(record, dict) else {"expires": 0}

    def _break_if_stale(self) -> bool:
        owner = self._owner()
        if owner is None:
            return True  # released meanwhile: try again at once
        expired = _as_float(owner.get("expires")) < self._clock()
        dead = owner.get("host") == self._host and not _pid_alive(_as_int(owner.get("pid")))
        if not (expired or dead):
            return False
        # Rename first: of several breakers only one wins the rename, so a fresh lock taken
        # by another breaker meanwhile is never deleted by mistake.
        aside = self.path.with_name(f"{self.path.name}.stale-{os.urandom(4).hex()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        try:
            stale = json.loads(aside.read_text())
        except (OSError, ValueError):
            stale = {}
        if stale.get("token") != owner.get("token"):
            # We moved a lock other than the one we judged stale: put it back if we can.
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        aside.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        if not self._owned:
            return
        self._owned = False
        owner = self._owner()
        if owner is not None and owner.get("token") == self._token:
            self.path.unlink(missing_ok=True)

    def held(self) -> bool:
        owner = self._owner()
        if owner is None:
            return False
        expired = _as_float(owner.get("expires")) < self._clock()
        dead = owner.get("host") == self._host and not _pid_alive(_as_int(owner.get("pid")))
        return not (expired or dead)


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLock:
    """A Redis lock ``SET name token NX PX ttl`` (see the module docstring)."""

    def __init__(self, client: Any, name: str, *, ttl: float = 600.0, poll: float = 0.05) -> None:
        self._client = client
        self.name = name
        self.ttl = ttl
        self.poll = poll
        self._token = os.urandom(16).hex()
        self._owned = False
        self._release = client.register_script(_RELEASE)

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._client.set(self.name, self._token, nx=True, px=int(self.ttl * 1000)):
                self._owned = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)

    def release(self) -> None:
        if self._owned:
            self._owned = False
            self._release(keys=[self.name], args=[self._token])

    def held(self) -> bool:
        return bool(self._client.exists(self.name))

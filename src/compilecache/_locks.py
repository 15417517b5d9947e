"""Cross-process locks with an owner token and an expiry: one compile per key at a time.

A lock is held by a token. It is released by its owner, broken by anyone once it expires, and
on the same machine broken at once when its owner process is gone (killed). Every wait is
bounded. "The same machine" is the same boot and the same pid namespace (``machine_identity``),
not the same host name: containers that share a host name see each other's pids as strangers'
and must not judge them by ``kill(pid, 0)``. A holder that may outlive the lock's TTL keeps it
with :class:`LeaseKeeper`, which renews the lease every third of the TTL until released.

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


_machine: list[str] = []


def machine_identity() -> str:
    """This machine as far as pids mean anything: the host name, the boot (Linux's boot id)
    and the pid namespace. Where /proc does not say, the host name alone."""
    if not _machine:
        parts = [_hostname()]
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
                parts.append(file.read().strip())
            parts.append(os.readlink("/proc/self/ns/pid"))
        except OSError:
            pass
        _machine.append("|".join(parts))
    return _machine[0]


class LeaseKeeper:
    """Renews ``lock`` (an acquired lock with ``renew()``) every third of its TTL, from a
    daemon thread, until :meth:`stop` or until a renewal finds the lock no longer ours."""

    def __init__(self, lock: Any) -> None:
        import threading

        self._stop = threading.Event()
        interval = max(0.05, float(lock.ttl) / 3)

        def keep() -> None:
            while not self._stop.wait(interval):
                try:
                    if not lock.renew():
                        return
                except Exception:  # a store that does not answer: the next try may
                    continue

        self._thread = threading.Thread(target=keep, name="compilecache-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


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
        self._machine = machine_identity()
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
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            json.dump(self._record(), file)
        self._owned = True
        return True

    def _record(self) -> dict[str, Any]:
        return {
            "token": self._token,
            "pid": os.getpid(),
            "host": self._host,
            "machine": self._machine,
            "expires": self._clock() + self.ttl,
        }

    def renew(self) -> bool:
        """Push the expiry a TTL ahead; False if the lock is no longer ours."""
        if not self._owned:
            return False
        owner = self._owner()
        if owner is None or owner.get("token") != self._token:
            return False
        with open(self.path, "w", encoding="utf-8") as file:  # (a reader of a half-written
            json.dump(self._record(), file)  # file judges it by its fresh mtime: held)
        return True

    def _dead(self, owner: dict[str, Any]) -> bool:
        """The owner is a process of this machine (see :func:`machine_identity`) that is gone."""
        return owner.get("machine") == self._machine and not _pid_alive(_as_int(owner.get("pid")))

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
        if not (expired or self._dead(owner)):
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
        return not (expired or self._dead(owner))


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

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
        self._renew = client.register_script(_RENEW)

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._client.set(self.name, self._token, nx=True, px=int(self.ttl * 1000)):
                self._owned = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)

    def renew(self) -> bool:
        """Push the expiry a TTL ahead; False if the lock is no longer ours."""
        if not self._owned:
            return False
        return bool(self._renew(keys=[self.name], args=[self._token, int(self.ttl * 1000)]))

    def release(self) -> None:
        if self._owned:
            self._owned = False
            self._release(keys=[self.name], args=[self._token])

    def held(self) -> bool:
        return bool(self._client.exists(self.name))

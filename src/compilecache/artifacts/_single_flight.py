"""Compile each key once across processes: the first process to miss takes the key's lock
and compiles; the others, missing on the same key meanwhile, wait (bounded) for its entry and
load it, or take the lock over if its owner died or its lease expired. With no lock to be had
(no store answers), everyone compiles."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from .._locks import LeaseKeeper, Lock
from ._hooks_telemetry import HooksTelemetry

logger = logging.getLogger("compilecache.artifacts")

T = TypeVar("T")


class Claim:
    """The lock this process holds to compile a key, and the keeper renewing its lease."""

    __slots__ = ("lease", "lock")

    def __init__(self, lock: Lock, lease: LeaseKeeper | None) -> None:
        self.lock = lock
        self.lease = lease

    def release(self) -> None:
        if self.lease is not None:
            self.lease.stop()
        self.lock.release()


class SingleFlight:
    """Waits at most ``timeout`` seconds, reading every ``poll`` seconds, for another
    process's compile of a key."""

    def __init__(
        self,
        lock_factory: Callable[[str], Lock],
        telemetry: HooksTelemetry,
        *,
        timeout: float,
        poll: float,
    ) -> None:
        self.lock_factory = lock_factory
        self.telemetry = telemetry
        self.timeout = timeout
        self.poll = poll

    def claim(
        self, name: str, read: Callable[[], T | None], what: str
    ) -> tuple[T | None, Claim | None]:
        """(what ``read`` found, None) once another process published it; (None, the claim)
        when this process is to compile ``what`` under lock ``name``; (None, None) when it is
        to compile without a lock (none to be had, or waited out)."""
        stats = self.telemetry.stats
        lock = self.lock_factory(name)
        deadline = time.monotonic() + self.timeout
        waited = False
        while True:
            try:
                acquired = lock.acquire(timeout=0)
            except Exception as error:  # no store answers: compile without the lock
                self.telemetry.note(
                    "lock", f"lock on the store failed ({error!r}); compiling without it"
                )
                return None, None
            if acquired:
                claim = Claim(lock, None)
                try:
                    # Held while compiling, however long that takes: a compile that outlives
                    # the TTL must not let the waiters compile too.
                    if callable(getattr(lock, "renew", None)):
                        claim.lease = LeaseKeeper(lock)
                    # Another process may have finished between our read and our lock.
                    found = read()
                except Exception as error:  # compile under the lock: finish releases it
                    self.telemetry.note(
                        "read-after-lock", f"reading the store after locking failed: {error!r}"
                    )
                    return None, claim
                if found is not None:
                    self.release(claim)
                    return found, None
                return None, claim
            if not waited:
                waited = True
                stats.waited += 1
                logger.info("waiting for another process compiling %s", what)
            found = read()
            if found is not None:
                return found, None
            if time.monotonic() >= deadline:
                stats.lock_timeouts += 1
                self.telemetry.note(
                    "lock-timeout",
                    f"waited {self.timeout:.0f} s for another process compiling {what}; "
                    "compiling here too",
                )
                return None, None
            time.sleep(self.poll)

    def release(self, claim: Claim) -> None:
        try:
            claim.release()
        except Exception as error:
            self.telemetry.note("unlock", f"releasing a compile lock failed: {error!r}")

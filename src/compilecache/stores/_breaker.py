"""A circuit breaker: stop calling a backend that keeps failing, and probe it now and then.

A dead remote store must not cost every call a network timeout. After ``failure_threshold``
consecutive failures the breaker *opens* and calls skip the backend; once ``cooldown`` seconds
have passed it lets one call through as a probe (*half-open*); the probe's success closes the
breaker, its failure opens it for another ``cooldown``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .._errors import ConfigError

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    """Thread-safe closed / open / half-open breaker with an injectable clock.

    Callers ask :meth:`allow` before each call to the backend and report every allowed call with
    exactly one :meth:`record_success` or :meth:`record_failure`.

    * closed: every call is allowed; ``failure_threshold`` consecutive failures open it.
    * open: calls are refused until ``cooldown`` seconds (by ``clock``) have passed.
    * half-open (cooldown passed): one call at a time is allowed, the probe; its success closes
      the breaker, its failure opens it again. A probe that has not reported within ``cooldown``
      is presumed lost (its caller died) and another probe is let through.

    Reports that arrive while the breaker is open and no probe is out come from calls allowed
    before it opened; they are ignored, so a slow straggler cannot close a breaker that later
    failures opened.

    Raises :class:`ConfigError` for a ``failure_threshold`` below 1 or a negative ``cooldown``.

    >>> now = [0.0]
    >>> breaker = CircuitBreaker(failure_threshold=1, cooldown=10.0, clock=lambda: now[0])
    >>> breaker.record_failure(); breaker.state, breaker.allow()
    ('open', False)
    >>> now[0] = 10.0; breaker.allow(), breaker.allow()
    (True, False)
    >>> breaker.record_success(); breaker.state
    'closed'
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if type(failure_threshold) is not int or failure_threshold < 1:
            raise ConfigError(
                f"CircuitBreaker: failure_threshold must be an int >= 1, got {failure_threshold!r}",
                setting="failure_threshold",
            )
        if not isinstance(cooldown, (int, float)) or not cooldown >= 0:
            raise ConfigError(
                f"CircuitBreaker: cooldown must be a number of seconds >= 0, got {cooldown!r}",
                setting="cooldown",
            )
        self.failure_threshold = failure_threshold
        self.cooldown = float(cooldown)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # consecutive, while closed
        self._opened_at: float | None = None  # None: closed
        self._probe_started: float | None = None  # None: no probe out

    def allow(self) -> bool:
        """Return whether a call may go to the backend now.

        A ``True`` while open marks the caller as the probe: it must report its outcome.
        """
        with self._lock:
            if self._opened_at is None:
                return True
            now = self._clock()
            if now - self._opened_at < self.cooldown:
                return False
            if self._probe_started is not None and now - self._probe_started < self.cooldown:
                return False
            self._probe_started = now
            return True

    def record_success(self) -> None:
        """Report an allowed call that reached the backend; closes a half-open breaker."""
        with self._lock:
            if self._opened_at is not None and self._probe_started is None:
                return  # a straggler from before the breaker opened
            self._failures = 0
            self._opened_at = None
            self._probe_started = None

    def record_failure(self) -> None:
        """Report an allowed call that failed; may open the breaker."""
        with self._lock:
            if self._opened_at is None:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._opened_at = self._clock()
            elif self._probe_started is not None:
                # The probe failed: another full cooldown before the next one.
                self._opened_at = self._clock()
                self._probe_started = None

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (cooldown passed or a probe is out)."""
        with self._lock:
            if self._opened_at is None:
                return CLOSED
            if self._probe_started is not None:
                return HALF_OPEN
            return OPEN if self._clock() - self._opened_at < self.cooldown else HALF_OPEN

    def __reduce__(self) -> tuple[object, ...]:
        # A pickled breaker (for example inside a store sent to a spawned worker) carries its
        # settings, not its state: another process sees the backend afresh.
        return (type(self), (self.failure_threshold, self.cooldown, self._clock))

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.state} threshold={self.failure_threshold} "
            f"cooldown={self.cooldown}>"
        )

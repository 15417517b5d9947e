"""Rate-limited logging: a failing backend must not flood the log from a hot loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    """Logs a message for a given topic at most once per ``interval`` seconds.

    Suppressed repeats are counted and reported with the next message of the same topic.
    ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, topic: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``topic`` was logged less than ``interval`` ago.

        Returns whether the message was emitted.
        """
        now = self._clock()
        with self._lock:
            last = self._last.get(topic)
            if last is not None and now - last < self._interval:
                self._suppressed[topic] = self._suppressed.get(topic, 0) + 1
                return False
            self._last[topic] = now
            skipped = self._suppressed.pop(topic, 0)
        if skipped:
            message += " (%d similar messages suppressed)"
            args = (*args, skipped)
        self._logger.log(level, message, *args)
        return True

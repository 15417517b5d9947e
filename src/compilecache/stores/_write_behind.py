"""A bounded background queue that applies writes to slow tiers off the caller's thread."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable

from .._ratelimit import RateLimitedLog
from ._stats import Counters

logger = logging.getLogger("compilecache.store.tiered")

Job = Callable[[], object]


class WriteBehindQueue:
    """Runs submitted jobs on one daemon thread, in order.

    Bounded: when ``maxsize`` jobs wait, a new one is dropped and counted as a write skip (a
    cache write may be lost; the caller must never block on a slow remote). Flushed at
    interpreter exit and by :meth:`flush`. After ``fork`` the child starts its own worker: the
    parent's thread does not exist there.
    """

    def __init__(self, counters: Counters, *, maxsize: int = 1024, name: str = "tiered") -> None:
        self._counters = counters
        self._maxsize = maxsize
        self._name = name
        self._lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._log = RateLimitedLog(logger)
        self._closed = False
        atexit.register(_close_at_exit, weakref.ref(self))

    def submit(self, job: Job) -> bool:
        """Queue ``job``; return False (and count a skip) if the queue is full or closed."""
        self._ensure_worker()
        if self._closed:
            self._counters.add("write_skips")
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._counters.add("write_skips")
            self._log.log(
                logging.WARNING,
                "full",
                "%s: write-behind queue full (%d jobs); a background write was dropped",
                self._name,
                self._maxsize,
            )
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (up to ``timeout`` seconds) for queued jobs to finish; return whether they did."""
        if self._closed or self._thread is None or self._pid != os.getpid():
            return True  # nothing can be pending: closed queues run everything first
        done = threading.Event()

        def mark() -> None:
            done.set()

        try:
            self._queue.put(mark, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued jobs (up to ``timeout`` seconds) and stop the worker."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        if self._thread is not None and self._pid == os.getpid():
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout)

    def _ensure_worker(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # First use, or first use after fork: jobs queued in the parent stay the parent's.
            self._queue = queue.Queue(self._maxsize)
            self._thread = threading.Thread(
                target=self._run, name=f"compilecache-{self._name}-writer", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        work = self._queue
        while True:
            job = work.get()
            if job is None:
                return
            try:
                job()
            except BaseException as error:  # a failed background write must not kill the worker
                self._counters.add("errors")
                self._log.log(
                    logging.WARNING, "job", "%s: background write failed: %s", self._name, error
                )


def _close_at_exit(ref: weakref.ref[WriteBehindQueue]) -> None:
    """Flush a queue that is still alive at interpreter exit (a weak reference, so that
    registering does not keep every queue alive forever)."""
    pending = ref()
    if pending is not None:
        pending.close()

"""A real ``redis-server`` for tests: on a free loopback port, in a temp dir, no persistence.

>>> with RedisServer() as server:  # doctest: +SKIP
...     server.url
'redis://127.0.0.1:40123/0'

``redis_server_or_skip`` is what fixtures call: it fails when the binary is missing under CI
(the variable ``CI`` set), where a silently skipped suite would hide a broken setup, and skips
otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

import pytest

BINARY = "redis-server"


class RedisServerMissing(RuntimeError):
    """The ``redis-server`` binary is not on ``PATH``."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server on ``port`` answers ``PING`` (a raw socket: no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            # A server with requirepass answers, but refuses: it is up.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process bound to 127.0.0.1.

    ``start()`` launches it (on the port it had before, after a ``stop()`` or ``kill()``) and
    returns once it answers ``PING``; ``stop()`` terminates it, ``kill()`` sends SIGKILL,
    ``pause()``/``resume()`` send SIGSTOP/SIGCONT (a server that accepts connections but never
    answers), ``close()`` stops it and removes its directory. As a context manager it starts and
    closes. Raises :class:`RedisServerMissing` if the binary is not installed. ``options`` are
    more ``redis-server`` settings (``{"requirepass": "..."}``, the ``tls-*`` ones).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout: float = 10.0,
        options: dict[str, str] | None = None,
    ) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise RedisServerMissing(
                f"{BINARY} not found on PATH: install it (Debian: apt-get install redis-server) "
                "to run the Redis tests"
            )
        self.binary = binary
        self.port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self.options = dict(options or {})
        self.dir = Path(tempfile.mkdtemp(prefix="compilecache-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._started_once = port is not None
        # Never leave a server behind, even if a test forgets to close it.
        self._finalizer = weakref.finalize(self, _reap, [None], self.dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> RedisServer:
        """Launch the server (if not running) and wait until it answers ``PING``."""
        if self.running:
            return self
        for attempt in range(3):
            try:
                return self._launch()
            except RuntimeError:
                # A port picked by free_port() can be taken before the server binds it; only
                # a first start may move (a restart must keep its port: clients hold the URL).
                if self._started_once or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _launch(self) -> RedisServer:
        log = self.dir / "redis.log"
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",  # no snapshots: a test server holds nothing worth keeping
            "appendonly": "no",
            "dir": str(self.dir),
            "daemonize": "no",
            "logfile": str(log),
            **self.options,
        }
        arguments = [self.binary]
        for name, value in options.items():
            arguments += [f"--{name}", value]
        self.process = subprocess.Popen(
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _reap, [self.process], self.dir)
        deadline = time.monotonic() + self.startup_timeout
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(
                    f"{BINARY} did not start on port {self.port} (exit code "
                    f"{self.process.returncode}); its log ends:\n{tail}"
                )
            time.sleep(0.02)
        self._started_once = True
        return self

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and wait for it to die."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, but nothing answers."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        self._finalizer()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.running else 'stopped'}>"


def _reap(processes: list[subprocess.Popen[bytes] | None], directory: Path) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
                process.wait()
    shutil.rmtree(directory, ignore_errors=True)


def redis_server_or_skip(
    port: int | None = None, options: dict[str, str] | None = None
) -> RedisServer:
    """A started :class:`RedisServer`; without the binary, fail under CI and skip elsewhere."""
    try:
        server = RedisServer(port, options=options)
    except RedisServerMissing as error:
        if in_ci():
            pytest.fail(f"{error} (CI is set, so this is a failure, not a skip)")
        pytest.skip(str(error))
    return server.start()

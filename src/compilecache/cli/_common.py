"""What the subcommands share: the store to act on, output helpers, sizes and ages."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from .._config import Config, parse_size
from .._errors import CacheUsageError
from .._runtime import runtime, use_runtime

store_options = [
    click.option(
        "--dir",
        "directory",
        default=None,
        help="The local store directory (default: the configuration's, COMPILECACHE_DIR).",
    ),
    click.option(
        "--remote",
        default=None,
        help="A remote tier URL (redis://...), instead of the configuration's.",
    ),
]


def with_store_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(store_options):
        command = option(command)
    return command


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def configuration(directory: str | None, remote: str | None) -> Config:
    """The configuration, with ``--dir`` and ``--remote`` applied (and recorded as the
    source of those values)."""
    config = runtime().config
    sources = dict(config.sources)
    changes: dict[str, Any] = {}
    if directory is not None:
        from pathlib import Path

        changes["dir"] = Path(directory).expanduser()
        sources["COMPILECACHE_DIR"] = "command line (--dir)"
    if remote is not None:
        changes["remote"] = remote or None
        sources["COMPILECACHE_REMOTE"] = "command line (--remote)"
    return dataclasses.replace(config, **changes, sources=sources) if changes else config


def open_configured(directory: str | None, remote: str | None) -> tuple[Config, Any]:
    """The configuration and its store. A remote tier that does not answer is an error here
    (exit status 3), unlike in a program, where the store fails open: a command that silently
    left out the remote tier would report on half the cache."""
    config = configuration(directory, remote)
    if config.disable:
        raise CacheUsageError(
            "caching is disabled (COMPILECACHE_DISABLE): unset it to inspect the store"
        )
    if config.remote and (config.secret or config.remote_unsigned):
        check_remote(config.remote)
    # The command's configuration is the process's: whatever it runs shares this store.
    return config, use_runtime(config).store()


def untrusted_local(config: Config) -> str | None:
    """Why the configuration's local directory is not trusted (docs/trust.md), or None: a
    command then neither reads nor writes its counters."""
    from ..stores._trust import local_trust

    decision = local_trust(config.dir)
    return None if decision.trusted else str(decision)


def check_remote(url: str, timeout: float = 3.0) -> None:
    from .._errors import BackendError

    try:
        import redis
    except ImportError:
        raise CacheUsageError(
            "a remote tier is configured but redis-py is not installed: "
            "pip install 'compilecache[redis]'"
        ) from None
    from .._config import redact_url

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except (ValueError, TypeError) as error:
        raise BackendError(
            f"the remote tier {redact_url(url)} is not a URL redis-py can read "
            f"({type(error).__name__}): percent-encode special characters of the password"
        ) from None
    try:
        client.ping()
    except Exception as error:
        if isinstance(error, redis.AuthenticationError):
            raise BackendError(
                f"the remote tier {redact_url(url)} refused the credentials ({error}): check "
                "the user and password in COMPILECACHE_REMOTE (or --remote)"
            ) from None
        raise BackendError(f"the remote tier {redact_url(url)} does not answer: {error}") from None
    finally:
        client.close()


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def console() -> Any:
    import shutil

    from rich.console import Console

    # Piped output (a file, a CI log) would otherwise wrap tables at 80 columns.
    return Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar (on stderr) driven by ``update(done, total)``."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def human_size(size: float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_age(then: float | None, now: float | None = None) -> str:
    if not then:
        return "-"
    seconds = max(0.0, (now or time.time()) - then)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


_AGE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"`` or seconds, as seconds."""
    match = _AGE.fullmatch(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not an age: write e.g. 7d, 12h, 30m or 90s")
    return float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]


def size_option(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text, "--max-size")
    except CacheUsageError as error:
        raise click.BadParameter(str(error)) from None

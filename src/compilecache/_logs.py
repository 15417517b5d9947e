"""``COMPILECACHE_LOGS``: turn log channels on, in the style of ``TORCH_LOGS``.

compilecache logs through the standard ``logging`` module under the ``compilecache`` logger
tree and prints nothing by default except warnings that matter (a recompile limit reached, a
remote tier that stopped answering, a rejected or corrupt entry), which Python shows on stderr
when the application configured no logging.

``COMPILECACHE_LOGS=recompiles,keys`` shows those channels at INFO; ``+keys`` at DEBUG (every
key component's digest); ``-store`` silences a channel's warnings too; ``all`` (or ``+all``)
is every channel. Read once, when compilecache is imported; :func:`set_logs` does the same
from code. Channels:

==========  ===========================  ================================================
channel     logger                       what it says
==========  ===========================  ================================================
recompiles  compilecache.recompiles      why a function recompiles (the failing guards)
guards      compilecache.guards          guards that raised instead of answering
dispatch    compilecache.dispatch        compiles, loads, recompile limits
keys        compilecache.keys            key components and their digests (DEBUG)
artifacts   compilecache.artifacts       loads, saves, bypasses, waits on other processes
store       compilecache.store           tiers: failures, corrupt and rejected entries
torch       compilecache.torch           AOT compiles and loads, fallbacks to torch.compile
==========  ===========================  ================================================
"""

from __future__ import annotations

import logging
import os

from ._errors import CacheUsageError

CHANNELS = {
    "recompiles": "compilecache.recompiles",
    "guards": "compilecache.guards",
    "dispatch": "compilecache.dispatch",
    "keys": "compilecache.keys",
    "artifacts": "compilecache.artifacts",
    "store": "compilecache.store",
    "torch": "compilecache.torch",
}

_handler: logging.Handler | None = None


class LogSpecError(CacheUsageError):
    """A ``COMPILECACHE_LOGS`` value that names an unknown channel."""


def parse(spec: str) -> dict[str, int]:
    """``"recompiles,+keys,-store"`` -> ``{logger name: level}``. Raises
    :class:`LogSpecError` naming the unknown channel and the known ones."""
    levels: dict[str, int] = {}
    for raw in spec.replace(" ", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        level = logging.INFO
        if item[0] in "+-":
            level = logging.DEBUG if item[0] == "+" else logging.ERROR
            item = item[1:]
        names = list(CHANNELS) if item == "all" else [item]
        for name in names:
            if name not in CHANNELS:
                raise LogSpecError(
                    f"COMPILECACHE_LOGS names an unknown channel {name!r}; channels: "
                    f"{', '.join(CHANNELS)}, all (prefix + for DEBUG, - to silence)"
                )
            levels[CHANNELS[name]] = level
    return levels


def set_logs(spec: str) -> None:
    """Apply a ``COMPILECACHE_LOGS`` value: channels named get a level and print to stderr."""
    global _handler
    levels = parse(spec)
    if not levels:
        return
    root = logging.getLogger("compilecache")
    if _handler is None:
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s: %(message)s"))
        root.addHandler(_handler)
        root.propagate = False  # printed once, by this handler
        if root.level == logging.NOTSET:
            # Channels not named must not inherit the application's root level (an
            # application at DEBUG would otherwise get every channel).
            root.setLevel(logging.WARNING)
    for name, level in levels.items():
        # The channel's own level decides; records then reach the handler on "compilecache"
        # (a parent's level is not consulted when records propagate).
        logging.getLogger(name).setLevel(level)


def configure_from_environment() -> None:
    """Apply ``COMPILECACHE_LOGS`` if set; a bad value is a warning, not an import error."""
    spec = os.environ.get("COMPILECACHE_LOGS")
    if not spec:
        return
    try:
        set_logs(spec)
    except LogSpecError as error:
        logging.getLogger("compilecache").warning("%s", error)

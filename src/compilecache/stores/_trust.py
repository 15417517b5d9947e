"""Which configured tiers may be read: the trust decisions of :func:`open_store`.

A tier that others can write is read only if what it holds is signed (docs/trust.md): the
local directory must be the current user's alone, and a remote tier needs
``COMPILECACHE_SECRET`` or the explicit ``COMPILECACHE_REMOTE_UNSIGNED=1``. A tier that fails
is skipped, never an error in the user's call; each skip is logged once per process at WARNING
and kept here, for ``stats`` and ``explain``.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .._config import Config, redact_url
from ._private_dir import directory_problem, untrusted_directory_message

logger = logging.getLogger("compilecache.store")

_skipped: dict[tuple[str, str], TierTrust] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class TierTrust:
    """The decision for one configured tier: ``location`` is its directory or its URL (without
    password); ``why`` says why it is trusted, or why it is skipped and the fix."""

    tier: str
    location: str
    trusted: bool
    why: str

    def as_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "location": self.location,
            "trusted": self.trusted,
            "why": self.why,
        }

    def __str__(self) -> str:
        verdict = "trusted" if self.trusted else "skipped"
        return f"{self.tier} tier {self.location}: {verdict}: {self.why}"


def remote_trust(config: Config) -> TierTrust | None:
    """The decision for ``config``'s remote tier (None without one)."""
    if not config.remote:
        return None
    location = redact_url(config.remote)
    if config.secret:
        rotation = " (and COMPILECACHE_SECRET_PREVIOUS)" if config.secret_previous else ""
        why = f"values signed and verified with COMPILECACHE_SECRET{rotation}"
        return TierTrust("remote", location, True, why)
    if config.remote_unsigned:
        why = "unsigned, trusted by COMPILECACHE_REMOTE_UNSIGNED=1"
        return TierTrust("remote", location, True, why)
    return TierTrust(
        "remote",
        location,
        False,
        "its values are not signed, so anyone who can write to the server could run code in "
        "this process. Fix: set COMPILECACHE_SECRET (the same on every writer and reader), or, "
        "where everyone who can write to the server is trusted, set "
        "COMPILECACHE_REMOTE_UNSIGNED=1 (remote_unsigned = true in the configuration file). "
        "Local caching goes on",
    )


def local_trust(directory: Path) -> TierTrust:
    """The decision for the local directory, read without creating or changing anything."""
    problem = directory_problem(Path(os.path.realpath(directory))) if directory.exists() else None
    if problem is None:
        why = "yours alone" if directory.exists() else "created on first use, mode 0700"
        return TierTrust("local", str(directory), True, why)
    return TierTrust(
        "local", str(directory), False, untrusted_directory_message(directory, problem)
    )


def trust_decisions(config: Config) -> list[TierTrust]:
    """The decision for each configured tier, local first, read without opening anything."""
    remote = remote_trust(config)
    return [local_trust(config.dir), *([remote] if remote is not None else [])]


def record_skip(decision: TierTrust) -> None:
    """Keep ``decision`` and log it at WARNING, once per process and tier."""
    with _lock:
        first = (decision.tier, decision.location) not in _skipped
        _skipped[decision.tier, decision.location] = decision
    if first:
        logger.warning("compilecache: the %s", decision)


def skipped_tiers() -> list[TierTrust]:
    """The tiers this process skipped because it could not trust them."""
    with _lock:
        return list(_skipped.values())

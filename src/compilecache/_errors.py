"""The exception tree of compilecache.

Everything compilecache raises on purpose derives from :class:`CacheError`. The tree has two
branches so callers can tell whose fault a failure is:

* usage errors (:class:`CacheUsageError`, also a ``ValueError``; :class:`CacheTypeError`, also a
  ``TypeError``): the caller passed something wrong (a bad key, a malformed setting, a malformed
  seed file). Fix the call or the configuration.
* backend errors (:class:`BackendError`, also a ``RuntimeError``): a store, a server or the file
  system failed. Stores raise them only when asked to be strict; by default reads fail open.

:class:`LockTimeoutError` (also a ``TimeoutError``) has its own class because the right reaction
(retry, or proceed without the lock) differs from both.

The layers' own signals derive from :class:`CacheError` directly: ``Unfingerprintable`` (a value
a key cannot be derived from: the call is not persisted), ``ManifestError`` and
``GuardFormatError`` (a stored entry this version cannot read), ``StaleWeights`` (a compiled
torch entry whose module changed kind), ``TorchArtifactError`` (also a ``ValueError``); a bad
``COMPILECACHE_LOGS`` is a ``LogSpecError``, a usage error.
"""

from __future__ import annotations


class CacheError(Exception):
    """Root of every exception compilecache raises on purpose.

    Attributes name what was involved when known: ``key`` (a store key), ``tier`` (a store's
    name), ``setting`` (a configuration variable).
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        tier: str | None = None,
        setting: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.tier = tier
        self.setting = setting


class CacheUsageError(CacheError, ValueError):
    """A caller's mistake: a bad value, a malformed setting or seed."""


class CacheTypeError(CacheError, TypeError):
    """A caller passed a value of the wrong type (for example a non-``str`` key)."""


class InvalidKeyError(CacheUsageError):
    """A store key is empty, too long, or holds characters outside the allowed set."""


class ConfigError(CacheUsageError):
    """A configuration value (usually an environment variable) is malformed."""


class UntrustedDirectoryError(ConfigError):
    """A cache directory that someone other than the current user owns or can write: nothing
    is loaded from it (see docs/trust.md)."""


class SeedFormatError(CacheUsageError):
    """A seed for a memory store (environment variable or file) is malformed."""


class BackendError(CacheError, RuntimeError):
    """A store's backend (file system, database, server) failed."""


class CorruptEntryError(BackendError):
    """A stored entry failed its frame checks: truncated, bit-flipped or from another version."""


class RejectedEntryError(BackendError):
    """A stored entry's signature did not verify: it may have been forged or written with
    another secret."""


class LockTimeoutError(CacheError, TimeoutError):
    """A lock could not be taken within its timeout."""

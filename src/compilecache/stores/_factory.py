"""Builds the store a configuration describes, from the tiers it can trust."""

from __future__ import annotations

from .._config import Config, current_config
from .._errors import ConfigError
from ._base import BaseStore
from ._codec_store import CodecStore
from ._codecs import Signing
from ._disk import DiskStore
from ._null import NullStore
from ._readonly import ReadOnly
from ._tiered import TieredStore, WritePolicy
from ._trust import TierTrust, record_skip, remote_trust


def open_store(config: Config | None = None) -> BaseStore:
    """The store for ``config`` (default: the process's configuration, read once, see
    ``current_config``; ``compilecache._runtime.runtime().store()`` is the process's store
    itself, opened once).

    Disabled: a :class:`NullStore`. Otherwise the disk store under ``config.dir`` bounded by
    ``config.max_size``; with ``config.remote``, a :class:`TieredStore` of disk then Redis whose
    remote writes happen in the background (none with ``config.remote_read_only``: the remote
    tier is then a :class:`ReadOnly` view); with ``config.secret``, each tier behind signing
    (``config.secret_previous`` verifies too).

    A tier that cannot be trusted (docs/trust.md) is left out, logged once at WARNING and
    recorded in :func:`skipped_tiers`: a local directory that is not the user's alone, an
    unsigned remote without ``remote_unsigned``; so is a tier that cannot be opened (a
    directory that cannot be created, a URL redis-py cannot read). Never raises for that:
    with no tier left, the store holds nothing and every process compiles.
    """
    config = config or current_config()
    if config.disable:
        return NullStore()

    def signed(store: BaseStore) -> BaseStore:
        if not config.secret:
            return store
        return CodecStore(store, [Signing(config.secret, config.secrets[1:])])

    tiers: list[BaseStore] = []
    try:
        tiers.append(signed(DiskStore(config.dir, max_bytes=config.max_size)))
    except ConfigError as error:  # not the user's alone, or not usable at all
        record_skip(TierTrust("local", str(config.dir), False, str(error)))
    remote = remote_trust(config)
    if remote is not None and not remote.trusted:
        record_skip(remote)
    elif remote is not None and config.remote:
        from ._redis import RedisStore

        try:
            shared = signed(RedisStore(config.remote))
            if config.remote_read_only:  # read, never written: not even by the lock
                shared = ReadOnly(shared, name="read-only redis")
            tiers.append(shared)
        except ConfigError as error:
            record_skip(TierTrust("remote", remote.location, False, str(error)))
    if not tiers:
        return NullStore(name="no trusted tier")
    if len(tiers) == 1:
        return tiers[0]
    # Each tier checks signatures itself, so that its counters say which tier held a forged
    # or foreign value (a hit served from a tier is a verified one).
    return TieredStore(tiers, write_policy=WritePolicy.LOCAL_THEN_REMOTE)

"""Builds the store a configuration describes."""

from __future__ import annotations

from .._config import Config
from ._base import BaseStore
from ._codec_store import CodecStore
from ._codecs import Signing
from ._disk import DiskStore
from ._null import NullStore
from ._tiered import TieredStore, WritePolicy


def open_store(config: Config | None = None) -> BaseStore:
    """The store for ``config`` (default: ``Config.from_env()``).

    Disabled: a :class:`NullStore`. Otherwise the disk store under ``config.dir`` bounded by
    ``config.max_size``; with ``config.remote``, a :class:`TieredStore` of disk then Redis whose
    remote writes happen in the background; with ``config.secret``, each tier behind signing.
    """
    config = config or Config.from_env()
    if config.disable:
        return NullStore()

    def signed(store: BaseStore) -> BaseStore:
        return CodecStore(store, [Signing(config.secret)]) if config.secret else store

    local = signed(DiskStore(config.dir, max_bytes=config.max_size))
    if not config.remote:
        return local
    from ._redis import RedisStore

    # Each tier checks signatures itself, so that its counters say which tier held a forged
    # or foreign value (a hit served from a tier is a verified one).
    return TieredStore(
        [local, signed(RedisStore(config.remote))], write_policy=WritePolicy.LOCAL_THEN_REMOTE
    )

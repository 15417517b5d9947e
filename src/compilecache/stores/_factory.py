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
    remote writes happen in the background; with ``config.secret``, all of it behind signing.
    """
    config = config or Config.from_env()
    if config.disable:
        return NullStore()
    store: BaseStore = DiskStore(config.dir, max_bytes=config.max_size)
    if config.remote:
        from ._redis import RedisStore

        store = TieredStore(
            [store, RedisStore(config.remote)], write_policy=WritePolicy.LOCAL_THEN_REMOTE
        )
    if config.secret:
        store = CodecStore(store, [Signing(config.secret)])
    return store

"""compilecache's storage layer: ``str`` keys to ``bytes`` values, in memory, on disk, in Redis.

See docs/stores.md for the guarantees of each store. :class:`RedisStore` is imported on first
use, so that ``import compilecache.stores`` does not import redis.

Where things go: a new backend is a module here with a :class:`BaseStore` subclass that writes
``get``, ``insert``, ``put``, ``delete``, ``keys`` and ``stats`` (and the capabilities it
offers: ``lock_factory``, ``maintenance``, ``flush``), added to ``tests/test_store_contract.py``;
a new wrapper subclasses :class:`WrappingStore` and overrides only what it changes. The layers
above see a store only through the protocol and its capabilities (``_base.py``): nothing
outside this package reads a store's internals, and this package imports nothing above it
(only ``_config``, ``_errors``, ``_locks``, ``_ratelimit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import BaseStore as BaseStore
from ._base import Store as Store
from ._base import default_executor as default_executor
from ._codec_store import CodecStore as CodecStore
from ._codecs import Codec as Codec
from ._codecs import Compression as Compression
from ._codecs import Signing as Signing
from ._disk import DiskStore as DiskStore
from ._factory import open_store as open_store
from ._keys import MAX_KEY_LENGTH as MAX_KEY_LENGTH
from ._keys import check_key as check_key
from ._layers import disk_store_of as disk_store_of
from ._layers import store_layers as store_layers
from ._memory import MemoryStore as MemoryStore
from ._null import NullStore as NullStore
from ._readonly import ReadOnly as ReadOnly
from ._seed import format_seed as format_seed
from ._seed import parse_seed as parse_seed
from ._stats import StoreStats as StoreStats
from ._tiered import TieredStore as TieredStore
from ._tiered import WritePolicy as WritePolicy
from ._trust import TierTrust as TierTrust
from ._trust import skipped_tiers as skipped_tiers
from ._wrapper import WrappingStore as WrappingStore

if TYPE_CHECKING:
    from ._breaker import CircuitBreaker as CircuitBreaker
    from ._maintenance import Maintenance as Maintenance
    from ._redis import RedisStore as RedisStore

# Imported on first use: redis, and what only maintenance (the command line) needs.
_LAZY = {"RedisStore": "._redis", "CircuitBreaker": "._breaker", "Maintenance": "._maintenance"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "disk_store_of",
    "store_layers",
    "BaseStore",
    "CircuitBreaker",
    "Codec",
    "CodecStore",
    "Compression",
    "DiskStore",
    "MAX_KEY_LENGTH",
    "Maintenance",
    "MemoryStore",
    "NullStore",
    "ReadOnly",
    "RedisStore",
    "Signing",
    "Store",
    "StoreStats",
    "TieredStore",
    "TierTrust",
    "WrappingStore",
    "WritePolicy",
    "check_key",
    "default_executor",
    "format_seed",
    "open_store",
    "parse_seed",
    "skipped_tiers",
]

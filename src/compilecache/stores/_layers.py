"""The concrete stores inside a composed one, through its ``layers`` capability."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._base import BaseStore
    from ._disk import DiskStore


def store_layers(store: BaseStore, *, writable: bool = False) -> list[BaseStore]:
    """The innermost stores of ``store``, fastest tier first (``store.layers()``)."""
    return list(store.layers(writable=writable))


def disk_store_of(store: BaseStore) -> DiskStore | None:
    """The disk store inside ``store``, or None."""
    from ._disk import DiskStore

    return next((layer for layer in store.layers() if isinstance(layer, DiskStore)), None)

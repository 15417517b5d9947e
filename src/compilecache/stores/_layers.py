"""The concrete stores inside a composed one (through codecs, read-only wrappers and tiers)."""

from __future__ import annotations

from typing import Any


def store_layers(store: Any) -> list[Any]:
    """The innermost stores of ``store``, fastest tier first: what a wrapper (``inner``) or a
    tiered store (``tiers``) is made of."""
    inner = getattr(store, "inner", None)
    if inner is not None:
        return store_layers(inner)
    tiers = getattr(store, "tiers", None)
    if tiers:
        return [layer for tier in tiers for layer in store_layers(tier)]
    return [store]


def disk_store_of(store: Any) -> Any:
    """The disk store inside ``store``, or None."""
    from ._disk import DiskStore

    return next((layer for layer in store_layers(store) if isinstance(layer, DiskStore)), None)


def writable_layers(store: Any) -> list[Any]:
    """The innermost stores of ``store`` that writes reach (not behind a read-only view)."""
    from ._readonly import ReadOnly

    if isinstance(store, ReadOnly):
        return []
    inner = getattr(store, "inner", None)
    if inner is not None:
        return writable_layers(inner)
    tiers = getattr(store, "tiers", None)
    if tiers:
        return [layer for tier in tiers for layer in writable_layers(tier)]
    return [store]

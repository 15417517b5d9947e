"""The concrete stores inside a composed one (through codecs, read-only wrappers and tiers)."""

from __future__ import annotations

from typing import Any


def store_layers(store: Any, *, writable: bool = False) -> list[Any]:
    """The innermost stores of ``store``, fastest tier first: what a wrapper (``inner``) or a
    tiered store (``tiers``) is made of. ``writable``: only those that writes reach (not
    behind a read-only view)."""
    if writable:
        from ._readonly import ReadOnly

        if isinstance(store, ReadOnly):
            return []
    inner = getattr(store, "inner", None)
    if inner is not None:
        return store_layers(inner, writable=writable)
    tiers = getattr(store, "tiers", None)
    if tiers:
        return [layer for tier in tiers for layer in store_layers(tier, writable=writable)]
    return [store]


def disk_store_of(store: Any) -> Any:
    """The disk store inside ``store``, or None."""
    from ._disk import DiskStore

    return next((layer for layer in store_layers(store) if isinstance(layer, DiskStore)), None)

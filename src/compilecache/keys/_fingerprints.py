"""Fingerprints for objects the canonical encoding does not know, registered by integrations.

An object in a closure or a global has no stable encoding in general (its state is anything),
so the dependency walk refuses it. Some objects do have a meaningful one: a torch module is
its classes' code, its hyperparameters and its tensors' names, shapes and dtypes (its weights
are bound live, not keyed). An integration registers a fingerprint for such a type; the walk
then keys the object by it instead of refusing. The registry is process-global and additive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: ``fingerprint(value, walker) -> bytes``: the walker records what the object depends on.
Fingerprint = Callable[[Any, Any], bytes]

_registry: dict[type, Fingerprint] = {}
_lock = threading.Lock()


def register_fingerprint(kind: type, fingerprint: Fingerprint) -> None:
    """Key instances of ``kind`` (and its subclasses) by ``fingerprint(value, walker)``."""
    with _lock:
        _registry[kind] = fingerprint


def fingerprint_for(value: Any) -> Fingerprint | None:
    """The fingerprint registered for ``value``'s type or its nearest base, or None."""
    if not _registry:
        return None
    for kind in type(value).__mro__:
        found = _registry.get(kind)
        if found is not None:
            return found
    return None

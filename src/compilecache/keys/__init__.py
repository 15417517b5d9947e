"""Cache keys built from named, canonically encoded components. See docs/keys.md.

A new input to every key is a component in ``_key.py`` (with a name ``explain`` shows); how a
kind of object is fingerprinted is ``_objects.py`` (data-like objects) or ``_fingerprints.py``
(registered fingerprints, for a library's own types); the code a function reaches is walked in
``_deps.py``. This package imports nothing of compilecache's but ``_errors``.
"""

from __future__ import annotations

from ._canonical import Unfingerprintable as Unfingerprintable
from ._canonical import encode as encode
from ._code import code_digest as code_digest
from ._key import FORMAT_VERSION as FORMAT_VERSION
from ._key import CacheKey as CacheKey
from ._key import Component as Component
from ._key import build_key as build_key

__all__ = [
    "FORMAT_VERSION",
    "CacheKey",
    "Component",
    "Unfingerprintable",
    "build_key",
    "code_digest",
    "encode",
]

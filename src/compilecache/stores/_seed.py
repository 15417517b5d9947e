"""The seed format that pre-populates a :class:`MemoryStore` from an environment variable or file.

A seed is a JSON object whose names are store keys and whose values are the stored bytes in
standard base64 (RFC 4648, padded)::

    {"fn/3f2a": "aGVsbG8=", "fn/9c1d": ""}

It is data only: nothing in it is executed, unpickled or evaluated. An empty or missing variable
or file is an empty seed. A key that appears twice with the same value is accepted; with two
different values it is an error, as is anything that is not such an object.
"""

from __future__ import annotations

import base64
import binascii
import json

from .._errors import CacheError, SeedFormatError
from ._keys import check_key


class _Pairs(list[tuple[str, object]]):
    """A JSON object as its (name, value) pairs in order, duplicates kept, so that a repeated
    key can be checked instead of silently winning."""


def parse_seed(text: str, source: str) -> dict[str, bytes]:
    """Parse seed ``text``; ``source`` names where it came from in error messages.

    Raises :class:`SeedFormatError` naming ``source`` and the offending item.

    >>> parse_seed('{"k": "aGk="}', "example")
    {'k': b'hi'}
    """
    if not text.strip():
        return {}
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as error:
        raise SeedFormatError(
            f"{source}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            'expected an object like {"key": "<base64 bytes>"}',
            setting=source,
        ) from None
    if not isinstance(pairs, _Pairs):
        raise SeedFormatError(
            f"{source}: expected a JSON object of key to base64 value, got {type(pairs).__name__}",
            setting=source,
        )
    seed: dict[str, bytes] = {}
    for key, encoded in pairs:
        try:
            check_key(key)
        except CacheError as error:
            raise SeedFormatError(f"{source}: bad key {key!r}: {error}", setting=source) from None
        if not isinstance(encoded, str):
            raise SeedFormatError(
                f"{source}: value of key {key!r} must be a base64 string, "
                f"got {'object' if isinstance(encoded, _Pairs) else type(encoded).__name__}",
                key=key,
                setting=source,
            )
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as error:
            raise SeedFormatError(
                f"{source}: value of key {key!r} is not valid base64 ({error})",
                key=key,
                setting=source,
            ) from None
        if key in seed and seed[key] != value:
            raise SeedFormatError(
                f"{source}: key {key!r} appears twice with different values; keep one",
                key=key,
                setting=source,
            )
        seed[key] = value
    return seed


def format_seed(items: dict[str, bytes]) -> str:
    """Return the seed text for ``items`` (the inverse of :func:`parse_seed`)."""
    return json.dumps(
        {check_key(k): base64.b64encode(v).decode("ascii") for k, v in items.items()},
        indent=None,
        sort_keys=True,
    )

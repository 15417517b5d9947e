"""Store key validation.

A key is 1 to :data:`MAX_KEY_LENGTH` visible ASCII characters (``!`` to ``~``, no spaces or
control characters). The rule is the intersection of what every backend stores verbatim (SQLite
text, Redis keys, file names are never derived from keys), and it keeps keys readable in logs.
Keys are never pickled: the layers above build them from canonical, hashed components.
"""

from __future__ import annotations

from .._errors import CacheTypeError, InvalidKeyError

MAX_KEY_LENGTH = 512


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid store key, else raise.

    Raises :class:`CacheTypeError` for a non-``str`` key and :class:`InvalidKeyError` for an
    empty, too long or non-visible-ASCII key.

    >>> check_key("fn/3f2a")
    'fn/3f2a'
    """
    if type(key) is not str:
        raise CacheTypeError(
            f"store keys must be str, got {type(key).__name__}: build a str key "
            "(for example a hex digest) instead",
        )
    # isascii/isprintable run in C; together with the space test they accept exactly 0x21-0x7E.
    if 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable() and " " not in key:
        return key
    raise InvalidKeyError(_explain(key), key=key[:80])


def _explain(key: str) -> str:
    if not key:
        return "store key is empty: use 1 to 512 visible ASCII characters"
    if len(key) > MAX_KEY_LENGTH:
        return (
            f"store key is {len(key)} characters long, the limit is {MAX_KEY_LENGTH}: "
            "hash long keys (for example with hashlib.sha256) first"
        )
    bad = next(ch for ch in key if not ("!" <= ch <= "~"))
    return (
        f"store key {key[:60]!r} holds {bad!r} (U+{ord(bad):04X}): keys may hold only visible "
        "ASCII characters '!' to '~', no spaces or control characters"
    )

"""What :class:`RedisStore` persists: key names, frames, the manifest of a split value.

For namespace ``ns`` and store key ``key``::

    ns:<key>                          the entry: a frame of the value, or a manifest
    ns#part:<key>:<token>:<i>         part i of a split value's frame (token: 32 hex digits,
                                      fresh for every write)

Parts live outside ``ns:*``: store keys may hold any visible ASCII, so no suffix inside that
prefix could mark a part unambiguously, while ``#`` cannot occur in a namespace. A manifest is
``b"CCM1"`` followed by a frame of ``{"token": ..., "parts": n, "length": bytes}``; the value's
frame, cut into the parts, carries the checksum of the whole value. Both frames are tagged
``compilecache-redis/<ns>``, so nothing moved from another namespace reads as valid.
"""

from __future__ import annotations

import json
import math
import re
from typing import NoReturn
from urllib.parse import urlsplit

from .._config import redact_url
from .._errors import CacheUsageError, ConfigError, CorruptEntryError
from . import _frame
from ._keys import check_key

# Where a frame starts with b"\x89CCE", a manifest starts with this, so one GET tells them apart.
MANIFEST = b"CCM1"
SCHEMES = ("redis", "rediss", "unix")
# No ":" so that "a" + key "b:c" and "a:b" + key "c" cannot share a Redis key; no "#" so part
# keys cannot collide with another namespace; no glob characters so the namespace can go into
# SCAN MATCH verbatim.
NAMESPACE = re.compile(r"[A-Za-z0-9_.\-/]{1,100}\Z")
MAX_PART_SIZE = 512 << 20  # Redis's limit for one string value
_TOKEN = re.compile(r"[0-9a-f]{32}\Z")


class Layout:
    """Names and encodings for one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.tag = f"compilecache-redis/{namespace}".encode()
        self.pattern = f"{namespace}:*"  # SCAN MATCH for every entry, no parts

    def entry(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def parts(self, key: str, token: str, count: int) -> list[str]:
        return [f"{self.namespace}#part:{key}:{token}:{i}" for i in range(count)]

    def key_of(self, name: bytes) -> str | None:
        """The store key of entry ``name`` from SCAN, or ``None`` if it is not a valid key."""
        key = name[len(self.namespace) + 1 :].decode("ascii", "replace")
        try:
            return check_key(key)
        except CacheUsageError:
            return None

    def manifest(self, token: str, count: int, length: int) -> bytes:
        body = json.dumps({"token": token, "parts": count, "length": length})
        return MANIFEST + _frame.encode(self.tag, body.encode())

    def read_manifest(self, raw: bytes) -> tuple[str, int, int]:
        """``(token, part count, frame length)`` from manifest ``raw``; raises
        :class:`CorruptEntryError` for a bad frame or impossible fields."""
        try:
            body = json.loads(_frame.decode(raw[len(MANIFEST) :], self.tag))
            token, count, length = body["token"], body["parts"], body["length"]
        except (ValueError, TypeError, KeyError) as error:
            raise CorruptEntryError(f"unreadable manifest: {error}") from None
        if not (
            isinstance(token, str)
            and _TOKEN.match(token)
            and type(count) is int
            and type(length) is int
            and 0 < count <= length
        ):
            raise CorruptEntryError(f"malformed manifest: {body!r}")
        return token, count, length


def check_settings(
    url: object, namespace: object, ttl: object, timeout: object, part_size: object
) -> None:
    """Raise :class:`ConfigError` naming the first bad :class:`RedisStore` argument."""

    def bad(setting: str, message: str) -> NoReturn:
        raise ConfigError(f"RedisStore: {setting} {message}", setting=setting)

    if not isinstance(url, str) or urlsplit(url).scheme not in SCHEMES:
        shown = redact_url(url) if isinstance(url, str) else url
        bad("url", f"must be a redis://, rediss:// or unix:// URL, got {shown!r}")
    if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
        bad("namespace", f"must be 1-100 of A-Z a-z 0-9 _ . - /, got {namespace!r}")
    for setting, seconds in (("ttl", ttl), ("timeout", timeout)):
        if seconds is None and setting == "ttl":
            continue
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not (seconds > 0 and math.isfinite(seconds))
        ):
            bad(setting, f"must be a positive number of seconds, got {seconds!r}")
    if type(part_size) is not int or not 1024 <= part_size <= MAX_PART_SIZE:
        bad("part_size", f"must be an int from 1024 to {MAX_PART_SIZE}, got {part_size!r}")

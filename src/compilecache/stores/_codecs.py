"""Value codecs above the stores: compression and signing, applied by :class:`CodecStore`.

A codec turns a value into stored bytes and back; it sees the key too, so that a signature binds
the value to its key (a signed entry copied under another key does not verify). Codecs compose:
``CodecStore(store, [Compression(), Signing(secret)])`` compresses, then signs; reading verifies,
then decompresses. Nothing here pickles: values are bytes in and bytes out.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import zlib
from collections.abc import Iterable
from typing import Protocol

from .._errors import ConfigError, CorruptEntryError, RejectedEntryError


class Codec(Protocol):
    """Turns values into stored bytes (``encode``) and back (``decode``).

    ``decode`` raises :class:`CorruptEntryError` for bytes it cannot read and
    :class:`RejectedEntryError` for bytes it refuses to trust.
    """

    name: str

    def encode(self, key: str, value: bytes) -> bytes: ...

    def decode(self, key: str, data: bytes) -> bytes: ...


_RAW, _ZLIB, _ZSTD = b"\x00", b"\x01", b"\x02"


def zstd_available() -> bool:
    """Whether the optional ``zstandard`` package is installed."""
    return importlib.util.find_spec("zstandard") is not None


class Compression:
    """Compresses values with zstandard when installed, else zlib; stores a value raw when
    compression would not shrink it. A one-byte marker records which, so a reader knows.

    >>> codec = Compression()
    >>> packed = codec.encode("k", b"a" * 1000)
    >>> len(packed) < 100, codec.decode("k", packed) == b"a" * 1000
    (True, True)
    """

    name = "compression"

    def __init__(self, *, level: int = 3, algorithm: str = "auto") -> None:
        if algorithm not in ("auto", "zstd", "zlib"):
            raise ConfigError(
                f"Compression: algorithm must be auto, zstd or zlib, not {algorithm!r}"
            )
        if algorithm == "zstd" and not zstd_available():
            raise ConfigError(
                "Compression: algorithm 'zstd' needs the zstandard package: "
                "pip install 'compilecache[zstd]'"
            )
        self.algorithm = "zstd" if algorithm == "auto" and zstd_available() else algorithm
        if self.algorithm == "auto":
            self.algorithm = "zlib"
        self.level = level
        self._zstd_c = self._zstd_d = None
        if self.algorithm == "zstd" or zstd_available():
            import zstandard

            self._zstd_c = zstandard.ZstdCompressor(level=level)
            self._zstd_d = zstandard.ZstdDecompressor()

    def encode(self, key: str, value: bytes) -> bytes:
        if self.algorithm == "zstd":
            assert self._zstd_c is not None
            packed, marker = self._zstd_c.compress(value), _ZSTD
        else:
            packed, marker = zlib.compress(value, min(self.level, 9)), _ZLIB
        if len(packed) >= len(value):
            return _RAW + value
        return marker + packed

    def decode(self, key: str, data: bytes) -> bytes:
        marker, body = data[:1], data[1:]
        try:
            if marker == _RAW:
                return body
            if marker == _ZLIB:
                return zlib.decompress(body)
            if marker == _ZSTD:
                if self._zstd_d is None:
                    raise CorruptEntryError(
                        f"entry {key!r} is zstd-compressed and zstandard is not installed: "
                        "pip install 'compilecache[zstd]'",
                        key=key,
                    )
                return bytes(self._zstd_d.decompress(body))
        except CorruptEntryError:
            raise
        except Exception as error:  # zlib.error, zstd.ZstdError: both mean unreadable bytes
            raise CorruptEntryError(
                f"entry {key!r} does not decompress: {error}", key=key
            ) from error
        raise CorruptEntryError(f"entry {key!r} has unknown compression marker {marker!r}", key=key)


_SIGNED = b"S1"
_MAC_SIZE = 32


class Signing:
    """HMAC-SHA256 signing: ``encode`` prefixes a tag over the key and value with ``secret``;
    ``decode`` refuses (:class:`RejectedEntryError`) anything whose tag does not verify.

    The secret must be at least 16 bytes. Entries written with another secret are rejected, as
    forged ones are, except under ``previous`` (the secrets before a rotation, which verify but
    never sign): a fleet rotates by signing with the new secret while still reading the old.

    >>> signer = Signing(b"0123456789abcdef")
    >>> signer.decode("k", signer.encode("k", b"v"))
    b'v'
    >>> Signing(b"new-secret-0123456", previous=[b"0123456789abcdef"]).decode(
    ...     "k", signer.encode("k", b"v"))
    b'v'
    """

    name = "signing"

    def __init__(self, secret: bytes | str, previous: Iterable[bytes | str] = ()) -> None:
        self._secret = _secret_bytes(secret, "COMPILECACHE_SECRET")
        self._previous = tuple(
            _secret_bytes(old, "COMPILECACHE_SECRET_PREVIOUS") for old in previous
        )

    def _mac(self, secret: bytes, key: str, value: bytes) -> bytes:
        # The key is length-prefixed so that (key, value) pairs cannot be re-split differently.
        encoded = key.encode("ascii")
        signer = hmac.new(secret, len(encoded).to_bytes(4, "big"), hashlib.sha256)
        signer.update(encoded)
        signer.update(value)
        return signer.digest()

    def encode(self, key: str, value: bytes) -> bytes:
        return _SIGNED + self._mac(self._secret, key, value) + value

    def decode(self, key: str, data: bytes) -> bytes:
        if data[:2] != _SIGNED or len(data) < 2 + _MAC_SIZE:
            raise RejectedEntryError(f"entry {key!r} is not signed", key=key)
        mac, value = data[2 : 2 + _MAC_SIZE], data[2 + _MAC_SIZE :]
        if hmac.compare_digest(mac, self._mac(self._secret, key, value)):
            return value
        for old in self._previous:
            if hmac.compare_digest(mac, self._mac(old, key, value)):
                return value
        raise RejectedEntryError(
            f"entry {key!r} has a signature that does not verify: forged, altered, or "
            "written with another COMPILECACHE_SECRET",
            key=key,
        )

    def __repr__(self) -> str:
        return "Signing(secret=<hidden>)"


def _secret_bytes(secret: bytes | str, setting: str) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise ConfigError(
            f"Signing: the secret must be at least 16 bytes ({setting}); "
            "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            setting=setting,
        )
    return key

"""The frame around every persisted value.

Layout (big-endian)::

    offset  size  field
    0       4     magic            b"\\x89CCE"
    4       1     format version   FORMAT_VERSION
    5       1     flags            reserved, 0
    6       2     tag length       T
    8       8     payload length   N
    16      8     checksum         XXH3-64 of the payload, seeded with XXH3-64 of bytes 0..15 + tag
    24      T     tag              UTF-8 namespace/version tag chosen by the store's owner
    24+T    N     payload

The checksum is seeded with the header and tag, so a frame moved under another tag or with an
edited length fails as surely as a flipped payload byte. XXH3 checks 256 KiB in about 4 us here,
where zlib's CRC-32 takes 76 us, which is why it is a dependency. The frame detects accidents
(truncation, bit rot, version skew), not forgery: signing is a codec above the stores.
"""

from __future__ import annotations

import struct

import xxhash

from .._errors import CorruptEntryError

MAGIC = b"\x89CCE"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">4sBBHQ")
_CHECKSUM = struct.Struct(">Q")
HEADER_SIZE = _PREFIX.size + _CHECKSUM.size  # 24 bytes before the tag
MAX_TAG_LENGTH = 255

_hash = xxhash.xxh3_64_intdigest


def encode_header(tag: bytes, payload: bytes) -> bytes:
    """Return the header and tag that precede ``payload`` in its frame."""
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"frame tag is {len(tag)} bytes, the limit is {MAX_TAG_LENGTH}")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(tag), len(payload))
    checksum = _hash(payload, _hash(prefix + tag))
    return prefix + _CHECKSUM.pack(checksum) + tag


def encode(tag: bytes, payload: bytes) -> bytes:
    """Return ``payload`` framed under ``tag``.

    >>> decode(encode(b"ns", b"data"), b"ns")
    b'data'
    """
    return encode_header(tag, payload) + payload


class FrameHeader:
    """A parsed header: what the payload that follows must look like."""

    __slots__ = ("checksum", "length", "prefix", "size", "tag")

    def __init__(self, prefix: bytes, tag: bytes, length: int, checksum: int) -> None:
        self.prefix = prefix
        self.tag = tag
        self.length = length
        self.checksum = checksum
        self.size = HEADER_SIZE + len(tag)

    def check_payload(self, payload: bytes) -> bytes:
        """Return ``payload`` if it has the recorded length and checksum, else raise."""
        if len(payload) != self.length:
            raise CorruptEntryError(
                f"truncated entry: payload is {len(payload)} bytes, header says {self.length}"
            )
        if _hash(payload, _hash(self.prefix + self.tag)) != self.checksum:
            raise CorruptEntryError("entry checksum mismatch: the stored bytes were altered")
        return payload


def parse_header(data: bytes, expected_tag: bytes | tuple[bytes, ...]) -> FrameHeader:
    """Parse the header at the start of ``data`` (which may hold more bytes after it).

    Raises :class:`CorruptEntryError` for a short or foreign header, another format version, or
    a tag other than ``expected_tag`` (or than each of them, given several).
    """
    if len(data) < HEADER_SIZE:
        raise CorruptEntryError(f"truncated entry: {len(data)} bytes, shorter than a frame header")
    magic, version, _flags, tag_length, length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntryError("not a compilecache entry: bad magic bytes")
    if version != FORMAT_VERSION:
        raise CorruptEntryError(
            f"entry has frame format {version}, this compilecache reads {FORMAT_VERSION}"
        )
    end = HEADER_SIZE + tag_length
    if len(data) < end:
        raise CorruptEntryError("truncated entry: the header's tag is cut short")
    tag = bytes(data[HEADER_SIZE:end])
    if tag != expected_tag and not (isinstance(expected_tag, tuple) and tag in expected_tag):
        raise CorruptEntryError(
            f"entry was written under tag {tag!r}, this store reads {expected_tag!r}"
        )
    (checksum,) = _CHECKSUM.unpack_from(data, _PREFIX.size)
    return FrameHeader(bytes(data[: _PREFIX.size]), tag, length, checksum)


_WHOLE = struct.Struct(">4sBBHQQ")


def read_tag(data: bytes) -> bytes | None:
    """The tag of the frame header at the start of ``data``, or None if it is not one."""
    if len(data) < HEADER_SIZE:
        return None
    magic, version, _flags, tag_length, _length = _PREFIX.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION or len(data) < HEADER_SIZE + tag_length:
        return None
    return bytes(data[HEADER_SIZE : HEADER_SIZE + tag_length])


def decode(data: bytes, expected_tag: bytes) -> bytes:
    """Return the payload of the frame ``data``; raise :class:`CorruptEntryError` if it is bad."""
    # The fast path (one unpack, one slice, two hashes) is the disk store's hit path; anything
    # unexpected falls through to the slow path, which says precisely what is wrong.
    if len(data) >= HEADER_SIZE:
        magic, version, _flags, tag_length, length, checksum = _WHOLE.unpack_from(data)
        start = HEADER_SIZE + tag_length
        if (
            magic == MAGIC
            and version == FORMAT_VERSION
            and data[HEADER_SIZE:start] == expected_tag
            and len(data) - start == length
        ):
            payload = data[start:]
            if _hash(payload, _hash(data[: _PREFIX.size] + expected_tag)) == checksum:
                return payload
    header = parse_header(data, expected_tag)
    return header.check_payload(data[header.size :])

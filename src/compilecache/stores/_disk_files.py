"""Payload files of the disk store: where large values live, how they are written and read.

A payload file gets a fresh random name and is written completely before the index row that
names it is committed, so no reader can reach a file that is still being written: a writer killed
mid-write leaves an orphan file that nothing points to, which :func:`sweep_orphans` removes later.
Files are never rewritten in place; a new value always gets a new file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from .._errors import CorruptEntryError
from . import _frame
from ._private_dir import make_private_directory

DATA_DIR = "data"
_USER = os.geteuid() if hasattr(os, "geteuid") else None
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a planted link is not followed
SUFFIX = ".val"


def new_relative_name() -> str:
    """A fresh random file name under ``data/``, spread over 256 x 256 directories."""
    token = os.urandom(16).hex()
    return f"{DATA_DIR}/{token[:2]}/{token[2:4]}/{token[4:]}{SUFFIX}"


_KEY_SEPARATOR = b"\x00"


def file_tag(tag: bytes, key: str) -> bytes:
    """The frame tag of ``key``'s payload file: the store's tag and the key, so that a damaged
    index can be rebuilt from the files (a key too long for a tag: the store's tag alone)."""
    keyed = tag + _KEY_SEPARATOR + key.encode("ascii")
    return keyed if len(keyed) <= _frame.MAX_TAG_LENGTH else tag


def key_of_tag(tag: bytes, store_tag: bytes) -> str | None:
    """The key a payload file's tag names under ``store_tag``, or None."""
    prefix = store_tag + _KEY_SEPARATOR
    if not tag.startswith(prefix):
        return None
    try:
        return tag[len(prefix) :].decode("ascii")
    except UnicodeDecodeError:
        return None


def write_payload_file(
    root: Path, relative: str, tag: bytes, payload: bytes, *, durable: bool
) -> int:
    """Write ``payload`` framed under ``tag`` to ``root / relative``; return the bytes written.

    With ``durable`` the file and its directory are fsync'ed before returning, so the commit of
    the row that points to it cannot outlive the data across a power failure.
    """
    path = root / relative
    header = _frame.encode_header(tag, payload)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:
        make_private_directory(path.parent, inside=root)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        # writev avoids concatenating header and payload, a copy of the whole value.
        written = os.writev(fd, [header, payload])
        total = len(header) + len(payload)
        while written < total:  # a short write (signal, full pipe-like FS): finish it
            rest = (header + payload)[written:]
            written += os.write(fd, rest)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_quietly(path)
        raise
    os.close(fd)
    if durable:
        fsync_directory(path.parent)
    return total


def read_payload_file(root: str, relative: str, tag: bytes | tuple[bytes, ...]) -> bytes:
    """Return the verified payload of the file ``root/relative`` (``root`` a plain string:
    pathlib's joining costs more than a cached hit's whole database lookup), framed under
    ``tag`` (or any of several: a key's own tag, or the store's tag of older files).

    Raises ``FileNotFoundError`` if it is gone and :class:`CorruptEntryError` if it fails its
    frame checks (including a file longer or shorter than its header says), or if someone
    other than the current user owns it or can write it (a planted file: docs/trust.md).
    """
    fd = os.open(f"{root}/{relative}", os.O_RDONLY | _NOFOLLOW)
    try:
        info = os.fstat(fd)
        if _USER is not None and (info.st_uid != _USER or info.st_mode & 0o022):
            raise CorruptEntryError(
                f"entry file {relative} is owned by uid {info.st_uid} with mode "
                f"{info.st_mode & 0o777:04o}: not written by this user, not loaded"
            )
        longest = len(tag) if isinstance(tag, bytes) else max(map(len, tag))
        header = _frame.parse_header(os.read(fd, _frame.HEADER_SIZE + longest), tag)
        if header.size != _frame.HEADER_SIZE + longest:
            os.lseek(fd, header.size, os.SEEK_SET)  # a shorter tag: the payload starts earlier
        expected = header.size + header.length
        actual = info.st_size
        if actual != expected:
            raise CorruptEntryError(
                f"entry file is {actual} bytes, its header says {expected}: truncated or extended"
            )
        # One read of exactly the payload into its own bytes object: no slicing out of a larger
        # buffer and no over-allocation that would be resized (both copy 256 KiB values).
        payload = os.read(fd, header.length)
        while len(payload) < header.length:  # a short read; rare, but allowed by POSIX
            more = os.read(fd, header.length - len(payload))
            if not more:
                break
            payload += more
    finally:
        os.close(fd)
    return header.check_payload(payload)


def read_file_tag(root: Path, relative: str) -> bytes | None:
    """The frame tag of a payload file, or None if it has no readable frame header."""
    try:
        with open(root / relative, "rb") as file:
            return _frame.read_tag(file.read(_frame.HEADER_SIZE + _frame.MAX_TAG_LENGTH))
    except OSError:
        return None


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def iter_payload_files(root: Path) -> Iterator[tuple[str, float]]:
    """Yield ``(relative name, mtime)`` of every payload file under ``root / data``."""
    data = root / DATA_DIR
    if not data.is_dir():
        return
    for first in os.scandir(data):
        if not first.is_dir():
            continue
        for second in os.scandir(first.path):
            if not second.is_dir():
                continue
            for entry in os.scandir(second.path):
                if entry.name.endswith(SUFFIX):
                    try:
                        mtime = entry.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    yield f"{DATA_DIR}/{first.name}/{second.name}/{entry.name}", mtime


def sweep_orphans(root: Path, referenced: set[str], grace: float) -> int:
    """Delete payload files not in ``referenced`` and older than ``grace`` seconds.

    The grace period protects files that a writer has written but not yet committed a row for.
    Returns how many files were removed.
    """
    cutoff = time.time() - grace
    removed = 0
    for relative, mtime in iter_payload_files(root):
        if relative not in referenced and mtime < cutoff:
            remove_quietly(root / relative)
            removed += 1
    return removed

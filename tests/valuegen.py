"""Self-verifying values for concurrency and crash tests: any partial or mixed value fails."""

from __future__ import annotations

import hashlib


def make_value(key: str, seq: int, size: int) -> bytes:
    prefix = f"{key}|{seq}|{size}|".encode()
    block = hashlib.sha256(prefix).digest()
    body = (block * (size // len(block) + 1))[:size]
    return prefix + body


def is_valid(key: str, value: bytes) -> bool:
    try:
        owner, seq, size, _ = value.split(b"|", 3)
        return owner.decode() == key and value == make_value(key, int(seq), int(size))
    except ValueError:
        return False

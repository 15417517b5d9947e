"""A canonical byte encoding of Python values, for hashing into cache keys.

The same value gives the same bytes in every process, whatever ``PYTHONHASHSEED`` says: dicts
and sets are ordered by their encoded elements, floats are written exactly (``float.hex``),
types and enum members by module and qualified name. Nothing is pickled. A value that has no
stable encoding raises :class:`Unfingerprintable` with a reason that names it.
"""

from __future__ import annotations

import enum
import struct
import sys
import types
from collections.abc import Callable
from typing import Any

from .._errors import CacheError


class Unfingerprintable(CacheError):
    """A value cannot be encoded stably; ``reason`` says which and why (for bypass counts).
    ``where``: once known, where the value was reached (an attribute path such as
    ``config.tokenizer``), which the reason then already names, so that callers up the walk
    do not prefix their own."""

    def __init__(self, reason: str, *, where: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where = where


def _frame(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack(">Q", len(body)) + body


def qualified_name(kind: Any) -> str:
    return f"{getattr(kind, '__module__', '?')}:{getattr(kind, '__qualname__', repr(kind))}"


def encode(value: Any, function: Callable[[Any], bytes] | None = None) -> bytes:
    """The canonical bytes of ``value``. ``function`` encodes functions, code objects and other
    objects met on the way (the key layer passes its fingerprinting, which raises
    :class:`Unfingerprintable` for objects it does not know); without it they are unencodable."""
    kind = type(value)
    if value is None:
        return b"N"
    if value is Ellipsis:
        return b"E"
    if kind is bool:
        return b"T" if value else b"F"
    if kind is int:
        return _frame(b"i", str(value).encode())
    if kind is float:
        return _frame(b"f", value.hex().encode())
    if kind is complex:
        return _frame(b"c", f"{value.real.hex()},{value.imag.hex()}".encode())
    if kind is str:
        return _frame(b"s", value.encode("utf-8", "surrogatepass"))
    if kind is bytes:
        return _frame(b"b", value)
    if kind in (tuple, list):
        tag = b"t" if kind is tuple else b"l"
        return _frame(tag, b"".join(encode(item, function) for item in value))
    if kind is dict:
        items = sorted(encode(k, function) + encode(v, function) for k, v in value.items())
        return _frame(b"d", b"".join(items))
    if kind in (set, frozenset):
        return _frame(b"S", b"".join(sorted(encode(item, function) for item in value)))
    if kind is range:
        return _frame(b"r", encode((value.start, value.stop, value.step)))
    if isinstance(value, enum.Enum):
        return _frame(b"e", f"{qualified_name(kind)}.{value.name}".encode())
    if isinstance(value, type):
        # With a walker, a class counts by its members (a class in a closure or default is
        # code the function runs); without one, by its name.
        body = function(value) if function is not None else qualified_name(value).encode()
        return _frame(b"y", body)
    if isinstance(value, (types.FunctionType, types.CodeType)) and function is not None:
        return _frame(b"p", function(value))
    dtype_or_device = _dtype_or_device(value)
    if dtype_or_device is not None:
        return _frame(b"D", dtype_or_device.encode())
    if function is not None:  # the key layer knows objects with a registered fingerprint
        return _frame(b"o", function(value))
    raise Unfingerprintable(f"a {qualified_name(kind)} object has no stable encoding")


def _dtype_or_device(value: Any) -> str | None:
    module = type(value).__module__
    if module.startswith(("torch", "numpy")) and type(value).__name__ in (
        "dtype",
        "device",
    ):
        return f"{module}.{type(value).__name__}:{value}"
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.dtype):  # numpy 2: numpy.dtypes.*DType
        return f"numpy.dtype:{value.str}"
    return None

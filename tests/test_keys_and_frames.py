"""Property tests for key validation and the frame around every persisted value."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compilecache import CacheTypeError, CorruptEntryError, InvalidKeyError
from compilecache.stores import MAX_KEY_LENGTH, _frame, check_key

VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


@given(st.text(VISIBLE, min_size=1, max_size=MAX_KEY_LENGTH))
def test_visible_ascii_keys_are_accepted(key: str) -> None:
    assert check_key(key) == key


@given(st.text(max_size=600))
def test_keys_are_accepted_exactly_when_visible_ascii_and_short(key: str) -> None:
    valid = 0 < len(key) <= MAX_KEY_LENGTH and all("!" <= ch <= "~" for ch in key)
    if valid:
        assert check_key(key) == key
    else:
        with pytest.raises(InvalidKeyError) as info:
            check_key(key)
        assert isinstance(info.value, ValueError)
        assert "key" in str(info.value)


@given(st.one_of(st.binary(), st.integers(), st.none(), st.lists(st.text())))
def test_non_str_keys_are_type_errors(key: object) -> None:
    with pytest.raises(CacheTypeError):
        check_key(key)


def test_key_error_messages_say_what_to_do() -> None:
    with pytest.raises(InvalidKeyError, match="hash long keys"):
        check_key("a" * 513)
    with pytest.raises(InvalidKeyError, match=r"U\+0020"):
        check_key("a b")
    with pytest.raises(InvalidKeyError, match="empty"):
        check_key("")


TAGS = st.binary(max_size=40)


@given(TAGS, st.binary(max_size=5000))
def test_frame_round_trips(tag: bytes, payload: bytes) -> None:
    assert _frame.decode(_frame.encode(tag, payload), tag) == payload


@given(TAGS, st.binary(min_size=1, max_size=400), st.data())
def test_any_flipped_bit_is_detected(tag: bytes, payload: bytes, data: st.DataObject) -> None:
    framed = bytearray(_frame.encode(tag, payload))
    index = data.draw(st.integers(0, len(framed) - 1))
    bit = data.draw(st.integers(0, 7))
    framed[index] ^= 1 << bit
    with pytest.raises(CorruptEntryError):
        _frame.decode(bytes(framed), tag)


@given(TAGS, st.binary(max_size=400), st.data())
def test_any_truncation_or_extension_is_detected(
    tag: bytes, payload: bytes, data: st.DataObject
) -> None:
    framed = _frame.encode(tag, payload)
    cut = data.draw(st.integers(0, len(framed) - 1))
    with pytest.raises(CorruptEntryError):
        _frame.decode(framed[:cut], tag)
    with pytest.raises(CorruptEntryError):
        _frame.decode(framed + data.draw(st.binary(min_size=1, max_size=8)), tag)


@given(TAGS, TAGS, st.binary(max_size=100))
def test_other_tag_is_rejected(tag: bytes, other: bytes, payload: bytes) -> None:
    framed = _frame.encode(tag, payload)
    if other != tag:
        with pytest.raises(CorruptEntryError, match="tag"):
            _frame.decode(framed, other)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_decode_silently(junk: bytes) -> None:
    with pytest.raises(CorruptEntryError):
        _frame.decode(junk, b"t")


def test_other_format_version_is_named() -> None:
    framed = bytearray(_frame.encode(b"t", b"payload"))
    framed[4] = 9
    with pytest.raises(CorruptEntryError, match="format 9"):
        _frame.decode(bytes(framed), b"t")


def test_header_layout_is_documented_layout() -> None:
    framed = _frame.encode(b"tag", b"xyz")
    magic, version, flags, tag_length, length, _checksum = struct.unpack_from(">4sBBHQQ", framed)
    assert (magic, version, flags, tag_length, length) == (b"\x89CCE", 1, 0, 3, 3)
    assert framed[24:27] == b"tag" and framed[27:] == b"xyz"

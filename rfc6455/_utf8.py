"""Incremental UTF-8 decoding with RFC 6455's fail-fast rule (§8.1): an invalid sequence
is refused as soon as no continuation could make it valid."""

from __future__ import annotations

import codecs

from ._errors import InvalidUTF8

__all__ = ["decode_utf8"]

_utf_8_decode = codecs.utf_8_decode


def decode_utf8(data: bytes, final: bool) -> tuple[str, int]:
    """Decode ``data``: the text and the bytes used; the rest (not ``final``) is
    an incomplete sequence. Fails as soon as the bytes can never be valid UTF-8."""
    try:
        text, used = _utf_8_decode(data, "strict", final)
    except UnicodeDecodeError:
        raise InvalidUTF8("invalid UTF-8 in text message") from None
    # CPython waits for a third byte before refusing ED A0..BF, the start of a
    # UTF-16 surrogate (U+D800..U+DFFF), which no continuation can make valid.
    if len(data) - used >= 2 and data[used] == 0xED and data[used + 1] >= 0xA0:
        raise InvalidUTF8("invalid UTF-8 in text message")
    return text, used

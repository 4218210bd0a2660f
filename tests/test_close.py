"""Tests for rfc6455._close: close frame payloads (RFC 6455 §5.5.1, §7.4)."""

from __future__ import annotations

import struct

import pytest

from rfc6455 import (
    InvalidUTF8,
    LocalProtocolError,
    ProtocolError,
    build_close_payload,
    parse_close_payload,
)

VALID = [*range(1000, 1004), *range(1007, 1015), 3000, 3001, 3999, 4000, 4321, 4999]
INVALID = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1999, 2000, 2999, 5000, 0x7FFF, 65535]


class TestSection5_5_1Parse:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            (b"", (1005, "")),
            (b"\x03\xe8", (1000, "")),
            (b"\x03\xe9bye", (1001, "bye")),
            (b"\x0f\xa0" + "ünï €😀".encode(), (4000, "ünï €😀")),
            (b"\x03\xe8" + b"r" * 123, (1000, "r" * 123)),
        ],
    )
    def test_table(self, payload: bytes, expected: tuple[int, str]) -> None:
        assert parse_close_payload(payload) == expected

    @pytest.mark.parametrize("code", VALID)
    def test_valid_codes(self, code: int) -> None:
        assert parse_close_payload(struct.pack("!H", code) + b"why") == (code, "why")

    @pytest.mark.parametrize("code", INVALID)
    def test_invalid_codes(self, code: int) -> None:
        with pytest.raises(ProtocolError) as info:
            parse_close_payload(struct.pack("!H", code))
        assert info.value.close_code == 1002

    @pytest.mark.parametrize("payload", [b"\x03", b"\x00", b"\xff"])
    def test_one_byte(self, payload: bytes) -> None:
        # §5.5.1: if there is a body, its first two bytes are the status code.
        with pytest.raises(ProtocolError) as info:
            parse_close_payload(payload)
        assert info.value.close_code == 1002

    @pytest.mark.parametrize(
        "reason", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80", b"trunc\xe2\x82", b"\xf4\x90\x80\x80"]
    )
    def test_invalid_utf8_reason(self, reason: bytes) -> None:
        with pytest.raises(InvalidUTF8) as info:
            parse_close_payload(b"\x03\xe8" + reason)
        assert info.value.close_code == 1007

    def test_accepts_bytes_like(self) -> None:
        assert parse_close_payload(bytearray(b"\x03\xe8a")) == (1000, "a")


class TestSection5_5_1Build:
    @pytest.mark.parametrize(
        ("code", "reason", "expected"),
        [
            (None, "", b""),
            (1005, "", b""),
            (1000, "", b"\x03\xe8"),
            (1001, "bye", b"\x03\xe9bye"),
            (4999, "é", b"\x13\x87\xc3\xa9"),
        ],
    )
    def test_table(self, code: int | None, reason: str, expected: bytes) -> None:
        assert build_close_payload(code, reason) == expected

    @pytest.mark.parametrize("code", VALID)
    def test_round_trip(self, code: int) -> None:
        assert parse_close_payload(build_close_payload(code, "r€")) == (code, "r€")

    @pytest.mark.parametrize("code", [c for c in INVALID if c != 1005] + [-1, 70000])
    def test_invalid_codes(self, code: int) -> None:
        with pytest.raises(LocalProtocolError):
            build_close_payload(code)

    def test_reason_length(self) -> None:
        # A control frame payload is at most 125 bytes: 2 for the code, 123 for the reason.
        assert len(build_close_payload(1000, "x" * 123)) == 125
        assert len(build_close_payload(1000, "é" * 61 + "x")) == 125
        with pytest.raises(LocalProtocolError):
            build_close_payload(1000, "x" * 124)
        with pytest.raises(LocalProtocolError):
            build_close_payload(1000, "é" * 62)

    @pytest.mark.parametrize("code", [None, 1005])
    def test_reason_without_code(self, code: int | None) -> None:
        with pytest.raises(LocalProtocolError):
            build_close_payload(code, "no code")

"""Tests for rfc6455._constants, checked against the RFC 6455 text (§5.2, §7.4, §11)."""

from __future__ import annotations

import pytest

from rfc6455 import DEFAULT_MAX_MESSAGE_SIZE, CloseCode, Opcode, is_valid_close_code
from rfc6455._constants import GUID, MAX_CONTROL_PAYLOAD


class TestSection11_8Opcodes:
    def test_values(self) -> None:
        assert {op.name: int(op) for op in Opcode} == {
            "CONTINUATION": 0x0,
            "TEXT": 0x1,
            "BINARY": 0x2,
            "CLOSE": 0x8,
            "PING": 0x9,
            "PONG": 0xA,
        }

    @pytest.mark.parametrize("op", list(Opcode))
    def test_is_control(self, op: Opcode) -> None:
        # §5.5: "Control frames are identified by opcodes where the most
        # significant bit of the opcode is 1."
        assert op.is_control is bool(op & 0x8)


class TestSection7_4CloseCodes:
    def test_values(self) -> None:
        assert {c.name: int(c) for c in CloseCode} == {
            "NORMAL_CLOSURE": 1000,
            "GOING_AWAY": 1001,
            "PROTOCOL_ERROR": 1002,
            "UNSUPPORTED_DATA": 1003,
            "NO_STATUS_RCVD": 1005,
            "ABNORMAL_CLOSURE": 1006,
            "INVALID_FRAME_PAYLOAD_DATA": 1007,
            "POLICY_VIOLATION": 1008,
            "MESSAGE_TOO_BIG": 1009,
            "MANDATORY_EXTENSION": 1010,
            "INTERNAL_ERROR": 1011,
            "SERVICE_RESTART": 1012,
            "TRY_AGAIN_LATER": 1013,
            "BAD_GATEWAY": 1014,
            "TLS_HANDSHAKE": 1015,
        }

    def test_valid_codes_over_the_whole_range(self) -> None:
        # §7.4.1/§7.4.2 and the IANA registry: 1000-1003, 1007-1014 defined for
        # the wire; 1004 reserved; 1005, 1006, 1015 never sent; 3000-4999
        # registered and private use; everything else invalid.
        def expected(code: int) -> bool:
            return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999

        mismatches = [c for c in range(70000) if is_valid_close_code(c) is not expected(c)]
        assert mismatches == []

    @pytest.mark.parametrize("code", [-1, -1000, 1 << 16, 1 << 40])
    def test_out_of_range(self, code: int) -> None:
        assert not is_valid_close_code(code)

    @pytest.mark.parametrize("code", [1005, 1006, 1015])
    def test_reserved_for_reporting_only(self, code: int) -> None:
        assert code in set(CloseCode)
        assert not is_valid_close_code(code)


class TestLimits:
    def test_guid(self) -> None:
        # §1.3
        assert GUID == b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def test_control_payload(self) -> None:
        # §5.5: "All control frames MUST have a payload length of 125 bytes or less"
        assert MAX_CONTROL_PAYLOAD == 125

    def test_default_message_size(self) -> None:
        assert DEFAULT_MAX_MESSAGE_SIZE == 1 << 20

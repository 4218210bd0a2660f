"""Opcodes, close codes and default limits, each with the RFC text behind it."""

from __future__ import annotations

import enum

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FRAGMENT_OVERHEAD",
    "GUID",
    "MAX_CONTROL_PAYLOAD",
    "CloseCode",
    "Opcode",
    "is_valid_close_code",
]

#: RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key before hashing.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
MAX_CONTROL_PAYLOAD = 125

#: 1 MiB, as websockets and gorilla/websocket's common deployments: large enough for
#: chat and market data, small enough that 1,000 abusive peers cost at most 1 GiB.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

#: Bytes charged against the message size limit for every frame of a fragmented
#: message: a message of N bytes in F fragments counts N + F * FRAGMENT_OVERHEAD
#: (an unfragmented message counts N). A fragment holds no memory of its own once
#: its payload is appended to the message's buffer, but each one is a frame to
#: decode, check and account for, and an empty one is free to send: without a
#: charge, a peer could keep one message open forever with empty continuation
#: frames (RFC 6455 §5.4 sets no bound on their number). 16 is a frame header
#: rounded up (2 to 14 bytes on the wire), so the limit bounds a message roughly
#: by its size on the wire, and the number of frames in one message by
#: max_message_size / 16 (65,536 at the default 1 MiB). What it takes from
#: legitimately fragmented messages: 20% of the limit in 64-byte fragments (the
#: smallest the Autobahn Testsuite sends: cases 9.3.1 and 9.4.1, 4 MiB in 65,536
#: fragments, count 5 MiB against autobahn-server's 64 MiB), 1.6% in 1 KiB
#: fragments, under 0.4% from 4 KiB up.
FRAGMENT_OVERHEAD = 16


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8). 0x3-0x7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Control frames have the high bit of the opcode set (§5.5)."""
        return self >= 0x8


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1, IANA registry §11.7)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    #: §7.4.1: 1005 "MUST NOT be set as a status code in a Close control frame".
    NO_STATUS_RCVD = 1005
    #: §7.4.1: 1006 "MUST NOT be set as a status code in a Close control frame".
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    #: §7.4.1: 1015 (TLS handshake failure) "MUST NOT be set ... in a Close control frame".
    TLS_HANDSHAKE = 1015


_WIRE_CODES_1000_RANGE = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def is_valid_close_code(code: int) -> bool:
    """True if ``code`` may appear in a close frame on the wire (§7.4.1, §7.4.2).

    1000-1003 and 1007-1014 are defined for use on the wire; 3000-3999 are
    registered with IANA, 4000-4999 are private use. Everything else (0-999,
    1004-1006, 1015, the unassigned 1016-2999 and anything >= 5000) is invalid.
    """
    return code in _WIRE_CODES_1000_RANGE or 3000 <= code <= 4999

"""Tests for rfc6455._connection: the sans-I/O connection, both roles, from RFC 6455.

Test classes are named after the RFC sections they check. Incoming frames are
built by hand (tests/helpers.py) and outgoing bytes parsed by hand, so the
serializer and decoder under test never check themselves.
"""

from __future__ import annotations

import os

import pytest
from helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RFC_KEY,
    ConnectionPair,
    chunks,
    close_payload,
    feed,
    feed_bytewise,
    frame,
    parse_close,
    parse_frames,
    utf8_first_invalid,
)

from rfc6455 import (
    DEFAULT_MAX_MESSAGE_SIZE,
    NEED_DATA,
    BinaryChunk,
    BinaryMessage,
    ClientConnection,
    Close,
    Connection,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionFailed,
    ConnectionLost,
    ConnectionState,
    Event,
    Extension,
    ExtensionError,
    InvalidUTF8,
    LocalProtocolError,
    MessageTooBig,
    Ping,
    Pong,
    ProtocolError,
    ServerConnection,
    TextChunk,
    TextMessage,
    _connection,
)
from rfc6455._constants import FRAGMENT_OVERHEAD

ROLES = ["server", "client"]


def make(role: str, **kwargs: object) -> Connection:
    cls = ServerConnection if role == "server" else ClientConnection
    return cls(**kwargs)  # type: ignore[arg-type]


def f(role: str, opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A frame as the peer of ``role`` sends it: masked towards a server (§5.3)."""
    key = os.urandom(4) if role == "server" else None
    return frame(opcode, payload, mask=key, **kwargs)  # type: ignore[arg-type]


def assert_failed(
    conn: Connection, events: list[Event], code: int, *, before: list[Event] | None = None
) -> None:
    """The connection failed with ``code``: event, close frame queued, state CLOSED."""
    assert events[:-1] == (before or [])
    last = events[-1]
    assert isinstance(last, ConnectionFailed), events
    assert last.code == code
    assert len(last.reason.encode("utf-8")) <= 123
    sent_code, reason = parse_close(conn.data_to_send(), masked=not conn.is_server)
    assert sent_code == code
    assert reason.decode("utf-8") == last.reason
    assert conn.state is ConnectionState.CLOSED
    assert conn.failure is not None and conn.failure.close_code == code
    assert conn.should_close_transport
    assert conn.close_sent == Close(code=code, reason=last.reason)


# Rows: (name, bytes from the peer of ``role`` -- a function of role, close code).
def _rows() -> list[tuple[str, object, int]]:
    rows: list[tuple[str, object, int]] = []
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        rows.append((f"reserved opcode {op:#x}", lambda r, op=op: f(r, op, b"x"), 1002))
    for rsv in range(1, 8):
        rows.append((f"rsv {rsv:03b} on text", lambda r, v=rsv: f(r, OP_TEXT, b"x", rsv=v), 1002))
    rows += [
        ("rsv1 on ping", lambda r: f(r, OP_PING, b"", rsv=4), 1002),
        (
            "rsv1 on continuation",
            lambda r: f(r, OP_TEXT, b"a", fin=False) + f(r, OP_CONT, b"b", rsv=4),
            1002,
        ),
        ("ping of 126 bytes", lambda r: f(r, OP_PING, b"p" * 126), 1002),
        ("pong of 200 bytes", lambda r: f(r, OP_PONG, b"p" * 200), 1002),
        ("close of 126 bytes", lambda r: f(r, OP_CLOSE, close_payload(1000, b"x" * 124)), 1002),
        ("fragmented ping", lambda r: f(r, OP_PING, b"p", fin=False), 1002),
        ("fragmented pong", lambda r: f(r, OP_PONG, b"p", fin=False), 1002),
        ("fragmented close", lambda r: f(r, OP_CLOSE, close_payload(1000), fin=False), 1002),
        (
            "64-bit length with the MSB set",
            lambda r: f(r, OP_BINARY, b"", length_form=64, declared_length=1 << 63),
            1002,
        ),
        ("non-minimal 16-bit length", lambda r: f(r, OP_BINARY, b"abc", length_form=16), 1002),
        ("non-minimal 64-bit length", lambda r: f(r, OP_BINARY, b"abc", length_form=64), 1002),
        (
            "non-minimal 64-bit length 65535",
            lambda r: f(r, OP_BINARY, b"a" * 65535, length_form=64),
            1002,
        ),
        ("continuation without a message", lambda r: f(r, OP_CONT, b"x"), 1002),
        ("final continuation without a message", lambda r: f(r, OP_CONT, b"", fin=True), 1002),
        (
            "text inside a fragmented text message",
            lambda r: f(r, OP_TEXT, b"a", fin=False) + f(r, OP_TEXT, b"b"),
            1002,
        ),
        (
            "binary inside a fragmented text message",
            lambda r: f(r, OP_TEXT, b"a", fin=False) + f(r, OP_BINARY, b"b"),
            1002,
        ),
        (
            "text with invalid UTF-8 inside a fragmented text message",
            lambda r: f(r, OP_TEXT, b"", fin=False) + f(r, OP_TEXT, b"\xff\xff", fin=False),
            1002,
        ),
        (
            "text with invalid UTF-8 inside a fragmented binary message",
            lambda r: f(r, OP_BINARY, b"a", fin=False) + f(r, OP_TEXT, b"\xff\xff"),
            1002,
        ),
        (
            "binary inside a fragmented binary message",
            lambda r: f(r, OP_BINARY, b"a", fin=False) + f(r, OP_BINARY, b"b", fin=False),
            1002,
        ),
        (
            "continuation after a finished message",
            lambda r: f(r, OP_TEXT, b"a", fin=False) + f(r, OP_CONT, b"b") + f(r, OP_CONT, b"c"),
            1002,
        ),
        ("invalid UTF-8 in a text frame", lambda r: f(r, OP_TEXT, b"ab\xffcd"), 1007),
        ("lone continuation byte", lambda r: f(r, OP_TEXT, b"\x80"), 1007),
        ("overlong encoding", lambda r: f(r, OP_TEXT, b"\xc0\xaf"), 1007),
        ("UTF-16 surrogate", lambda r: f(r, OP_TEXT, b"\xed\xa0\x80"), 1007),
        ("code point over U+10FFFF", lambda r: f(r, OP_TEXT, b"\xf4\x90\x80\x80"), 1007),
        ("truncated sequence at message end", lambda r: f(r, OP_TEXT, b"a\xe2\x82"), 1007),
        (
            "truncated sequence at the end of a fragmented message",
            lambda r: f(r, OP_TEXT, b"a\xe2", fin=False) + f(r, OP_CONT, b"\x82"),
            1007,
        ),
        (
            "invalid UTF-8 in the first fragment of an unfinished message",
            lambda r: f(r, OP_TEXT, b"ok\xff", fin=False),
            1007,
        ),
        (
            "invalid UTF-8 in a middle fragment",
            lambda r: f(r, OP_TEXT, b"ok", fin=False) + f(r, OP_CONT, b"\xc3(", fin=False),
            1007,
        ),
        (
            "invalid UTF-8 in a close reason",
            lambda r: f(r, OP_CLOSE, close_payload(1000, b"\xff")),
            1007,
        ),
        ("close payload of one byte", lambda r: f(r, OP_CLOSE, b"\x03"), 1002),
    ]
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        rows.append(
            (f"close code {code}", lambda r, c=code: f(r, OP_CLOSE, close_payload(c, b"x")), 1002)
        )
    return rows


REJECTIONS = _rows()
REJECTION_IDS = [row[0] for row in REJECTIONS]
#: Rows whose bytes hold a complete message before the error.
DELIVERED_FIRST: dict[str, list[Event]] = {
    "continuation after a finished message": [TextMessage(data="ab")],
}


def _good(role: str) -> bytes:
    return f(role, OP_TEXT, b"first") + f(role, OP_PONG, b"pp")


GOOD_EVENTS: list[Event] = [TextMessage(data="first"), Pong(payload=b"pp")]


class TestRejections:
    """Every rejection, with the close code of RFC 6455 §7.4.1 (docs/close-codes.md)."""

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "wire", "code"), REJECTIONS, ids=REJECTION_IDS)
    def test_whole(self, role: str, name: str, wire: object, code: int) -> None:
        conn = make(role)
        events = conn.receive(wire(role))  # type: ignore[operator]
        assert_failed(conn, events, code, before=DELIVERED_FIRST.get(name))

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "wire", "code"), REJECTIONS, ids=REJECTION_IDS)
    def test_byte_by_byte(self, role: str, name: str, wire: object, code: int) -> None:
        conn = make(role)
        data: bytes = wire(role)  # type: ignore[operator]
        if len(data) > 1000:
            events = feed(conn, chunks(data, 101))
        else:
            events = feed_bytewise(conn, data)
        assert_failed(conn, events, code, before=DELIVERED_FIRST.get(name))

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "wire", "code"), REJECTIONS, ids=REJECTION_IDS)
    def test_good_frames_first_and_trailing_data(
        self, role: str, name: str, wire: object, code: int
    ) -> None:
        # Wire order: what came before the error is delivered first; what
        # comes after it (even in the same chunk) is never reported.
        conn = make(role)
        data = _good(role) + wire(role) + _good(role)  # type: ignore[operator]
        events = conn.receive(data)
        assert_failed(conn, events, code, before=GOOD_EVENTS + DELIVERED_FIRST.get(name, []))
        assert conn.receive(_good(role)) == []
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(
        "bad",
        [
            lambda r: f(r, 5, b"x"),  # Autobahn 4.1.3: reserved opcode after a message
            lambda r: f(r, OP_CONT, b"x"),  # Autobahn 5.x: stray continuation
            lambda r: f(r, OP_TEXT, b"\xff"),  # invalid UTF-8 in the next message
        ],
        ids=["reserved opcode", "stray continuation", "invalid UTF-8"],
    )
    def test_echo_server_answers_message_before_failure(self, role: str, bad: object) -> None:
        # Issue 2: "a message that arrived before a protocol error in the same
        # chunk is delivered before the failure, so an echo server answers it
        # before it closes". An echo loop pulls events one at a time.
        conn = make(role)
        conn.receive_data(f(role, OP_TEXT, b"Hello") + bad(role))  # type: ignore[operator]
        assert conn.next_event() == TextMessage(data="Hello")
        echo = conn.send_text("Hello")
        failed = conn.next_event()
        assert isinstance(failed, ConnectionFailed)
        out = echo + conn.data_to_send()
        frames = parse_frames(out, masked=role == "client")
        assert [fr.opcode for fr in frames] == [OP_TEXT, OP_CLOSE]
        assert frames[0].payload == b"Hello"
        assert conn.state is ConnectionState.CLOSED

    @pytest.mark.parametrize("role", ROLES)
    def test_unmasked_frame_to_a_server_masked_to_a_client(self, role: str) -> None:
        # §5.1: a server MUST close on an unmasked frame; a client on a masked one.
        conn = make(role)
        wrong = frame(OP_TEXT, b"hi", mask=None if role == "server" else RFC_KEY)
        assert_failed(conn, conn.receive(wrong), 1002)
        assert isinstance(conn.failure, ProtocolError)

    @pytest.mark.parametrize("role", ROLES)
    def test_failure_while_closing_queues_no_second_close(self, role: str) -> None:
        conn = make(role)
        conn.close(1000)
        events = conn.receive(f(role, OP_TEXT, b"\xff"))
        assert len(events) == 1
        assert isinstance(events[0], ConnectionFailed) and events[0].code == 1007
        assert conn.data_to_send() == b""
        assert conn.state is ConnectionState.CLOSED
        assert conn.close_sent == Close(code=1000, reason="")

    @pytest.mark.parametrize("role", ROLES)
    def test_replies_leave_in_order(self, role: str) -> None:
        # The pong for the pings before the error (one, for the latest: §5.5.3)
        # goes out before the close frame.
        conn = make(role)
        events = conn.receive(f(role, OP_PING, b"1") + f(role, OP_PING, b"2") + f(role, 3))
        assert events[:2] == [Ping(payload=b"1"), Ping(payload=b"2")]
        frames = parse_frames(conn.data_to_send(), masked=role == "client")
        assert [(fr.opcode, fr.payload[:2]) for fr in frames] == [
            (OP_PONG, b"2"),
            (OP_CLOSE, b"\x03\xea"),
        ]

    @pytest.mark.parametrize("role", ROLES)
    def test_failure_keeps_no_traceback(self, role: str) -> None:
        # A traceback would pin the frames (and receive-buffer views) for the
        # life of the connection.
        conn = make(role)
        conn.receive(f(role, OP_TEXT, b"\xff"))
        assert isinstance(conn.failure, InvalidUTF8)
        assert conn.failure.__traceback__ is None

    @pytest.mark.parametrize("role", ROLES)
    def test_eof_after_failure_reports_nothing(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, 3))
        assert conn.receive(b"") == []


class TestSection5_7Examples:
    def test_client_receives_unmasked_hello(self) -> None:
        conn = ClientConnection()
        assert conn.receive(bytes.fromhex("810548656c6c6f")) == [TextMessage(data="Hello")]

    def test_server_receives_masked_hello(self) -> None:
        conn = ServerConnection()
        wire = bytes.fromhex("818537fa213d7f9f4d5158")
        assert conn.receive(wire) == [TextMessage(data="Hello")]
        conn = ServerConnection()
        assert feed_bytewise(conn, wire) == [TextMessage(data="Hello")]

    def test_client_receives_fragmented_hello(self) -> None:
        wire = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
        assert ClientConnection().receive(wire) == [TextMessage(data="Hello")]
        assert feed_bytewise(ClientConnection(), wire) == [TextMessage(data="Hello")]
        assert feed_bytewise(ClientConnection(stream_messages=True), wire) == [
            TextChunk(data="Hel", final=False),
            TextChunk(data="lo", final=True),
        ]

    def test_client_receives_unmasked_ping_and_answers(self) -> None:
        conn = ClientConnection()
        assert conn.receive(bytes.fromhex("890548656c6c6f")) == [Ping(payload=b"Hello")]
        [pong] = parse_frames(conn.data_to_send(), masked=True)
        assert (pong.fin, pong.opcode, pong.payload) == (True, OP_PONG, b"Hello")

    def test_server_receives_masked_pong(self) -> None:
        conn = ServerConnection()
        assert conn.receive(bytes.fromhex("8a8537fa213d7f9f4d5158")) == [Pong(payload=b"Hello")]
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize(
        ("header", "size"),
        [("827e0100", 256), ("827f0000000000010000", 65536)],
    )
    def test_client_receives_large_binary(self, header: str, size: int) -> None:
        payload = bytes(i % 251 for i in range(size))
        conn = ClientConnection()
        assert conn.receive(bytes.fromhex(header) + payload) == [BinaryMessage(data=payload)]

    def test_server_sends_rfc_bytes(self) -> None:
        conn = ServerConnection()
        assert conn.send_text("Hello") == bytes.fromhex("810548656c6c6f")
        assert conn.send_fragment("Hel", final=False) == bytes.fromhex("010348656c")
        assert conn.send_fragment("lo", final=True) == bytes.fromhex("80026c6f")
        assert conn.send_ping(b"Hello") == bytes.fromhex("890548656c6c6f")
        assert conn.send_pong(b"Hello") == bytes.fromhex("8a0548656c6c6f")
        assert conn.send_binary(bytes(256))[:4] == bytes.fromhex("827e0100")
        big = conn.send_binary(bytes(65536))
        assert big[:10] == bytes.fromhex("827f0000000000010000")
        assert len(big) == 10 + 65536

    def test_client_sends_rfc_bytes_with_fixed_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_connection, "mask_key", lambda: RFC_KEY)
        conn = ClientConnection()
        assert conn.send_text("Hello") == bytes.fromhex("818537fa213d7f9f4d5158")
        assert conn.send_pong(b"Hello") == bytes.fromhex("8a8537fa213d7f9f4d5158")

    def test_client_frames_round_trip_with_random_keys(self) -> None:
        conn = ClientConnection()
        wire = (
            conn.send_text("Hello")
            + conn.send_binary(b"\x00\x01" * 200)
            + conn.send_fragment(b"ab", final=False)
            + conn.send_fragment(b"cd", final=True)
            + conn.send_ping(b"p")
            + conn.close(1001, "bye")
        )
        frames = parse_frames(wire, masked=True)
        assert [(fr.fin, fr.opcode, fr.payload) for fr in frames] == [
            (True, OP_TEXT, b"Hello"),
            (True, OP_BINARY, b"\x00\x01" * 200),
            (False, OP_BINARY, b"ab"),
            (True, OP_CONT, b"cd"),
            (True, OP_PING, b"p"),
            (True, OP_CLOSE, close_payload(1001, "bye")),
        ]
        assert len({fr.key for fr in frames}) == len(frames)
        server = ServerConnection()
        assert server.receive(wire) == [
            TextMessage(data="Hello"),
            BinaryMessage(data=b"\x00\x01" * 200),
            BinaryMessage(data=b"abcd"),
            Ping(payload=b"p"),
            Close(code=1001, reason="bye"),
        ]


class TestSection5_4Fragmentation:
    @pytest.mark.parametrize("role", ROLES)
    def test_control_frames_between_fragments_in_order(self, role: str) -> None:
        conn = make(role)
        wire = (
            f(role, OP_TEXT, b"Hel", fin=False)
            + f(role, OP_PING, b"1")
            + f(role, OP_CONT, b"l", fin=False)
            + f(role, OP_PONG, b"2")
            + f(role, OP_CONT, b"o")
            + f(role, OP_BINARY, b"next")
        )
        expected = [
            Ping(payload=b"1"),
            Pong(payload=b"2"),
            TextMessage(data="Hello"),
            BinaryMessage(data=b"next"),
        ]
        assert conn.receive(wire) == expected
        [pong] = parse_frames(conn.data_to_send(), masked=role == "client")
        assert (pong.opcode, pong.payload) == (OP_PONG, b"1")
        assert feed_bytewise(make(role), wire) == expected

    @pytest.mark.parametrize("role", ROLES)
    def test_close_between_fragments(self, role: str) -> None:
        conn = make(role)
        wire = f(role, OP_TEXT, b"Hel", fin=False) + f(role, OP_CLOSE, close_payload(1000))
        assert conn.receive(wire) == [Close(code=1000, reason="")]
        assert conn.state is ConnectionState.REPLYING
        assert conn.data_to_send()
        assert conn.state is ConnectionState.CLOSED

    @pytest.mark.parametrize("role", ROLES)
    def test_empty_fragments(self, role: str) -> None:
        conn = make(role)
        wire = (
            f(role, OP_BINARY, b"", fin=False)
            + f(role, OP_CONT, b"", fin=False)
            + f(role, OP_CONT, b"x", fin=False)
            + f(role, OP_CONT, b"")
            + f(role, OP_TEXT, b"")
        )
        assert conn.receive(wire) == [BinaryMessage(data=b"x"), TextMessage(data="")]

    @pytest.mark.parametrize("role", ROLES)
    def test_utf8_split_across_fragments(self, role: str) -> None:
        text = "a€😀b"
        raw = text.encode("utf-8")
        # Cut inside both multi-byte sequences.
        wire = (
            f(role, OP_TEXT, raw[:2], fin=False)
            + f(role, OP_CONT, raw[2:6], fin=False)
            + f(role, OP_CONT, raw[6:])
        )
        assert make(role).receive(wire) == [TextMessage(data=text)]
        assert feed_bytewise(make(role), wire) == [TextMessage(data=text)]

    @pytest.mark.parametrize("role", ROLES)
    def test_stream_messages_text(self, role: str) -> None:
        text = "a€😀b"
        raw = text.encode("utf-8")
        wire = (
            f(role, OP_TEXT, raw[:2], fin=False)
            + f(role, OP_CONT, raw[2:3], fin=False)
            + f(role, OP_CONT, raw[3:6], fin=False)
            + f(role, OP_CONT, raw[6:])
        )
        conn = make(role, stream_messages=True)
        events = conn.receive(wire)
        assert all(isinstance(e, TextChunk) for e in events)
        chunks_ = [e for e in events if isinstance(e, TextChunk)]
        assert [c.final for c in chunks_] == [False, False, False, True]
        assert "".join(c.data for c in chunks_) == text
        # Whole code points only: the first chunk holds "a", not half a euro sign.
        assert chunks_[0].data == "a"

    @pytest.mark.parametrize("role", ROLES)
    def test_stream_messages_binary_and_single_frame(self, role: str) -> None:
        conn = make(role, stream_messages=True)
        wire = (
            f(role, OP_BINARY, b"ab", fin=False)
            + f(role, OP_PING, b"")
            + f(role, OP_CONT, b"cd")
            + f(role, OP_TEXT, b"hi")
        )
        assert conn.receive(wire) == [
            BinaryChunk(data=b"ab", final=False),
            Ping(payload=b""),
            BinaryChunk(data=b"cd", final=True),
            TextChunk(data="hi", final=True),
        ]

    @pytest.mark.parametrize("role", ROLES)
    def test_stream_messages_rejects_invalid_utf8_at_once(self, role: str) -> None:
        conn = make(role, stream_messages=True)
        events = conn.receive(
            f(role, OP_TEXT, b"ok", fin=False) + f(role, OP_CONT, b"\xff", fin=False)
        )
        assert_failed(conn, events, 1007, before=[TextChunk(data="ok", final=False)])

    def test_reassembly_of_4_mib_in_64_byte_fragments(self) -> None:
        # Linear reassembly: 65,536 fragments must complete (a quadratic join
        # would copy ~128 GiB); no timing assertion, only that it works.
        size = 4 << 20
        payload = os.urandom(size)
        parts = [
            frame(OP_BINARY if i == 0 else OP_CONT, payload[i : i + 64], fin=i + 64 >= size)
            for i in range(0, size, 64)
        ]
        wire = b"".join(parts)
        # Autobahn 9.4.1; each fragment is charged FRAGMENT_OVERHEAD.
        conn = ClientConnection(max_message_size=size + len(parts) * FRAGMENT_OVERHEAD)
        events = feed(conn, chunks(wire, 65536))
        assert len(events) == 1
        assert isinstance(events[0], BinaryMessage)
        assert events[0].data == payload

    def test_reassembly_of_text_in_small_fragments(self) -> None:
        text = ("ünïcödé €😀 " * 20000)[: 1 << 18]
        raw = text.encode("utf-8")
        parts = [
            frame(
                OP_TEXT if i == 0 else OP_CONT,
                raw[i : i + 61],
                fin=i + 61 >= len(raw),
                mask=RFC_KEY,
            )
            for i in range(0, len(raw), 61)
        ]
        limit = len(raw) + len(parts) * FRAGMENT_OVERHEAD
        conn = ServerConnection(max_message_size=limit)
        assert feed(conn, chunks(b"".join(parts), 4096)) == [TextMessage(data=text)]
        conn = ServerConnection(max_message_size=limit - 1)
        [failed] = feed(conn, chunks(b"".join(parts), 4096))
        assert isinstance(failed, ConnectionFailed) and failed.code == 1009


class TestSection5_5_1Close:
    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(
        "code",
        [
            1000,
            1001,
            1002,
            1003,
            1007,
            1008,
            1009,
            1010,
            1011,
            1012,
            1013,
            1014,
            3000,
            3999,
            4000,
            4999,
        ],
    )
    def test_valid_codes_accepted_and_echoed(self, role: str, code: int) -> None:
        conn = make(role)
        assert conn.receive(f(role, OP_CLOSE, close_payload(code, "bye"))) == [
            Close(code=code, reason="bye")
        ]
        sent_code, _ = parse_close(conn.data_to_send(), masked=role == "client")
        assert sent_code == code
        assert conn.state is ConnectionState.CLOSED
        assert conn.close_received == Close(code=code, reason="bye")
        assert conn.close_sent is not None and conn.close_sent.code == code

    @pytest.mark.parametrize("role", ROLES)
    def test_empty_close_reported_as_1005_answered_empty(self, role: str) -> None:
        conn = make(role)
        assert conn.receive(f(role, OP_CLOSE, b"")) == [Close(code=1005, reason="")]
        assert parse_close(conn.data_to_send(), masked=role == "client") == (None, b"")
        assert conn.state is ConnectionState.CLOSED

    @pytest.mark.parametrize("role", ROLES)
    def test_longest_close_reason(self, role: str) -> None:
        reason = "é" * 61 + "x"  # 123 bytes of UTF-8: a 125-byte payload
        conn = make(role)
        assert conn.receive(f(role, OP_CLOSE, close_payload(1000, reason))) == [
            Close(code=1000, reason=reason)
        ]

    @pytest.mark.parametrize("role", ROLES)
    def test_data_after_close_ignored(self, role: str) -> None:
        conn = make(role)
        wire = f(role, OP_CLOSE, close_payload(1000)) + f(role, OP_TEXT, b"late") + f(role, 3)
        assert conn.receive(wire) == [Close(code=1000, reason="")]
        assert conn.receive(f(role, OP_PING, b"x")) == []
        assert conn.receive(b"garbage") == []
        parse_close(conn.data_to_send(), masked=role == "client")
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("role", ROLES)
    def test_our_close_then_theirs(self, role: str) -> None:
        conn = make(role)
        out = conn.close(1000, "done")
        assert parse_close(out, masked=role == "client") == (1000, b"done")
        assert conn.state is ConnectionState.CLOSING
        assert conn.close_sent == Close(code=1000, reason="done")
        assert not conn.should_close_transport
        # The peer may still send data before it sees our close.
        assert conn.receive(f(role, OP_TEXT, b"in flight")) == [TextMessage(data="in flight")]
        assert conn.receive(f(role, OP_CLOSE, close_payload(1000))) == [Close(code=1000, reason="")]
        assert conn.state is ConnectionState.CLOSED
        assert conn.data_to_send() == b""  # no second close frame
        # §7.1.1: the server closes TCP first; the client waits for it.
        assert conn.should_close_transport is (role == "server")
        assert conn.receive(b"") == []
        assert conn.should_close_transport

    def test_simultaneous_close(self) -> None:
        # §7.1.3: both sides send a close before receiving the other's.
        pair = ConnectionPair()
        from_client = pair.client.close(1000, "c")
        from_server = pair.server.close(1001, "s")
        assert pair.server.receive(from_client) == [Close(code=1000, reason="c")]
        assert pair.client.receive(from_server) == [Close(code=1001, reason="s")]
        assert pair.client.state is pair.server.state is ConnectionState.CLOSED
        assert pair.client.data_to_send() == pair.server.data_to_send() == b""
        assert pair.server.should_close_transport
        assert not pair.client.should_close_transport  # §7.1.1: the server closes TCP first

    @pytest.mark.parametrize("role", ROLES)
    def test_echo_server_answers_message_before_close(self, role: str) -> None:
        # Autobahn 7.1.1: "Send a message followed by a close frame. Expected:
        # echoed message followed by clean close with normal code." Both frames
        # often arrive in one read; an echo loop pulls events one at a time.
        conn = make(role)
        conn.receive_data(f(role, OP_TEXT, b"Hello") + f(role, OP_CLOSE, close_payload(1000)))
        assert conn.next_event() == TextMessage(data="Hello")
        echo = conn.send_text("Hello")
        assert conn.next_event() == Close(code=1000, reason="")
        frames = parse_frames(echo + conn.data_to_send(), masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [
            (OP_TEXT, b"Hello"),
            (OP_CLOSE, close_payload(1000)),
        ]
        assert conn.state is ConnectionState.CLOSED

    @pytest.mark.parametrize("role", ROLES)
    def test_their_close_then_ours_is_harmless(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_CLOSE, close_payload(1001)))
        reply = conn.close(1000)
        assert parse_close(reply, masked=role == "client") == (1001, b"")
        assert conn.close() == b""
        assert conn.state is ConnectionState.CLOSED

    @pytest.mark.parametrize("role", ROLES)
    def test_close_twice_is_harmless(self, role: str) -> None:
        conn = make(role)
        assert parse_close(conn.close(1001, "a"), masked=role == "client") == (1001, b"a")
        assert conn.close(1000, "b") == b""
        assert conn.close(4000) == b""
        assert conn.state is ConnectionState.CLOSING
        assert conn.close_sent == Close(code=1001, reason="a")

    @pytest.mark.parametrize("role", ROLES)
    def test_close_without_code(self, role: str) -> None:
        conn = make(role)
        assert parse_close(conn.close(None), masked=role == "client") == (None, b"")
        assert conn.close_sent is not None and conn.close_sent.code == 1005

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(
        ("code", "reason"),
        [
            (0, ""),
            (999, ""),
            (1004, ""),
            (1006, ""),
            (1015, ""),
            (1016, ""),
            (2999, ""),
            (5000, ""),
            (65535, ""),
            (70000, ""),
            (1000, "x" * 124),
            (1000, "é" * 62),
            (None, "a reason needs a code"),
        ],
    )
    def test_invalid_local_close_raises(self, role: str, code: int | None, reason: str) -> None:
        conn = make(role)
        with pytest.raises(LocalProtocolError):
            conn.close(code, reason)
        assert conn.state is ConnectionState.OPEN
        assert conn.close_sent is None
        assert conn.data_to_send() == b""
        assert conn.send_text("still open")

    @pytest.mark.parametrize("role", ROLES)
    def test_close_returns_queued_replies_first(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_PING, b"q"))
        frames = parse_frames(conn.close(1000), masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [
            (OP_PONG, b"q"),
            (OP_CLOSE, close_payload(1000)),
        ]


class TestSection5_5_2Ping:
    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125))])
    def test_ping_answered_with_same_payload(self, role: str, payload: bytes) -> None:
        conn = make(role)
        assert conn.receive(f(role, OP_PING, payload)) == [Ping(payload=payload)]
        [pong] = parse_frames(conn.data_to_send(), masked=role == "client")
        assert (pong.fin, pong.rsv, pong.opcode, pong.payload) == (True, 0, OP_PONG, payload)
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("role", ROLES)
    def test_one_pong_for_the_latest_ping(self, role: str) -> None:
        # §5.5.3: "If an endpoint receives a Ping frame and has not yet sent
        # Pong frame(s) in response to previous Ping frame(s), the endpoint MAY
        # elect to send a Pong frame for only the most recently processed Ping
        # frame." Every ping is still reported.
        conn = make(role)
        events = conn.receive(b"".join(f(role, OP_PING, bytes([i])) for i in range(5)))
        assert events == [Ping(payload=bytes([i])) for i in range(5)]
        frames = parse_frames(conn.data_to_send(), masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [(OP_PONG, b"\x04")]
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("role", ROLES)
    def test_pings_across_chunks_split_by_pong_waiting(self, role: str) -> None:
        # Pings in separate chunks: one pong each when flushed in between, one
        # for the latest when not.
        conn = make(role)
        out = b""
        for i in range(3):
            conn.receive(f(role, OP_PING, bytes([i])))
            out += conn.data_to_send()
        conn.receive(f(role, OP_PING, b"a"))
        conn.receive(f(role, OP_PING, b"b"))
        out += conn.data_to_send()
        frames = parse_frames(out, masked=role == "client")
        assert [fr.payload for fr in frames] == [b"\x00", b"\x01", b"\x02", b"b"]

    @pytest.mark.parametrize("role", ROLES)
    def test_ping_flood_costs_one_pong(self, role: str) -> None:
        # The hostile-input finding: 10,000 pings in one chunk, one pong out.
        conn = make(role)
        wire = b"".join(f(role, OP_PING, str(i).encode()) for i in range(10_000))
        events = conn.receive(wire)
        assert len(events) == 10_000 and all(isinstance(e, Ping) for e in events)
        [pong] = parse_frames(conn.data_to_send(), masked=role == "client")
        assert (pong.opcode, pong.payload) == (OP_PONG, b"9999")

    @pytest.mark.parametrize("role", ROLES)
    def test_waiting_pong_keeps_its_place(self, role: str) -> None:
        # A pong waiting when the application sends goes first, with the latest
        # payload; the frames sent before the replacing ping stay before it.
        conn = make(role)
        conn.receive(f(role, OP_PING, b"1"))
        first = conn.send_text("one")
        conn.receive(f(role, OP_PING, b"2") + f(role, OP_TEXT, b"m") + f(role, OP_PING, b"3"))
        second = conn.send_binary(b"two") + conn.send_text("three")
        frames = parse_frames(first + second + conn.data_to_send(), masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [
            (OP_PONG, b"1"),
            (OP_TEXT, b"one"),
            (OP_PONG, b"3"),
            (OP_BINARY, b"two"),
            (OP_TEXT, b"three"),
        ]

    @pytest.mark.parametrize("role", ROLES)
    def test_waiting_pong_goes_before_our_close(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_PING, b"1") + f(role, OP_PING, b"2"))
        frames = parse_frames(conn.close(1000), masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [
            (OP_PONG, b"2"),
            (OP_CLOSE, close_payload(1000)),
        ]
        # Closing: pings are reported but no longer answered.
        assert conn.receive(f(role, OP_PING, b"3")) == [Ping(payload=b"3")]
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("role", ROLES)
    def test_send_returns_queued_pong_first(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_PING, b"q"))
        frames = parse_frames(conn.send_text("after"), masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [(OP_PONG, b"q"), (OP_TEXT, b"after")]
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("role", ROLES)
    def test_unsolicited_pong_not_answered(self, role: str) -> None:
        conn = make(role)
        assert conn.receive(f(role, OP_PONG, b"hb")) == [Pong(payload=b"hb")]
        assert conn.data_to_send() == b""

    @pytest.mark.parametrize("role", ROLES)
    def test_control_payload_limit_on_send(self, role: str) -> None:
        conn = make(role)
        assert conn.send_ping(b"x" * 125)
        with pytest.raises(LocalProtocolError):
            conn.send_ping(b"x" * 126)
        with pytest.raises(LocalProtocolError):
            conn.send_pong(b"x" * 126)


class TestSection7_1_5Eof:
    @pytest.mark.parametrize("role", ROLES)
    def test_eof_without_close_is_1006(self, role: str) -> None:
        conn = make(role)
        assert conn.receive(f(role, OP_TEXT, b"hi") + f(role, OP_TEXT, b"partial")[:4]) == [
            TextMessage(data="hi")
        ]
        assert conn.receive(b"") == [ConnectionLost(code=1006, reason="")]
        assert conn.state is ConnectionState.CLOSED
        assert conn.should_close_transport
        assert conn.receive(b"") == []
        assert conn.receive(f(role, OP_TEXT, b"late")) == []

    @pytest.mark.parametrize("role", ROLES)
    def test_eof_while_closing_is_1006(self, role: str) -> None:
        conn = make(role)
        conn.close(1000)
        assert conn.receive(b"") == [ConnectionLost(code=1006, reason="")]
        assert conn.state is ConnectionState.CLOSED

    @pytest.mark.parametrize("role", ROLES)
    def test_eof_after_close_handshake_reports_nothing(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_CLOSE, close_payload(1000)))
        assert conn.receive(b"") == []
        conn = make(role)
        conn.close(1000)
        conn.receive(f(role, OP_CLOSE, close_payload(1000)))
        assert conn.receive(b"") == []


class TestSection7_4_1MessageTooBig:
    """1009 before buffering the excess (docs/limits.md: "before buffering")."""

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
    def test_single_frame_over_limit_fails_on_header(self, role: str, opcode: int) -> None:
        conn = make(role, max_message_size=100)
        wire = f(role, opcode, b"a" * 101)
        header = wire[:2]
        assert_failed(conn, conn.receive(header), 1009)
        assert isinstance(conn.failure, MessageTooBig)

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("stream", [False, True])
    def test_exactly_at_limit_accepted(self, role: str, stream: bool) -> None:
        # Unfragmented: the payload counts. Fragmented: N + F * FRAGMENT_OVERHEAD.
        conn = make(role, max_message_size=100, stream_messages=stream)
        single = conn.receive(f(role, OP_TEXT, b"a" * 100))
        conn = make(role, max_message_size=100 + 2 * FRAGMENT_OVERHEAD, stream_messages=stream)
        fragmented = conn.receive(
            f(role, OP_BINARY, b"b" * 60, fin=False) + f(role, OP_CONT, b"b" * 40)
        )
        if stream:
            assert single == [TextChunk(data="a" * 100, final=True)]
            assert fragmented == [
                BinaryChunk(data=b"b" * 60, final=False),
                BinaryChunk(data=b"b" * 40, final=True),
            ]
        else:
            assert single == [TextMessage(data="a" * 100)]
            assert fragmented == [BinaryMessage(data=b"b" * 100)]
        assert conn.state is ConnectionState.OPEN

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("stream", [False, True])
    def test_fragments_over_limit_fail_on_fragment_header(self, role: str, stream: bool) -> None:
        conn = make(role, max_message_size=100 + 2 * FRAGMENT_OVERHEAD, stream_messages=stream)
        first = conn.receive(f(role, OP_BINARY, b"b" * 60, fin=False))
        second = f(role, OP_CONT, b"b" * 41)
        header = second[: 6 if role == "server" else 2]
        events = conn.receive(header)
        assert_failed(conn, first + events, 1009, before=first)

    @pytest.mark.parametrize("role", ROLES)
    def test_fragments_over_limit_in_one_chunk(self, role: str) -> None:
        conn = make(role, max_message_size=100)
        wire = (
            f(role, OP_TEXT, b"a" * 50, fin=False)
            + f(role, OP_CONT, b"a" * 50, fin=False)
            + f(role, OP_CONT, b"a")
        )
        assert_failed(conn, conn.receive(wire), 1009)

    @pytest.mark.parametrize("role", ROLES)
    def test_many_small_fragments_counted_in_bytes_and_fragments(self, role: str) -> None:
        limit = 1000 + 1000 * FRAGMENT_OVERHEAD
        wire = f(role, OP_BINARY, b"x", fin=False) + b"".join(
            f(role, OP_CONT, b"x", fin=False) for _ in range(998)
        )
        conn = make(role, max_message_size=limit)
        assert conn.receive(wire + f(role, OP_CONT, b"x")) == [BinaryMessage(data=b"x" * 1000)]
        conn = make(role, max_message_size=limit)
        events = conn.receive(wire + f(role, OP_CONT, b"xx"))
        assert_failed(conn, events, 1009)
        conn = make(role, max_message_size=limit - 1)
        events = conn.receive(wire + f(role, OP_CONT, b"x"))
        assert_failed(conn, events, 1009)

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("stream", [False, True])
    def test_endless_empty_fragments_hit_the_limit(self, role: str, stream: bool) -> None:
        # The hostile-input finding: a 1-byte text start, then empty
        # continuation frames forever. Each is charged FRAGMENT_OVERHEAD, so
        # the default limit fails the connection within limit / 16 + 1 frames.
        conn = make(role, stream_messages=stream)
        limit = DEFAULT_MAX_MESSAGE_SIZE
        empty = f(role, OP_CONT, b"", fin=False)
        events = conn.receive(f(role, OP_TEXT, b"a", fin=False))
        frames = 1
        for _ in range(70_000):
            events += conn.receive(empty)
            frames += 1
            if events and isinstance(events[-1], ConnectionFailed):
                break
        assert isinstance(events[-1], ConnectionFailed) and events[-1].code == 1009
        assert conn.state is ConnectionState.REPLYING
        assert conn.buffered_bytes == 0 and not conn.receiving
        assert frames <= limit // FRAGMENT_OVERHEAD + 1
        # Exactly: 1 + 16 for the first, 16 per empty fragment after it.
        conn = make(role, stream_messages=stream)
        allowed = (limit - 1 - FRAGMENT_OVERHEAD) // FRAGMENT_OVERHEAD
        accepted = conn.receive(f(role, OP_TEXT, b"a", fin=False) + empty * allowed)
        assert conn.state is ConnectionState.OPEN and conn.receiving
        if stream:
            assert accepted == [TextChunk(data="a", final=False)] + [
                TextChunk(data="", final=False)
            ] * allowed
        else:
            assert accepted == []
        assert_failed(conn, conn.receive(empty), 1009)
        assert 1 + allowed + 1 <= limit // FRAGMENT_OVERHEAD + 1

    @pytest.mark.parametrize("role", ROLES)
    def test_unfragmented_message_is_not_charged(self, role: str) -> None:
        conn = make(role, max_message_size=10)
        assert conn.receive(f(role, OP_BINARY, b"x" * 10)) == [BinaryMessage(data=b"x" * 10)]
        # A fragmented one is: even two empty fragments are over 10.
        events = conn.receive(f(role, OP_BINARY, b"", fin=False))
        assert_failed(conn, events, 1009)

    def test_default_limit_is_1_mib(self) -> None:
        assert DEFAULT_MAX_MESSAGE_SIZE == 1 << 20
        conn = ClientConnection()
        data = bytes(1 << 20)
        assert conn.receive(frame(OP_BINARY, data)) == [BinaryMessage(data=data)]
        conn = ClientConnection()
        assert_failed(conn, conn.receive(frame(OP_BINARY, data + b"!")[:10]), 1009)

    def test_no_limit(self) -> None:
        conn = ClientConnection(max_message_size=None)
        data = bytes((1 << 20) + 1)
        assert conn.receive(frame(OP_BINARY, data)) == [BinaryMessage(data=data)]


class TestSection8_1Utf8FailFast:
    """§8.1: fail as soon as an invalid sequence is seen, not at message end."""

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(
        "bad", [b"\xff", b"\xf4\x90", b"\xc0", b"\xe0\x80", b"\xf0\x80", b"a\x80"]
    )
    def test_partial_frame_still_arriving(self, role: str, bad: bytes) -> None:
        conn = make(role)
        wire = f(role, OP_TEXT, b"ok" + bad + b"z" * 200)
        head = wire[: len(wire) - 200]
        assert_failed(conn, conn.receive(head), 1007)
        assert isinstance(conn.failure, InvalidUTF8)

    @pytest.mark.parametrize("role", ROLES)
    def test_partial_frame_surrogate_prefix(self, role: str) -> None:
        # ED A0..BF starts a UTF-16 surrogate (U+D800..): invalid whatever follows.
        conn = make(role)
        wire = f(role, OP_TEXT, b"ok\xed\xa0" + b"\x80" * 200)
        assert_failed(conn, conn.receive(wire[: len(wire) - 200]), 1007)

    @pytest.mark.parametrize("role", ROLES)
    def test_partial_frame_invalid_sequence_across_feeds(self, role: str) -> None:
        conn = make(role)
        wire = f(role, OP_TEXT, b"ok\xf4\x90" + b"z" * 200)
        cut = len(wire) - 201
        assert conn.receive(wire[:cut]) == []
        assert_failed(conn, conn.receive(wire[cut : cut + 1]), 1007)

    @pytest.mark.parametrize("role", ROLES)
    def test_partial_continuation_uses_message_state(self, role: str) -> None:
        conn = make(role)
        first = f(role, OP_TEXT, b"ok\xe2", fin=False)
        # \xe2 \x82 then 'X' cannot continue the euro sign.
        second = f(role, OP_CONT, b"\x82X" + b"z" * 100)
        assert conn.receive(first) == []
        assert_failed(conn, conn.receive(second[: len(second) - 100]), 1007)

    @pytest.mark.parametrize("role", ROLES)
    def test_partial_continuation_valid_is_accepted(self, role: str) -> None:
        conn = make(role)
        first = f(role, OP_TEXT, b"ok\xe2", fin=False)
        second = f(role, OP_CONT, b"\x82\xac" + b"z" * 100)
        assert conn.receive(first) == []
        assert conn.receive(second[: len(second) - 100]) == []
        assert conn.receive(second[len(second) - 100 :]) == [TextMessage(data="ok€" + "z" * 100)]

    @pytest.mark.parametrize("role", ROLES)
    def test_partial_check_does_not_leak_into_next_frame(self, role: str) -> None:
        # Frame A arrives in pieces (checked while partial, ending inside a
        # sequence), completes exactly, then frame B arrives in pieces: B must
        # be checked on its own, from its first byte.
        text = "ab€" + "x" * 20
        raw = text.encode("utf-8")
        a = f(role, OP_TEXT, raw[:5], fin=False)  # ends inside the euro sign
        b = f(role, OP_CONT, raw[5:])
        hs = 6 if role == "server" else 2
        conn = make(role)
        events = conn.receive(a[: hs + 3])  # "ab\xe2"
        events += conn.receive(a[hs + 3 :])  # completes A exactly
        events += conn.receive(b[: hs + 10])  # B header and 10 of its bytes
        events += conn.receive(b[hs + 10 :])
        assert events == [TextMessage(data=text)]
        assert conn.state is ConnectionState.OPEN

    @pytest.mark.parametrize("role", ROLES)
    def test_partial_check_next_frame_header_split(self, role: str) -> None:
        # Same, with B's first header byte arriving with the end of A.
        raw = ("ab€" + "y" * 30).encode("utf-8")
        a = f(role, OP_TEXT, raw[:4], fin=False)  # "ab\xe2\x82"
        b = f(role, OP_CONT, raw[4:])
        hs = 6 if role == "server" else 2
        conn = make(role)
        events = conn.receive(a[: hs + 3])
        events += conn.receive(a[hs + 3 :] + b[:1])
        events += conn.receive(b[1 : hs + 12])
        events += conn.receive(b[hs + 12 :])
        assert events == [TextMessage(data=raw.decode("utf-8"))]

    @pytest.mark.parametrize("role", ROLES)
    def test_partial_valid_text_every_split(self, role: str) -> None:
        raw = "héllo wörld €😀!".encode()
        wire = f(role, OP_TEXT, raw[:9], fin=False) + f(role, OP_CONT, raw[9:])
        for i in range(len(wire) + 1):
            for j in range(i, len(wire) + 1):
                conn = make(role)
                pieces = [p for p in (wire[:i], wire[i:j], wire[j:]) if p]  # b"" is EOF
                events = feed(conn, pieces)
                assert events == [TextMessage(data=raw.decode("utf-8"))], (i, j)


class TestSending:
    @pytest.mark.parametrize("role", ROLES)
    def test_send_types(self, role: str) -> None:
        conn = make(role)
        out = conn.send_binary(bytearray(b"ba")) + conn.send_binary(memoryview(b"mv"))
        frames = parse_frames(out, masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [
            (OP_BINARY, b"ba"),
            (OP_BINARY, b"mv"),
        ]

    @pytest.mark.parametrize("role", ROLES)
    def test_send_events(self, role: str) -> None:
        conn = make(role)
        out = (
            conn.send(TextMessage(data="t"))
            + conn.send(BinaryMessage(data=b"b"))
            + conn.send(TextChunk(data="c1", final=False))
            + conn.send(TextChunk(data="c2", final=True))
            + conn.send(BinaryChunk(data=b"d", final=True))
            + conn.send(Ping(payload=b"pi"))
            + conn.send(Pong(payload=b"po"))
            + conn.send(Close(code=1001, reason="r"))
        )
        frames = parse_frames(out, masked=role == "client")
        assert [(fr.fin, fr.opcode, fr.payload) for fr in frames] == [
            (True, OP_TEXT, b"t"),
            (True, OP_BINARY, b"b"),
            (False, OP_TEXT, b"c1"),
            (True, OP_CONT, b"c2"),
            (True, OP_BINARY, b"d"),
            (True, OP_PING, b"pi"),
            (True, OP_PONG, b"po"),
            (True, OP_CLOSE, close_payload(1001, "r")),
        ]

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("event", [ConnectionLost(), ConnectionFailed(code=1002), Event()])
    def test_send_unsendable_event(self, role: str, event: Event) -> None:
        with pytest.raises(LocalProtocolError):
            make(role).send(event)

    @pytest.mark.parametrize("role", ROLES)
    def test_send_fragment_rejects_non_buffer(self, role: str) -> None:
        # bytes(5) would be five zero bytes: an int is a caller's mistake.
        conn = make(role)
        with pytest.raises(TypeError):
            conn.send_fragment(5, final=True)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            conn.send_binary(5)  # type: ignore[arg-type]

    @pytest.mark.parametrize("role", ROLES)
    def test_fragment_rules(self, role: str) -> None:
        conn = make(role)
        conn.send_fragment("a", final=False)
        with pytest.raises(LocalProtocolError):
            conn.send_fragment(b"b", final=True)
        with pytest.raises(LocalProtocolError):
            conn.send_text("interleaved")
        with pytest.raises(LocalProtocolError):
            conn.send_binary(b"interleaved")
        # Control frames may be sent in the middle of a fragmented message (§5.4).
        assert conn.send_ping(b"")
        conn.send_fragment("b", final=True)
        assert conn.send_text("after")

    @pytest.mark.parametrize("role", ROLES)
    def test_round_trip_through_pair(self, role: str) -> None:
        pair = ConnectionPair()
        sender = pair.client if role == "client" else pair.server
        data = (
            sender.send_text("hi")
            + sender.send_fragment("é", final=False)
            + sender.send_ping(b"1")
            + sender.send_fragment("!", final=True)
        )
        assert pair.deliver(sender, data) == [
            TextMessage(data="hi"),
            Ping(payload=b"1"),
            TextMessage(data="é!"),
        ]
        client_events, server_events = pair.pump()
        got = client_events if role == "client" else server_events
        assert got == [Pong(payload=b"1")]


class TestSendAfterClose:
    def _closed(self, role: str, how: str) -> Connection:
        conn = make(role)
        if how == "sent close":
            conn.close(1000)
        elif how == "received close":
            conn.receive(f(role, OP_CLOSE, close_payload(1000)))
            conn.data_to_send()  # our answering close has left: nothing more may be sent
        elif how == "failed":
            conn.receive(f(role, 3))
            conn.data_to_send()
        else:
            conn.receive(b"")
        return conn

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("how", ["sent close", "received close", "failed", "eof"])
    def test_send_raises(self, role: str, how: str) -> None:
        conn = self._closed(role, how)
        for call in (
            lambda: conn.send_text("x"),
            lambda: conn.send_binary(b"x"),
            lambda: conn.send_fragment("x", final=True),
            lambda: conn.send_ping(b""),
            lambda: conn.send_pong(b""),
            lambda: conn.send(TextMessage(data="x")),
        ):
            with pytest.raises(ConnectionClosed):
                call()
        assert issubclass(ConnectionClosedError, ConnectionClosed)
        conn.data_to_send()
        assert conn.close(1000) == b""


class TestEventApi:
    def test_next_event_and_need_data(self) -> None:
        conn = ClientConnection()
        assert conn.next_event() is NEED_DATA
        conn.receive_data(frame(OP_TEXT, b"a") + frame(OP_BINARY, b"b"))
        assert conn.next_event() == TextMessage(data="a")
        conn.receive_data(frame(OP_PING, b"c"))
        assert conn.next_event() == BinaryMessage(data=b"b")
        assert conn.next_event() == Ping(payload=b"c")
        assert conn.next_event() is NEED_DATA
        assert conn.next_event() is NEED_DATA

    def test_events_iterator_and_receive(self) -> None:
        conn = ClientConnection()
        conn.receive_data(frame(OP_TEXT, b"a") + frame(OP_TEXT, b"b"))
        assert next(conn.events()) == TextMessage(data="a")
        conn.receive_data(frame(OP_TEXT, b"c"))
        assert conn.receive(frame(OP_TEXT, b"d")) == [
            TextMessage(data="b"),
            TextMessage(data="c"),
            TextMessage(data="d"),
        ]
        assert list(conn.events()) == []
        conn.receive_data(frame(OP_TEXT, b"e"))
        assert list(conn.events()) == [TextMessage(data="e")]

    def test_trailing_data_fed_first(self) -> None:
        conn = ClientConnection(trailing_data=frame(OP_TEXT, b"early") + frame(OP_TEXT, b"pa")[:3])
        assert conn.receive(frame(OP_TEXT, b"pa")[3:]) == [
            TextMessage(data="early"),
            TextMessage(data="pa"),
        ]

    def test_trailing_data_with_a_bad_frame(self) -> None:
        conn = ClientConnection(trailing_data=frame(3, b""))
        assert_failed(conn, conn.receive(b""), 1002)

    @pytest.mark.parametrize("role", ROLES)
    def test_huge_declared_length_without_limit_waits(self, role: str) -> None:
        # 2**63 - 1 is a legal length; with no limit the connection just waits
        # (and must not try to reserve the memory up front).
        conn = make(role, max_message_size=None)
        huge = f(role, OP_BINARY, b"abc", length_form=64, declared_length=(1 << 63) - 1)
        assert conn.receive(huge) == []
        assert conn.receive(b"x" * 1000) == []
        assert conn.state is ConnectionState.OPEN
        assert conn.receive(b"") == [ConnectionLost()]

    @pytest.mark.parametrize("role", ROLES)
    def test_should_close_transport(self, role: str) -> None:
        conn = make(role)
        assert not conn.should_close_transport
        conn.receive(f(role, OP_CLOSE, close_payload(1000)))
        assert not conn.should_close_transport  # our close frame is not out yet
        conn.data_to_send()
        assert conn.should_close_transport is (role == "server")

    def test_exceptions_carry_close_codes(self) -> None:
        assert ProtocolError("x").close_code == 1002
        assert InvalidUTF8("x").close_code == 1007
        assert MessageTooBig("x").close_code == 1009


class ToyExtension(Extension):
    """A per-frame extension on RSV1 that XORs payloads with 0x55 (RFC 6455 §9).

    Stateless and per frame, so the connection's handling of RSV bits,
    extension order and size limits can be checked independently of deflate.
    """

    name = "x-toy"
    rsv_mask = 0x40

    def __init__(self, *, grow: int = 0, fail: str | None = None) -> None:
        self.grow = grow
        self.fail = fail
        self.decoded: list[tuple[bytes, int, bool, int]] = []

    def decode(self, payload: bytes, *, rsv: int, fin: bool, max_size: int) -> bytes:
        self.decoded.append((payload, rsv, fin, max_size))
        if self.fail is not None:
            raise ExtensionError(self.fail)
        return bytes(b ^ 0x55 for b in payload) + b"+" * self.grow

    def encode(self, payload: bytes, *, first: bool, fin: bool) -> tuple[int, bytes]:
        return (0x40 if first else 0), bytes(b ^ 0x55 for b in payload)


def toy(data: bytes) -> bytes:
    return bytes(b ^ 0x55 for b in data)


class TestSection9Extensions:
    """RSV bits belong to negotiated extensions (§5.2); the connection routes frames."""

    @pytest.mark.parametrize("role", ROLES)
    def test_send_through_extension(self, role: str) -> None:
        conn = make(role, extensions=[ToyExtension()])
        out = (
            conn.send_text("hi")
            + conn.send_binary(b"\x00")
            + conn.send_fragment(b"ab", final=False)
            + conn.send_fragment(b"cd", final=True)
            + conn.send_ping(b"p")
        )
        frames = parse_frames(out, masked=role == "client")
        assert [(fr.fin, fr.rsv, fr.opcode, fr.payload) for fr in frames] == [
            (True, 4, OP_TEXT, toy(b"hi")),
            (True, 4, OP_BINARY, toy(b"\x00")),
            (False, 4, OP_BINARY, toy(b"ab")),
            (True, 0, OP_CONT, toy(b"cd")),  # RSV1 on the first frame only
            (True, 0, OP_PING, b"p"),  # control frames never pass an extension
        ]

    @pytest.mark.parametrize("role", ROLES)
    def test_receive_through_extension(self, role: str) -> None:
        ext = ToyExtension()
        conn = make(role, extensions=[ext])
        wire = (
            f(role, OP_TEXT, toy(b"hi"), rsv=4)
            + f(role, OP_TEXT, b"plain")  # RSV1 clear: not for the extension
            + f(role, OP_BINARY, toy(b"ab"), rsv=4, fin=False)
            + f(role, OP_PING, b"p")
            + f(role, OP_CONT, toy(b"cd"))
        )
        assert conn.receive(wire) == [
            TextMessage(data="hi"),
            TextMessage(data="plain"),
            Ping(payload=b"p"),
            BinaryMessage(data=b"abcd"),
        ]
        # The continuation is decoded with the first frame's RSV bits.
        assert [(rsv, fin) for _, rsv, fin, _ in ext.decoded] == [
            (0x40, True),
            (0x40, False),
            (0x40, True),
        ]

    @pytest.mark.parametrize("role", ROLES)
    def test_pair_round_trip(self, role: str) -> None:
        pair = ConnectionPair(extensions=[ToyExtension()])
        sender = pair.client if role == "client" else pair.server
        data = sender.send_text("é€") + sender.send_fragment("a", final=False)
        data += sender.send_fragment("b", final=True)
        assert pair.deliver(sender, data) == [TextMessage(data="é€"), TextMessage(data="ab")]

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(
        ("name", "wire"),
        [
            ("rsv2 not claimed", lambda r: f(r, OP_TEXT, b"x", rsv=2)),
            ("rsv3 not claimed", lambda r: f(r, OP_TEXT, b"x", rsv=1)),
            ("rsv1 on a ping", lambda r: f(r, OP_PING, b"x", rsv=4)),
            ("rsv1 on a close", lambda r: f(r, OP_CLOSE, close_payload(1000), rsv=4)),
            (
                "rsv1 on a continuation",
                lambda r: f(r, OP_TEXT, toy(b"a"), rsv=4, fin=False) + f(r, OP_CONT, b"b", rsv=4),
            ),
        ],
    )
    def test_rsv_rules(self, role: str, name: str, wire: object) -> None:
        conn = make(role, extensions=[ToyExtension()])
        assert_failed(conn, conn.receive(wire(role)), 1002)  # type: ignore[operator]

    @pytest.mark.parametrize("role", ROLES)
    def test_decoded_size_limit(self, role: str) -> None:
        ext = ToyExtension(grow=10)
        conn = make(role, extensions=[ext], max_message_size=20)
        assert conn.receive(f(role, OP_BINARY, toy(b"x" * 10), rsv=4)) == [
            BinaryMessage(data=b"x" * 10 + b"+" * 10)
        ]
        assert ext.decoded[-1][3] == 20  # the limit is passed down as a bound
        events = conn.receive(f(role, OP_BINARY, toy(b"x" * 11), rsv=4))
        assert_failed(conn, events, 1009)

    @pytest.mark.parametrize("role", ROLES)
    def test_decoded_size_counted_across_fragments(self, role: str) -> None:
        ext = ToyExtension(grow=5)
        conn = make(role, extensions=[ext], max_message_size=20 + 2 * FRAGMENT_OVERHEAD)
        events = conn.receive(
            f(role, OP_BINARY, toy(b"x" * 5), rsv=4, fin=False) + f(role, OP_CONT, toy(b"y" * 5))
        )
        assert events == [BinaryMessage(data=b"x" * 5 + b"+" * 5 + b"y" * 5 + b"+" * 5)]
        # Each bound leaves room for the fragment's own charge.
        assert [max_size for *_, max_size in ext.decoded] == [20 + FRAGMENT_OVERHEAD, 10]

    @pytest.mark.parametrize("role", ROLES)
    def test_no_decoding_once_the_fragment_charges_pass_the_limit(self, role: str) -> None:
        # A compressed fragment over the limit by its charge alone fails before
        # it is decoded (a negative bound must never reach zlib: 0 is "no limit").
        ext = ToyExtension(grow=0)
        conn = make(role, extensions=[ext], max_message_size=2 * FRAGMENT_OVERHEAD + 1)
        events = conn.receive(
            f(role, OP_BINARY, toy(b"xx"), rsv=4, fin=False) + f(role, OP_CONT, toy(b"y"))
        )
        assert_failed(conn, events, 1009)
        assert [max_size for *_, max_size in ext.decoded] == [FRAGMENT_OVERHEAD + 1]

    @pytest.mark.parametrize("role", ROLES)
    def test_uncompressed_frame_over_limit_fails_on_header(self, role: str) -> None:
        # The decoder lets compressed frames exceed the limit a little (they may
        # inflate to less); an uncompressed one is still refused from its header.
        conn = make(role, extensions=[ToyExtension()], max_message_size=100)
        header = f(role, OP_TEXT, b"a" * 101)[: 6 if role == "server" else 2]
        assert_failed(conn, conn.receive(header), 1009)

    @pytest.mark.parametrize("role", ROLES)
    def test_extension_error_fails_connection(self, role: str) -> None:
        conn = make(role, extensions=[ToyExtension(fail="bad data " * 30)])
        events = conn.receive(f(role, OP_TEXT, b"x", rsv=4))
        # The reason is cut to fit a control frame (123 bytes of UTF-8).
        assert_failed(conn, events, 1002)
        assert len(events[-1].reason.encode()) == 123  # type: ignore[attr-defined]

    @pytest.mark.parametrize("role", ROLES)
    def test_invalid_utf8_after_decoding(self, role: str) -> None:
        conn = make(role, extensions=[ToyExtension()])
        assert_failed(conn, conn.receive(f(role, OP_TEXT, toy(b"\xff"), rsv=4)), 1007)
        conn = make(role, extensions=[ToyExtension()], stream_messages=True)
        events = conn.receive(f(role, OP_TEXT, toy(b"ok\xe2"), rsv=4, fin=False))
        events += conn.receive(f(role, OP_CONT, toy(b"\x82\xac")))
        assert events == [TextChunk(data="ok", final=False), TextChunk(data="€", final=True)]


class Rsv2Extension(ToyExtension):
    """A second toy extension, on RSV2, that reverses payloads."""

    name = "x-rev"
    rsv_mask = 0x20

    def decode(self, payload: bytes, *, rsv: int, fin: bool, max_size: int) -> bytes:
        self.decoded.append((payload, rsv, fin, max_size))
        return payload[::-1]

    def encode(self, payload: bytes, *, first: bool, fin: bool) -> tuple[int, bytes]:
        return (0x20 if first else 0), payload[::-1]


class TestSection9ExtensionStack:
    @pytest.mark.parametrize("role", ROLES)
    def test_each_extension_sees_only_its_bits(self, role: str) -> None:
        xor, rev = ToyExtension(), Rsv2Extension()
        conn = make(role, extensions=[xor, rev])
        events = conn.receive(
            f(role, OP_BINARY, b"abc", rsv=2)  # RSV2 only
            + f(role, OP_BINARY, toy(b"xyz"), rsv=4)  # RSV1 only
            + f(role, OP_BINARY, toy(b"123")[::-1], rsv=6)  # both: RSV2 undone first
        )
        assert events == [
            BinaryMessage(data=b"cba"),
            BinaryMessage(data=b"xyz"),
            BinaryMessage(data=b"123"),
        ]
        assert [p for p, *_ in xor.decoded] == [toy(b"xyz"), toy(b"123")]
        assert [p for p, *_ in rev.decoded] == [b"abc", toy(b"123")[::-1]]

    @pytest.mark.parametrize("role", ROLES)
    def test_stack_round_trip(self, role: str) -> None:
        pair = ConnectionPair(extensions=[ToyExtension(), Rsv2Extension()])
        sender = pair.client if role == "client" else pair.server
        assert pair.deliver(sender, sender.send_text("stacked")) == [TextMessage(data="stacked")]

    @pytest.mark.parametrize("role", ROLES)
    def test_compressed_frame_still_arriving_is_not_utf8_checked(self, role: str) -> None:
        # Its bytes are not text until the extension decodes the whole frame.
        conn = make(role, extensions=[ToyExtension()])
        wire = f(role, OP_TEXT, toy(b"ok") + b"\xff\xff" + toy(b"z" * 50), rsv=4)
        assert conn.receive(wire[:-50]) == []
        assert conn.state is ConnectionState.OPEN


class TestSection5_4SequenceFromHeader:
    """A frame out of sequence is refused from its header, before its payload."""

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(
        ("prefix", "opcode"),
        [
            (None, OP_CONT),
            ((OP_TEXT, b"a"), OP_TEXT),
            ((OP_TEXT, b"a"), OP_BINARY),
            ((OP_BINARY, b"a"), OP_BINARY),
        ],
    )
    def test_header_alone(self, role: str, prefix: tuple[int, bytes] | None, opcode: int) -> None:
        conn = make(role)
        before = conn.receive(f(role, prefix[0], prefix[1], fin=False)) if prefix else []
        assert before == []
        bad = f(role, opcode, b"\xff" * 50)
        header = bad[: 6 if role == "server" else 2]
        assert_failed(conn, conn.receive(header), 1002)


class TestClosingState:
    @pytest.mark.parametrize("role", ROLES)
    def test_ping_after_our_close(self, role: str) -> None:
        conn = make(role)
        conn.close(1000)
        assert conn.receive(f(role, OP_PING, b"late")) == [Ping(payload=b"late")]
        # Only control frames may follow our close frame (§5.5.1).
        frames = parse_frames(conn.data_to_send(), masked=role == "client")
        assert all(fr.opcode == OP_PONG for fr in frames)
        assert conn.state is ConnectionState.CLOSING


# (name, frames from the peer of ``role`` -- a function of role, events).
VALID = [
    ("text", lambda r: f(r, OP_TEXT, b"Hello"), [TextMessage(data="Hello")]),
    ("empty text", lambda r: f(r, OP_TEXT, b""), [TextMessage(data="")]),
    ("binary 125", lambda r: f(r, OP_BINARY, b"\x01" * 125), [BinaryMessage(data=b"\x01" * 125)]),
    ("binary 126", lambda r: f(r, OP_BINARY, b"\x02" * 126), [BinaryMessage(data=b"\x02" * 126)]),
    (
        "binary 65536",
        lambda r: f(r, OP_BINARY, b"\x03" * 65536),
        [BinaryMessage(data=b"\x03" * 65536)],
    ),
    (
        "4-byte code points",
        lambda r: f(r, OP_TEXT, "😀𝄞".encode()),
        [TextMessage(data="😀𝄞")],
    ),
    (
        "fragments and controls",
        lambda r: (
            f(r, OP_TEXT, b"a\xc3", fin=False)
            + f(r, OP_PING, b"1")
            + f(r, OP_CONT, b"\xa9", fin=False)
            + f(r, OP_PONG, b"")
            + f(r, OP_CONT, b"z")
        ),
        [Ping(payload=b"1"), Pong(payload=b""), TextMessage(data="aéz")],
    ),
    (
        "messages then close",
        lambda r: f(r, OP_BINARY, b"x") + f(r, OP_CLOSE, close_payload(1000, "done")),
        [BinaryMessage(data=b"x"), Close(code=1000, reason="done")],
    ),
    ("max ping", lambda r: f(r, OP_PING, b"p" * 125), [Ping(payload=b"p" * 125)]),
]
VALID_IDS = [row[0] for row in VALID]


class TestValidTable:
    """Valid traffic: whole, byte by byte, at every split point, with trailing data."""

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "wire", "expected"), VALID, ids=VALID_IDS)
    def test_whole(self, role: str, name: str, wire: object, expected: list[Event]) -> None:
        assert make(role).receive(wire(role)) == expected  # type: ignore[operator]

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "wire", "expected"), VALID, ids=VALID_IDS)
    def test_byte_by_byte(self, role: str, name: str, wire: object, expected: list[Event]) -> None:
        data: bytes = wire(role)  # type: ignore[operator]
        pieces = chunks(data, 1 if len(data) < 1000 else 97)
        assert feed(make(role), pieces) == expected

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "wire", "expected"), VALID, ids=VALID_IDS)
    def test_every_split_point(
        self, role: str, name: str, wire: object, expected: list[Event]
    ) -> None:
        data: bytes = wire(role)  # type: ignore[operator]
        for cut in range(1, len(data)) if len(data) < 300 else (1, 2, 3, 4, 9, 10, 11, 5000):
            assert feed(make(role), [data[:cut], data[cut:]]) == expected, cut

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "wire", "expected"), VALID, ids=VALID_IDS)
    def test_with_trailing_data(
        self, role: str, name: str, wire: object, expected: list[Event]
    ) -> None:
        data: bytes = wire(role)  # type: ignore[operator]
        trailing = f(role, OP_TEXT, b"next message")
        conn = make(role)
        events = conn.receive(data + trailing[:5])
        if isinstance(expected[-1], Close):
            # Nothing after a close frame counts, complete or not.
            assert events == expected
            assert conn.receive(trailing[5:]) == []
        else:
            assert events == expected
            assert conn.receive(trailing[5:]) == [TextMessage(data="next message")]


# UTF-8 cases after Markus Kuhn's stress test, as used by Autobahn cases 6.x.
KAPPA = "κόσμε".encode()
UTF8_CASES = [
    KAPPA,
    b"\x00",
    b"\x7f",
    b"\xc2\x80",
    b"\xdf\xbf",
    b"\xe0\xa0\x80",
    b"\xed\x9f\xbf",
    b"\xee\x80\x80",
    b"\xef\xbf\xbd",
    b"\xef\xbf\xbe",  # U+FFFE: a noncharacter, but valid UTF-8
    b"\xf0\x90\x80\x80",
    b"\xf4\x8f\xbf\xbf",
    KAPPA + b"\xed\xa0\x80edited",  # Autobahn 6.3.1
    KAPPA + b"\xf4\x90\x80\x80edited",  # Autobahn 6.4.1
    b"\x80",
    b"\xbf",
    b"\x80\xbf\x80",
    b"\xc0\xaf",
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xe0\x9f\xbf",
    b"\xf0\x80\x80\xaf",
    b"\xf0\x8f\xbf\xbf",
    b"\xf8\x88\x80\x80\xaf",
    b"\xfc\x84\x80\x80\x80\xaf",
    b"\xed\xa0\x80",
    b"\xed\xad\xbf",
    b"\xed\xbf\xbf",
    b"\xed\xa0\x80\xed\xb0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xfe\xfe\xff\xff",
    b"\xc0 ",
    b"ok\xc2A",
    b"ok\xe2\x82A",
    b"ok\xf0\x9f\x98A",
    b"ok\xf0\x9f\x98",  # truncated at the end
    b"ok\xe2\x82",
]


class TestSection8_1FailFastPosition:
    """The failure comes exactly at the first byte that cannot start valid UTF-8.

    The expected position comes from the RFC 3629 grammar (tests/helpers.py),
    not from Python's codec.
    """

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("payload", UTF8_CASES, ids=lambda p: p.hex())
    def test_in_a_frame_still_arriving(self, role: str, payload: bytes) -> None:
        # The frame declares more bytes than are sent: only fail-fast can see errors.
        wire = f(role, OP_TEXT, payload + b"-" * 16)[:-16]
        header = len(wire) - len(payload)
        conn = make(role)
        assert conn.receive(wire[:header]) == []
        bad = utf8_first_invalid(payload)
        for i in range(len(payload)):
            events = conn.receive(wire[header + i : header + i + 1])
            if bad is not None and i == bad:
                assert_failed(conn, events, 1007)
                return
            assert events == [], i
        assert bad is None
        assert conn.state is ConnectionState.OPEN

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("payload", UTF8_CASES, ids=lambda p: p.hex())
    def test_in_one_byte_fragments(self, role: str, payload: bytes) -> None:
        conn = make(role)
        bad = utf8_first_invalid(payload)
        last = len(payload) - 1
        for i in range(len(payload)):
            opcode = OP_TEXT if i == 0 else OP_CONT
            events = conn.receive(f(role, opcode, payload[i : i + 1], fin=i == last))
            if bad is not None and i == bad:
                assert_failed(conn, events, 1007)
                return
            if i < last:
                assert events == [], i
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            # Valid so far but cut inside a sequence: fails when the message ends.
            assert_failed(conn, events, 1007)
        else:
            assert events == [TextMessage(data=text)]


class TestReplyingState:
    """REPLYING: the peer's close (or our failure) is in, our close frame waits.

    §5.5.1: the answering close is sent "as soon as practical"; until the
    application flushes it with ``data_to_send()`` it may still answer what
    arrived before (Autobahn 7.1.1).
    """

    @pytest.mark.parametrize("role", ROLES)
    def test_answer_then_flush(self, role: str) -> None:
        conn = make(role)
        events = conn.receive(
            f(role, OP_PING, b"p") + f(role, OP_TEXT, b"q") + f(role, OP_CLOSE, close_payload(1001))
        )
        assert events == [Ping(payload=b"p"), TextMessage(data="q"), Close(code=1001, reason="")]
        assert conn.state is ConnectionState.REPLYING
        assert not conn.should_close_transport
        out = conn.send_text("answer") + conn.send_ping(b"x")
        out += conn.data_to_send()
        assert conn.state is ConnectionState.CLOSED
        frames = parse_frames(out, masked=role == "client")
        assert [(fr.opcode, fr.payload) for fr in frames] == [
            (OP_PONG, b"p"),
            (OP_TEXT, b"answer"),
            (OP_PING, b"x"),
            (OP_CLOSE, close_payload(1001)),
        ]
        assert conn.data_to_send() == b""
        with pytest.raises(ConnectionClosed):
            conn.send_text("too late")

    @pytest.mark.parametrize("role", ROLES)
    def test_after_failure(self, role: str) -> None:
        conn = make(role)
        events = conn.receive(f(role, OP_TEXT, b"q") + f(role, OP_TEXT, b"\xff"))
        assert events[0] == TextMessage(data="q")
        assert isinstance(events[1], ConnectionFailed)
        assert conn.state is ConnectionState.REPLYING
        out = conn.send_fragment("a", final=False) + conn.send_fragment("b", final=True)
        frames = parse_frames(out + conn.data_to_send(), masked=role == "client")
        assert [fr.opcode for fr in frames] == [OP_TEXT, OP_CONT, OP_CLOSE]
        assert frames[-1].payload[:2] == b"\x03\xef"  # 1007
        assert conn.state is ConnectionState.CLOSED

    @pytest.mark.parametrize("role", ROLES)
    def test_close_while_replying_sends_the_answer(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_CLOSE, close_payload(4000, "app")))
        out = conn.close(1000, "ignored")
        assert parse_close(out, masked=role == "client") == (4000, b"")
        assert conn.state is ConnectionState.CLOSED
        assert conn.close() == b""

    @pytest.mark.parametrize("role", ROLES)
    def test_nothing_read_while_replying(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_CLOSE, close_payload(1000)))
        assert conn.receive(f(role, OP_TEXT, b"late") + f(role, 3)) == []
        assert conn.state is ConnectionState.REPLYING

    @pytest.mark.parametrize("role", ROLES)
    def test_eof_while_replying(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_CLOSE, close_payload(1000)))
        # The peer's close was already reported: EOF adds no ConnectionLost.
        assert conn.receive(b"") == []
        assert conn.state is ConnectionState.CLOSED
        with pytest.raises(ConnectionClosed):
            conn.send_text("x")
        # The answering close still leaves (harmless if the transport is gone).
        assert parse_close(conn.data_to_send(), masked=role == "client") == (1000, b"")
        assert conn.should_close_transport


class TestOnlyOurErrorsOnSend:
    """Text that UTF-8 cannot encode is a LocalProtocolError, not a UnicodeEncodeError."""

    @pytest.mark.parametrize("role", ROLES)
    def test_lone_surrogates(self, role: str) -> None:
        conn = make(role)
        with pytest.raises(LocalProtocolError):
            conn.send_text("\ud800")
        with pytest.raises(LocalProtocolError):
            conn.send_fragment("a\udfff", final=True)
        with pytest.raises(LocalProtocolError):
            conn.close(1000, "\ud800")
        assert conn.state is ConnectionState.OPEN
        assert conn.send_text("still open")

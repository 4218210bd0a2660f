"""Tests for rfc6455._endpoint: the phase table, the settings, the send paths, and the
closed-connection error, on a server endpoint joined to a socketpair (no threads)."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

import pytest
from helpers import parse_frames

from rfc6455 import (
    ClientHandshake,
    Config,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Handler,
    LocalProtocolError,
    Server,
    WebSocket,
    apply_mask,
    broadcast,
)
from rfc6455._endpoint import PHASE_TRANSITIONS, Phase, PhaseTrigger
from rfc6455._limits import UNLIMITED_BUFFER, EndpointSettings

EXPECTED = {
    (Phase.HANDSHAKE, PhaseTrigger.ACCEPTED): Phase.OPEN,
    (Phase.HANDSHAKE, PhaseTrigger.RESPOND): Phase.HTTP,
    (Phase.HANDSHAKE, PhaseTrigger.LOST): Phase.CLOSED,
    (Phase.HTTP, PhaseTrigger.LOST): Phase.CLOSED,
    (Phase.OPEN, PhaseTrigger.CLOSE): Phase.CLOSING,
    (Phase.OPEN, PhaseTrigger.LOST): Phase.CLOSED,
    (Phase.CLOSING, PhaseTrigger.LOST): Phase.CLOSED,
}


def test_phase_table_is_the_documented_one() -> None:
    assert PHASE_TRANSITIONS == EXPECTED


def test_closed_is_terminal_and_every_phase_can_be_lost() -> None:
    assert not [key for key in PHASE_TRANSITIONS if key[0] is Phase.CLOSED]
    for phase in Phase:
        if phase is not Phase.CLOSED:
            assert PHASE_TRANSITIONS[(phase, PhaseTrigger.LOST)] is Phase.CLOSED


def test_phase_values_are_the_state_strings() -> None:
    assert [p.value for p in Phase] == ["handshake", "open", "closing", "closed", "http"]


class Recorder(Handler):
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.closed: list[tuple[int, str]] = []

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        self.messages.append(message)

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.closed.append((code, reason))


def client_frame(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    assert len(payload) < 126
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + apply_mask(payload, key)


class Pair:
    """A server endpoint on one end of a socketpair, the raw client on the other."""

    def __init__(self, config: Config | None = None) -> None:
        self.handler = Recorder()
        self.server = Server(
            config or Config(port=0, compression=False, ping_interval=None),
            handler=self.handler,
        )
        self.loop = self.server.loop
        server_sock, self.sock = socket.socketpair()
        self.server._new_connection(server_sock, ("127.0.0.1", 1))
        handshake = ClientHandshake("x", "/")
        self.sock.sendall(handshake.request_bytes())
        assert self.loop.run_until(lambda: bool(self.server.connections), timeout=5)
        self.ws = self.server.connections[0]
        assert self.loop.run_until(lambda: self.ws.open, timeout=5)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        self.sock.settimeout(5)

    def read_frames(self) -> list[tuple[int, bytes]]:
        self.loop.run_until(lambda: False, timeout=0.05)
        data = b""
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except BlockingIOError:
            pass
        self.sock.settimeout(5)
        return [(f.opcode, f.payload) for f in parse_frames(data, masked=False)]

    def close(self) -> None:
        self.server.close()
        self.sock.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    yield p
    p.close()


def test_illegal_phase_change_raises_local_protocol_error(pair: Pair) -> None:
    with pytest.raises(LocalProtocolError, match="answer with plain HTTP in phase open"):
        pair.ws._move(PhaseTrigger.RESPOND)
    assert pair.ws.state == "open"


def test_send_and_queue_frame(pair: Pair) -> None:
    pair.ws.send("hi")
    pair.ws.send(b"\x00\x01")
    frame = b"\x81\x03abc"
    assert pair.ws.queue_frame(frame) is True
    pair.ws.send_frame(frame)
    assert pair.read_frames() == [(1, b"hi"), (2, b"\x00\x01"), (1, b"abc"), (1, b"abc")]
    assert pair.ws.messages_out == 4
    assert pair.ws.bytes_out >= 4 + 4 + 5 + 5


def test_broadcast_skips_excluded_and_closed(pair: Pair) -> None:
    other = Pair()
    try:
        assert broadcast([pair.ws, other.ws], "x", exclude=other.ws) == 1
        assert pair.read_frames() == [(1, b"x")]
        assert other.read_frames() == []
        other.ws.close(1000)
        assert broadcast([pair.ws, other.ws], b"y") == 1
        assert pair.read_frames() == [(2, b"y")]
        assert other.read_frames() == [(8, b"\x03\xe8")]
    finally:
        other.close()


def test_after_a_normal_close_send_raises_connection_closed_ok(pair: Pair) -> None:
    pair.sock.sendall(client_frame(0x8, b"\x03\xe8bye"))
    assert pair.loop.run_until(lambda: pair.ws.state != "open", timeout=5)
    for call in (lambda: pair.ws.send("x"), lambda: pair.ws.send_frame(b"\x81\x00"),
                 lambda: pair.ws.ping()):
        with pytest.raises(ConnectionClosedOK) as info:
            call()
        assert (info.value.code, info.value.reason) == (1000, "bye")
    assert pair.ws.queue_frame(b"\x81\x00") is False


def test_after_a_protocol_error_send_raises_connection_closed_error(pair: Pair) -> None:
    pair.sock.sendall(client_frame(0x1, b"\xff"))  # invalid UTF-8
    assert pair.loop.run_until(lambda: pair.ws.state != "open", timeout=5)
    with pytest.raises(ConnectionClosedError) as info:
        pair.ws.send("x")
    assert info.value.code == 1007
    assert isinstance(info.value, ConnectionClosed) and not info.value.ok


def test_after_eof_the_code_is_1006(pair: Pair) -> None:
    pair.sock.close()
    assert pair.loop.run_until(lambda: pair.ws.state == "closed", timeout=5)
    with pytest.raises(ConnectionClosedError) as info:
        pair.ws.send("x")
    assert info.value.code == 1006
    assert pair.handler.closed == [(1006, "")]
    assert pair.ws.writable is False


def test_ping_payload_limit(pair: Pair) -> None:
    with pytest.raises(LocalProtocolError):
        pair.ws.ping(b"x" * 126)
    pair.ws.ping(b"x" * 125)
    assert pair.read_frames() == [(9, b"x" * 125)]


def test_writable_follows_the_water_marks() -> None:
    p = Pair(Config(port=0, compression=False, ping_interval=None, high_water=1024,
                    low_water=0, write_buffer_limit=None))
    try:
        assert p.ws.writable
        calls: list[bool] = []
        big = b"z" * 100_000
        while p.ws.writable:
            p.ws.send(big)
        p.ws.on_writable(lambda: calls.append(p.ws.writable))
        assert calls == []
        p.sock.setblocking(False)
        def drained() -> bool:
            try:
                while p.sock.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass
            return bool(calls)
        assert p.loop.run_until(drained, timeout=10)
        assert calls == [True]
    finally:
        p.close()


def test_settings_check_interval() -> None:
    assert EndpointSettings(handshake_timeout=None, ping_interval=None, ping_timeout=None,
                            close_timeout=None).check_interval() == 1.0
    assert EndpointSettings(close_timeout=0.4).check_interval() == 0.1
    assert EndpointSettings(close_timeout=0.01).check_interval() == 0.05
    # The write-buffer timeout counts only when a limit is set.
    assert EndpointSettings(write_buffer_timeout=0.4).check_interval() == 1.0
    assert EndpointSettings(write_buffer_limit=10, write_buffer_timeout=0.4).check_interval() == 0.1
    assert EndpointSettings().write_buffer_limit == UNLIMITED_BUFFER
    assert EndpointSettings(rate_limit=5).burst == 5
    assert EndpointSettings(rate_limit=0.5).burst == 1.0


def test_every_phase_trigger_pair_is_either_in_the_table_or_illegal() -> None:
    for phase, trigger in itertools.product(Phase, PhaseTrigger):
        assert ((phase, trigger) in PHASE_TRANSITIONS) is ((phase, trigger) in EXPECTED)


def test_pings_count_against_the_rate_limit() -> None:
    p = Pair(Config(port=0, compression=False, ping_interval=None, rate_limit=5))
    try:
        p.sock.sendall(b"".join(client_frame(0x9, b"p") for _ in range(20)))
        assert p.loop.run_until(lambda: p.ws.state != "open", timeout=5)
        frames = p.read_frames()
        assert frames[-1] == (8, b"\x03\xf0rate limit exceeded")
        assert 1 <= sum(1 for op, _ in frames if op == 0xA) <= 5
    finally:
        p.close()

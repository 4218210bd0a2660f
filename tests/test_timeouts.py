"""Every timeout and limit of the server, each provoked on purpose over 127.0.0.1.

The server runs on a fake clock (``tests/fakeclock.py``) and the test drives its
loop: each deadline is checked at its boundary, not fired just before it and
fired right at it, without waiting for real time.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import ClassVar

import pytest
from fakeclock import EPS, advance, connect_raw, fake_server, handshake, read_available, settle
from helpers import OP_TEXT, Frame, parse_close, parse_frames
from test_server import handshake_request, masked_frame

from rfc6455 import Config, Handler, WebSocket

PING = b"\x89\x00"  # an empty ping, as the server sends it


# Deadlines of 4 s make the server's sweep run once a (fake) second, starting one
# second after the first connection: stepping the clock by 1.0 lands on every sweep,
# so a deadline is seen exactly when it passes, not up to a sweep interval later.
SWEEP = 1.0


@pytest.mark.parametrize("sent", ["nothing", "half a request"])
def test_a_handshake_that_does_not_finish_is_dropped_at_the_deadline(
    sent: str, caplog: pytest.LogCaptureFixture
) -> None:
    with fake_server(Config(handshake_timeout=4.0)) as (server, clock):
        data = handshake_request(server.port)[:40] if sent != "nothing" else b""  # slowloris
        sock = connect_raw(server, data)
        advance(server.loop, clock, 4.0 - EPS, step=SWEEP)
        assert len(server.connections) == 1
        assert read_available(sock) == (b"", False)
        assert "handshake timeout" not in caplog.text
        advance(server.loop, clock, EPS)
        assert server.connections == []
        assert read_available(sock) == (b"", True)  # dropped, no answer
        sock.close()
    assert "handshake timeout" in caplog.text


class CloseLog(Handler):
    codes: ClassVar[list[int]] = []

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        CloseLog.codes.append(code)


def test_peer_that_stops_answering_pings_is_dropped() -> None:
    CloseLog.codes = []
    config = Config(ping_interval=4.0, ping_timeout=4.0)
    with fake_server(config, handler=CloseLog) as (server, clock):
        sock = handshake(server)  # the server last heard from us now
        loop = server.loop
        advance(loop, clock, 4.0 - EPS, step=SWEEP)
        assert read_available(sock) == (b"", False)  # no ping before the interval
        advance(loop, clock, EPS)
        assert read_available(sock) == (PING, False)  # we read it, but never answer
        advance(loop, clock, 4.0 - EPS, step=SWEEP)
        assert read_available(sock) == (b"", False)
        assert CloseLog.codes == []
        advance(loop, clock, EPS)  # interval + timeout of silence
        assert read_available(sock) == (b"", True)  # dropped without a closing handshake
        assert CloseLog.codes == [1006]
        sock.close()


def test_peer_that_answers_pings_stays_connected() -> None:
    config = Config(ping_interval=4.0, ping_timeout=4.0)
    with fake_server(config) as (server, clock):
        sock = handshake(server)
        loop = server.loop
        advance(loop, clock, 4.0, step=SWEEP)
        assert read_available(sock) == (PING, False)
        # answer at the last moment: one tick before a silent peer is dropped
        advance(loop, clock, 4.0 - EPS, step=SWEEP)
        sock.sendall(masked_frame(0xA, b""))
        settle(loop)
        advance(loop, clock, EPS)
        assert read_available(sock) == (b"", False)  # neither dropped nor pinged again
        # the next ping: silent for an interval since the pong, at the first sweep after
        advance(loop, clock, 3.0, step=SWEEP)
        assert read_available(sock) == (b"", False)
        advance(loop, clock, SWEEP)
        assert read_available(sock) == (PING, False)
        for _ in range(5):  # many intervals + timeouts, answering at once
            sock.sendall(masked_frame(0xA, b""))
            settle(loop)  # read now, not after the clock moved
            advance(loop, clock, 4.0, step=SWEEP)
            assert read_available(sock) == (PING, False)
        sock.sendall(masked_frame(0x1, b"still alive"))
        settle(loop)
        assert parse_frames(read_available(sock)[0]) == [
            Frame(True, 0, OP_TEXT, b"still alive", None)
        ]
        assert server.stats()["connections_open"] == 1


class CloseOnOpen(Handler):
    def on_open(self, ws: WebSocket) -> None:
        ws.close(1000, "go away")


def test_peer_that_ignores_our_close_is_dropped() -> None:
    with fake_server(Config(close_timeout=4.0), handler=CloseOnOpen) as (server, clock):
        sock = handshake(server)
        data, closed = read_available(sock)  # never answer the close frame
        assert parse_close(data, masked=False) == (1000, b"go away")
        assert not closed
        advance(server.loop, clock, 4.0 - EPS, step=SWEEP)
        assert read_available(sock) == (b"", False)
        assert len(server.connections) == 1
        advance(server.loop, clock, EPS)
        assert read_available(sock) == (b"", True)
        assert server.connections == []
        sock.close()


def test_idle_timeout_counts_from_the_last_message() -> None:
    config = Config(idle_timeout=4.0, ping_interval=None)
    with fake_server(config) as (server, clock):
        sock = handshake(server)
        loop = server.loop
        advance(loop, clock, 2.0, step=SWEEP)
        sock.sendall(masked_frame(0x1, b"hi"))
        settle(loop)
        assert read_available(sock)[0] == b"\x81\x02hi"
        sock.sendall(masked_frame(0x9, b""))  # a ping is not a message
        settle(loop)
        assert read_available(sock)[0] == b"\x8a\x00"
        # 4 s after the open a connection silent since then would be closed; not this one
        advance(loop, clock, 4.0 - EPS, step=SWEEP)
        assert read_available(sock) == (b"", False)
        advance(loop, clock, EPS)  # 4 s after the message
        data, closed = read_available(sock)
        assert parse_close(data, masked=False) == (1000, b"idle timeout")
        assert not closed  # a closing handshake: the server waits for our answer
        sock.close()


@pytest.mark.parametrize(("wait", "refill"), [(0.5 - EPS, False), (0.5, True)])
def test_rate_limit_refills_at_its_rate_then_closes_with_1008(
    wait: float, refill: bool, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(rate_limit=2.0, rate_burst=3.0)
    with fake_server(config) as (server, clock):
        sock = handshake(server)
        loop = server.loop
        sock.sendall(b"".join(masked_frame(0x1, str(i).encode()) for i in range(3)))
        settle(loop)  # the burst: three at once
        assert [f.payload for f in parse_frames(read_available(sock)[0])] == [b"0", b"1", b"2"]
        advance(loop, clock, wait)  # 2 per second: one token after 0.5 s
        sock.sendall(masked_frame(0x1, b"3"))
        settle(loop)
        data, _ = read_available(sock)
        if refill:
            assert data == b"\x81\x013"
            assert "rate limit" not in caplog.text
            sock.sendall(masked_frame(0x1, b"4"))  # the bucket is empty again
            settle(loop)
            data, _ = read_available(sock)
        assert parse_close(data, masked=False) == (1008, b"rate limit exceeded")
        sock.close()
    assert "rate limit" in caplog.text


class Flood(Handler):
    """Answers "flood" with 16 MiB at once (more than the kernel buffers hold)."""

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        if message == "flood":
            chunk = b"z" * 65536
            for _ in range(256):
                ws.send(chunk)
        else:
            ws.send(message)


def test_slow_consumer_closed_with_1008_others_unaffected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = Config(write_buffer_limit=256 * 1024, write_buffer_timeout=4.0)
    with fake_server(config, handler=Flood) as (server, clock):
        loop = server.loop
        slow = handshake(server)
        fast = handshake(server)
        slow.sendall(masked_frame(0x1, b"flood"))
        settle(loop)  # the kernel buffers are full: most of the 16 MiB waits with us
        slow_ws = next(ws for ws in server.connections if ws.messages_in)
        assert slow_ws.write_buffer_size > 256 * 1024
        for i in range(4):  # the fast one keeps getting answers while the slow one is stuck
            fast.sendall(masked_frame(0x1, f"m{i}".encode()))
            settle(loop)
            assert read_available(fast)[0] == b"\x81\x02" + f"m{i}".encode()
            advance(loop, clock, SWEEP - EPS if i == 3 else SWEEP)
        assert slow_ws.state == "open"  # over the limit for 4 s - EPS
        assert "slow consumer" not in caplog.text
        advance(loop, clock, EPS)
        assert slow_ws.state == "closing"
        fast.sendall(masked_frame(0x1, b"after"))
        settle(loop)
        assert read_available(fast)[0] == b"\x81\x05after"
        # everything queued before the decision, then close 1008
        close_frame = b"\x88\x0f\x03\xf0slow consumer"
        data = bytearray()
        started = time.monotonic()
        while not data.endswith(close_frame):
            assert time.monotonic() - started < 30, len(data)
            chunk, closed = read_available(slow)
            assert not closed, "closed before the close frame arrived"
            data += chunk
            loop.run_once(0.01)  # the server refills what we drained
        assert len(data) == 256 * (65536 + 10) + len(close_frame)
        slow.sendall(masked_frame(0x8, b"\x03\xf0"))
        settle(loop)
        assert read_available(slow) == (b"", True)
        slow.close()
        fast.close()
    assert "slow consumer" in caplog.text


def test_echo_backpressure_pauses_reading_instead_of_buffering() -> None:
    with fake_server(Config(write_buffer_limit=None)) as (server, _):
        loop = server.loop
        sock = handshake(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(0.0)
        stream = memoryview(masked_frame(0x2, b"q" * 16384) * 1024)  # 16 MiB of frames
        offset = 0
        for _ in range(100_000):
            sent = offset
            try:
                while offset < len(stream):
                    offset += sock.send(stream[offset:])
            except BlockingIOError:
                pass
            if settle(loop) == 1 and offset == sent:
                break  # we cannot send and the server has nothing to do: it stopped reading
        assert offset < len(stream)  # the server stopped taking our data
        ws = server.connections[0]
        assert ws.messages_in < 1024
        # it stopped reading instead of buffering without end
        assert ws.write_buffer_size < 1 << 20
        sock.close()


def test_accept_backs_off_on_emfile(caplog: pytest.LogCaptureFixture) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients: list[socket.socket] = []
    with fake_server() as (server, clock):
        loop = server.loop
        hog: list[socket.socket] = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (len(os_fds()) + 8, hard))
            for _ in range(4):
                clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            try:
                while True:
                    hog.append(socket.socket())
            except OSError:
                pass
            with caplog.at_level(logging.WARNING, logger="rfc6455.server"):
                # settles: the loop stops polling the listener it cannot accept from
                settle(loop)
            assert "pausing accepts" in caplog.text
            assert server.connections == []
        finally:
            for s in hog:
                s.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        advance(loop, clock, 0.25 - EPS)  # descriptors are free, but the pause lasts
        assert server.connections == []
        advance(loop, clock, EPS)
        assert len(server.connections) == 4  # accepted once the back-off was over
        for c in clients:
            c.close()


def os_fds() -> list[str]:
    import os

    return os.listdir("/proc/self/fd")

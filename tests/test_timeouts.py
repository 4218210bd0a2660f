"""Every timeout and limit of the server, each provoked on purpose over 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, ClassVar

import pytest
from test_server import (
    handshake_request,
    masked_frame,
    raw_handshake,
    read_until_closed,
    running_server,
    url,
)
from websockets.sync.client import connect as ws_connect

from rfc6455 import Config, ConnectionClosed, EchoHandler, Handler, Server, WebSocket, connect


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_half_a_handshake_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with running_server(Config(handshake_timeout=0.3)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(handshake_request(server.port)[:40])  # slowloris: never finishes
        assert read_until_closed(sock) == b""  # dropped, no answer
        sock.close()
        assert wait_for(lambda: not server.connections)
    assert "handshake timeout" in caplog.text


def test_connection_that_sends_nothing_is_dropped() -> None:
    with running_server(Config(handshake_timeout=0.3)) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        assert read_until_closed(sock) == b""
        sock.close()


class CloseLog(Handler):
    codes: ClassVar[list[int]] = []

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        CloseLog.codes.append(code)


def test_peer_that_stops_answering_pings_is_dropped() -> None:
    CloseLog.codes = []
    config = Config(ping_interval=0.2, ping_timeout=0.3)
    with running_server(config, handler=CloseLog) as server:
        sock = raw_handshake(server.port)
        data = read_until_closed(sock)  # we read, but never answer the ping
        assert data.startswith(b"\x89\x00")  # the server pinged us first
        assert b"\x88" not in data  # and then dropped us without a closing handshake
        sock.close()
        assert wait_for(lambda: CloseLog.codes == [1006])


def test_peer_that_answers_pings_stays_connected() -> None:
    config = Config(ping_interval=0.1, ping_timeout=0.2)
    with running_server(config) as server, ws_connect(url(server), compression=None) as ws:
        # websockets answers pings from its background thread
        time.sleep(0.8)  # several ping intervals + timeouts
        ws.send("still alive")
        assert ws.recv(timeout=5) == "still alive"
        assert server.stats()["connections_open"] == 1


class CloseOnOpen(Handler):
    def on_open(self, ws: WebSocket) -> None:
        ws.close(1000, "go away")


def test_peer_that_ignores_our_close_is_dropped() -> None:
    with running_server(Config(close_timeout=0.3), handler=CloseOnOpen) as server:
        sock = raw_handshake(server.port)
        data = read_until_closed(sock)  # never answer the close frame
        assert data.startswith(b"\x88")
        assert int.from_bytes(data[2:4], "big") == 1000
        sock.close()
        assert wait_for(lambda: not server.connections)


def test_idle_timeout_closes() -> None:
    config = Config(idle_timeout=0.3, ping_interval=None)
    with running_server(config) as server, connect(url(server)) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert (info.value.code, info.value.reason) == (1000, "idle timeout")


def test_rate_limit_closes_with_1008(caplog: pytest.LogCaptureFixture) -> None:
    config = Config(rate_limit=5, rate_burst=5)
    with running_server(config) as server, connect(url(server)) as ws:
        for i in range(50):
            ws.send(str(i))
        echoed = 0
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=5)
                echoed += 1
        assert info.value.code == 1008
        assert echoed < 50
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
    config = Config(write_buffer_limit=256 * 1024, write_buffer_timeout=0.3, close_timeout=10)
    with running_server(config, handler=Flood) as server:
        slow = raw_handshake(server.port)
        slow.sendall(masked_frame(0x1, b"flood"))
        with connect(url(server)) as fast:
            for i in range(20):  # keeps getting answers while the slow one is stuck
                fast.send(f"m{i}")
                assert fast.recv(timeout=5) == f"m{i}"
            assert wait_for(
                lambda: any(ws.state == "closing" for ws in server.connections), timeout=10
            )
            fast.send("after")
            assert fast.recv(timeout=5) == "after"
        # everything queued before the decision, then close 1008
        close_frame = b"\x88\x0f\x03\xf0slow consumer"
        data = b""
        slow.settimeout(10)
        while not data.endswith(close_frame):
            chunk = slow.recv(1 << 20)
            assert chunk, "closed before the close frame arrived"
            data += chunk
        assert len(data) == 256 * (65536 + 10) + len(close_frame)
        slow.sendall(masked_frame(0x8, b"\x03\xf0"))
        assert read_until_closed(slow) == b""
        slow.close()
    assert "slow consumer" in caplog.text


def test_echo_backpressure_pauses_reading_instead_of_buffering() -> None:
    # shutdown_timeout: at the end this peer still reads nothing, so our close waits.
    with running_server(Config(write_buffer_limit=None, shutdown_timeout=1.0)) as server:
        sock = raw_handshake(server.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        stream = memoryview(masked_frame(0x2, b"q" * 16384) * 1024)  # 16 MiB of frames
        offset = 0
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and offset < len(stream):
            try:
                offset += sock.send(stream[offset:])
            except BlockingIOError:
                time.sleep(0.01)
        assert offset < len(stream)  # the server stopped taking our data
        ws = server.connections[0]
        # the server stopped reading instead of buffering without end (whether it
        # is writable at this very instant, read from another thread, is a race)
        assert ws.write_buffer_size < 1 << 20
        sock.close()


def test_accept_backs_off_on_emfile(caplog: pytest.LogCaptureFixture) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server = Server(Config(port=0), handler=EchoHandler)
    server.start()
    hog: list[socket.socket] = []
    clients: list[socket.socket] = []
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
            ticks = server.loop.ticks
            server.loop.run_until(lambda: False, timeout=0.3)
        assert "pausing accepts" in caplog.text
        assert server.loop.ticks - ticks < 50  # not spinning on a readable listener
    finally:
        for s in hog:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    server.loop.run_until(lambda: len(server.connections) == 4, timeout=5)
    assert len(server.connections) == 4  # accepted once descriptors were free again
    for c in clients:
        c.close()
    server.close()


def os_fds() -> list[str]:
    import os

    return os.listdir("/proc/self/fd")

"""Zero leaks: 2,000 connections ending in every way leave nothing behind.

After clean closes, resets, handshake timeouts, protocol errors, handler
exceptions, heartbeat drops, close timeouts and plain HTTP requests, the
process's open descriptors, the selector's keys, the live timers and the
connection objects are back to their starting values.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import struct
import time
from collections.abc import Callable

from test_server import handshake_request, masked_frame, read_until_closed, running_server

from rfc6455 import Config, Handler, WebSocket
from rfc6455._connection import Connection
from rfc6455._transport import Transport

PER_KIND = 250  # x 8 kinds = 2,000 connections


class App(Handler):
    __slots__ = ()

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        if message == "boom":
            raise RuntimeError("handler failure")
        if message == "bye":
            ws.close(1000, "bye")
            return
        ws.send(message)


def open_raw(port: int, n: int) -> list[socket.socket]:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    return socks


def handshaken(port: int, n: int) -> list[socket.socket]:
    socks = open_raw(port, n)
    for s in socks:
        s.sendall(handshake_request(port))
    for s in socks:
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            chunk = s.recv(1)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
    return socks


def finish(socks: list[socket.socket]) -> None:
    for s in socks:
        read_until_closed(s)
        s.close()


def clean_close(port: int) -> None:
    socks = handshaken(port, PER_KIND)
    for s in socks:
        s.sendall(masked_frame(0x1, b"hi") + masked_frame(0x8, b"\x03\xe8"))
    finish(socks)


def reset(port: int) -> None:
    socks = handshaken(port, PER_KIND)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST


def handshake_timeout(port: int) -> None:
    socks = open_raw(port, PER_KIND)
    for s in socks:
        s.sendall(handshake_request(port)[:30])
    finish(socks)


def protocol_error(port: int) -> None:
    socks = handshaken(port, PER_KIND)
    for s in socks:
        s.sendall(b"\x81\x05hello")  # unmasked client frame: 1002
    finish(socks)


def handler_exception(port: int) -> None:
    socks = handshaken(port, PER_KIND)
    for s in socks:
        s.sendall(masked_frame(0x1, b"boom"))
    for s in socks:
        s.settimeout(10)
        head = s.recv(2)
        while head == b"\x89\x00":  # heartbeat pings may come first
            head = s.recv(2)
        assert head[:1] == b"\x88"  # close 1011
        s.sendall(masked_frame(0x8, b"\x03\xf3"))
    finish(socks)


def heartbeat_drop(port: int) -> None:
    finish(handshaken(port, PER_KIND))  # never answer the pings


def close_timeout(port: int) -> None:
    socks = handshaken(port, PER_KIND)
    for s in socks:
        s.sendall(masked_frame(0x1, b"bye"))  # the server closes; we never answer
    finish(socks)


def plain_http(port: int) -> None:
    socks = open_raw(port, PER_KIND)
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    for s in socks:
        assert read_until_closed(s).startswith(b"HTTP/1.1 200")
        s.close()


KINDS: list[Callable[[int], None]] = [
    clean_close,
    reset,
    handshake_timeout,
    protocol_error,
    handler_exception,
    heartbeat_drop,
    close_timeout,
    plain_http,
]


def tracked() -> int:
    gc.collect()
    return sum(
        1 for o in gc.get_objects() if isinstance(o, (WebSocket, Transport, Connection))
    )


def test_2000_connections_leave_nothing_behind() -> None:
    # pytest keeps every log record, and a record of a handler error holds its
    # traceback (and so the connection): turn the server's logging off here.
    log = logging.getLogger("rfc6455.server")
    level, log.level = log.level, logging.CRITICAL + 1
    try:
        run_connections()
    finally:
        log.setLevel(level)


def run_connections() -> None:
    config = Config(
        handshake_timeout=0.3,
        ping_interval=0.2,
        ping_timeout=0.2,
        close_timeout=0.3,
        max_connections=None,
        backlog=1024,
    )
    with running_server(config, handler=App) as server:
        loop = server.loop
        time.sleep(0.05)
        objects_before = tracked()  # first: its gc.collect() may close stray sockets
        fds_before = len(os.listdir("/proc/self/fd"))
        keys_before = loop.fd_count
        timers_before = loop.timer_count
        for kind in KINDS:
            kind(server.port)
        deadline = time.monotonic() + 10
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # let the last connection_lost callbacks run
        assert server.connections == []
        assert server.connections_total == len(KINDS) * PER_KIND
        assert len(os.listdir("/proc/self/fd")) == fds_before
        assert loop.fd_count == keys_before
        assert loop.timer_count == timers_before
        assert tracked() == objects_before
        assert server._per_ip == {}
        assert server._open_count == 0

"""Tests for rfc6455.client against the websockets server and our own, on 127.0.0.1."""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fakeclock import EPS, FakeClock, advance, fake_server, settle
from test_server import running_server, url
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import ServerConnection, serve

from rfc6455 import (
    Config,
    ConnectionClosed,
    Handler,
    HandshakeRejected,
    ReconnectingClient,
    WebSocket,
    loop_connect,
)
from rfc6455 import connect as our_connect
from rfc6455._loop import Loop
from rfc6455.client import parse_url


def ws_handler(conn: ServerConnection) -> None:
    for message in conn:
        if message == "close me":
            conn.close(4001, "done")
            return
        if message == "headers":
            conn.send(conn.request.headers.get("X-Token", "none"))  # type: ignore[union-attr]
            continue
        conn.send(message)


def process_request(conn: ServerConnection, request: Any) -> Response | None:
    if request.path == "/forbidden":
        return Response(403, "Forbidden", Headers([("Content-Length", "0")]), b"")
    return None


@contextmanager
def websockets_server(subprotocols: list[str] | None = None) -> Iterator[int]:
    with serve(
        ws_handler,
        "127.0.0.1",
        0,
        compression=None,
        subprotocols=subprotocols,
        process_request=process_request,
        max_size=None,
    ) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.socket.getsockname()[1]
        finally:
            server.shutdown()
            thread.join(10)


def test_parse_url() -> None:
    u = parse_url("wss://example.com/chat?room=1")
    assert (u.secure, u.host, u.port, u.target) == (True, "example.com", 443, "/chat?room=1")
    assert u.host_header == "example.com"
    u = parse_url("ws://[::1]:8080")
    assert (u.host, u.port, u.target, u.host_header) == ("::1", 8080, "/", "[::1]:8080")
    for bad in ("http://x/", "ws:///path", "ws://user:pw@host/"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_blocking_client_with_websockets_server() -> None:
    with websockets_server() as port, our_connect(f"ws://127.0.0.1:{port}/") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=5) == b"\x01\x02"
        big = os.urandom(1 << 20)
        ws.send(big)
        assert ws.recv(timeout=10) == big
        ws.send_fragments([b"ab", b"cd"])
        assert ws.recv(timeout=5) == b"abcd"
        ws.ping(b"x")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)  # the pong arrives, no message
        assert ws.pongs == [b"x"]
        ws.send("still usable after a timeout")
        assert ws.recv(timeout=5) == "still usable after a timeout"
    assert ws.close_code == 1000
    assert ws.closed


def test_subprotocol_and_extra_headers() -> None:
    with (
        websockets_server(["b", "a"]) as port,
        our_connect(
            f"ws://127.0.0.1:{port}/",
            subprotocols=["a", "c"],
            extra_headers=[("X-Token", "s3cret")],
        ) as ws,
    ):
        assert ws.subprotocol == "a"
        ws.send("headers")
        assert ws.recv(timeout=5) == "s3cret"


def test_server_close_code_is_reported() -> None:
    with websockets_server() as port, our_connect(f"ws://127.0.0.1:{port}/") as ws:
        ws.send("close me")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert (info.value.code, info.value.reason) == (4001, "done")
        assert not info.value.ok
        with pytest.raises(ConnectionClosed):
            ws.send("too late")


def test_rejected_handshake() -> None:
    with websockets_server() as port:
        with pytest.raises(HandshakeRejected) as info:
            our_connect(f"ws://127.0.0.1:{port}/forbidden")
        assert info.value.status_code == 403


def test_open_timeout_on_a_silent_server() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        with pytest.raises(TimeoutError):
            our_connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.3)
    finally:
        listener.close()


def test_iteration_ends_on_normal_close() -> None:
    with running_server() as server, our_connect(url(server)) as ws:
        ws.send("a")
        ws.send("b")
        got = []
        for message in ws:
            got.append(message)
            if len(got) == 2:
                break
        assert got == ["a", "b"]


# --- loop client ---------------------------------------------------------------------


class Collect(Handler):
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_open(self, ws: WebSocket) -> None:
        self.events.append("open")
        ws.send("one")
        ws.send(b"two")

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        self.events.append(message)
        if message == b"two":
            ws.send("close me")

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.events.append(("close", code, reason))


def test_loop_client_with_websockets_server() -> None:
    with websockets_server(["b", "a"]) as port, Loop() as loop:
        handler = Collect()
        ws = loop_connect(loop, f"ws://127.0.0.1:{port}/", handler, subprotocols=["b"])
        assert loop.run_until(lambda: ws.state == "closed", timeout=10)
        assert handler.events == ["open", "one", b"two", ("close", 4001, "done")]
        assert ws.subprotocol == "b"
        assert loop.timer_count == 0
        assert loop.fd_count == 1  # only the loop's own wakeup socket


def test_loop_client_connection_refused() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    errors: list[BaseException] = []
    with Loop() as loop:
        ws = loop_connect(loop, f"ws://127.0.0.1:{port}/", Handler(), on_error=errors.append)
        assert loop.run_until(lambda: bool(errors), timeout=10)
        settle(loop)
        assert loop.timer_count == 0
        assert loop.fd_count == 1
    assert isinstance(errors[0], ConnectionRefusedError)
    assert ws.failure is errors[0]


def test_loop_client_open_timeout_on_a_silent_server() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    errors: list[BaseException] = []
    clock = FakeClock()
    try:
        with Loop(clock=clock) as loop:
            ws = loop_connect(
                loop,
                f"ws://127.0.0.1:{silent.getsockname()[1]}/",
                Handler(),
                open_timeout=4.0,
                on_error=errors.append,
            )
            settle(loop)
            conn, _ = silent.accept()
            conn.settimeout(5)
            assert conn.recv(4096).startswith(b"GET / HTTP/1.1\r\n")  # waiting for a 101
            advance(loop, clock, 4.0 - EPS, step=1.0)  # the client checks once a second
            assert errors == []
            assert ws.state == "handshake"
            advance(loop, clock, EPS)
            assert len(errors) == 1
            assert isinstance(errors[0], TimeoutError)
            assert "opening handshake timed out" in str(errors[0])
            assert loop.timer_count == 0
            assert loop.fd_count == 1
            conn.close()
    finally:
        silent.close()


def record_delays(client: ReconnectingClient) -> list[float]:
    """Make ``client`` note every back-off delay it draws (still drawn by it)."""
    delays: list[float] = []
    draw = client.next_delay

    def recorded() -> float:
        delay = draw()
        delays.append(delay)
        return delay

    client.next_delay = recorded  # type: ignore[method-assign]
    return delays


class DropFirst(Handler):
    """Server side: closes the first connection it sees with 1012."""

    seen = 0

    def on_open(self, ws: WebSocket) -> None:
        DropFirst.seen += 1
        if DropFirst.seen == 1:
            ws.close(1012, "restarting")


def test_reconnecting_client_waits_exactly_its_backoff() -> None:
    DropFirst.seen = 0
    reconnected: list[WebSocket] = []
    opened: list[int] = []

    class Client(Handler):
        def on_open(self, ws: WebSocket) -> None:
            opened.append(ws.id)

    # server and client on one loop on a fake clock
    with fake_server(Config(), handler=DropFirst) as (server, clock):
        loop = server.loop
        client = ReconnectingClient(
            loop,
            url(server),
            Client,
            on_reconnect=reconnected.append,
            initial_delay=4.0,
            max_delay=8.0,
        )
        delays = record_delays(client)
        client.start()
        # opened, closed by the server with 1012: the back-off is drawn, not yet waited
        assert loop.run_until(lambda: bool(delays), timeout=10)
        first = client.ws
        assert first is not None and first.close_code == 1012
        assert len(opened) == 1
        assert 0.0 <= delays[0] <= 4.0  # the first delay is at most initial_delay
        due = clock() + delays[0]
        clock.advance_to(max(clock(), math.nextafter(due, 0.0)))
        settle(loop)
        assert client.ws is first  # one tick of the clock before: no new attempt
        clock.advance_to(due)
        assert loop.run_until(lambda: len(reconnected) == 1, timeout=10)
        assert len(opened) == 2
        assert client.connections == 2
        assert client.failures == 0
        client.stop()
        assert loop.run_until(lambda: client.ws is not None and client.ws.state == "closed",
                              timeout=10)
        settle(loop)
        assert loop.timer_count == 0  # no reconnection scheduled after stop()
        advance(loop, clock, 3600.0)
        assert client.connections == 2
        assert len(delays) == 1


def test_backoff_is_capped_and_jittered() -> None:
    with Loop() as loop:
        client = ReconnectingClient(
            loop, "ws://127.0.0.1:1/", Handler, initial_delay=0.1, max_delay=2.0
        )
        client.failures = 1
        first = [client.next_delay() for _ in range(200)]
        assert max(first) <= 0.1
        client.failures = 50
        late = [client.next_delay() for _ in range(200)]
        assert max(late) <= 2.0
        assert max(late) > 1.0  # grew up to the cap
        assert len(set(late)) > 100  # jittered, not in lockstep


def test_reconnecting_client_gives_up_after_max_attempts() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        client = ReconnectingClient(
            loop, f"ws://127.0.0.1:{port}/", Handler, initial_delay=4.0, max_delay=8.0,
            max_attempts=3,
        )
        delays = record_delays(client)
        client.start()
        assert loop.run_until(lambda: client.failures == 1, timeout=10)
        for failures in (1, 2, 3):
            assert client.failures == failures
            assert len(delays) == failures
            # full jitter under a cap that doubles from initial_delay up to max_delay
            assert 0.0 <= delays[-1] <= min(8.0, 4.0 * 2.0 ** (failures - 1))
            due = clock() + delays[-1]
            clock.advance_to(max(clock(), math.nextafter(due, 0.0)))
            settle(loop)
            assert client.failures == failures  # not retried before its time
            clock.advance_to(due)
            assert loop.run_until(lambda n=failures: client.failures == n + 1, timeout=10)
        settle(loop)
        assert client.failures == 4  # the first attempt and 3 retries
        assert len(delays) == 3
        assert loop.timer_count == 0  # gave up
        advance(loop, clock, 3600.0)
        assert client.failures == 4


def test_loop_client_over_tls(tmp_path: Any) -> None:
    import ssl

    from test_server import make_cert

    cert, key = make_cert(tmp_path)
    with running_server(Config(certfile=str(cert), keyfile=str(key))) as server, Loop() as loop:
        got: list[Any] = []

        class Once(Handler):
            def on_open(self, ws: WebSocket) -> None:
                ws.send("over tls")

            def on_message(self, ws: WebSocket, message: str | bytes) -> None:
                got.append(message)
                ws.close()

        ctx = ssl.create_default_context(cafile=str(cert))
        ws = loop_connect(loop, f"wss://localhost:{server.port}/", Once(), ssl_context=ctx)
        assert loop.run_until(lambda: ws.state == "closed", timeout=10)
        assert got == ["over tls"]
        assert ws.close_code == 1000
        # with the default context the self-signed certificate is refused
        errors: list[BaseException] = []
        loop_connect(loop, f"wss://localhost:{server.port}/", Once(), on_error=errors.append)
        assert loop.run_until(lambda: bool(errors), timeout=10)
        assert isinstance(errors[0], ssl.SSLCertVerificationError)


def test_client_does_not_hang_when_server_never_closes_tcp() -> None:
    from rfc6455._handshake import accept_key

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def bad_server() -> None:
        conn, _ = listener.accept()
        held.append(conn)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
            + b"\x88\x02\x03\xe8"  # close 1000, and then never close the TCP connection
        )

    thread = threading.Thread(target=bad_server, daemon=True)
    thread.start()
    try:
        ws = our_connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", close_timeout=0.3)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)  # returns after the close timeout, not after 10 s
        assert info.value.code == 1000
        assert ws.closed
    finally:
        thread.join(5)
        for s in held:
            s.close()
        listener.close()


def test_client_answers_a_message_that_came_with_the_close() -> None:
    """Autobahn 7.1.1 from the client side: the server sends a message and its close
    frame in one write; the echo must leave before our answering close."""
    from rfc6455._handshake import accept_key

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    received = bytearray()

    def server() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
                + b"\x81\x05hello"  # a text message ...
                + b"\x88\x02\x03\xe8"  # ... and close 1000, in one write
            )
            conn.settimeout(5)
            while len(received) < 2 + 4 + 5 + 2 + 4 + 2:  # masked echo + masked close
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received.extend(chunk)

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    try:
        with our_connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", close_timeout=1) as ws:
            message = ws.recv(timeout=5)
            assert message == "hello"
            ws.send(message)  # allowed: our close has not left yet
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert info.value.code == 1000
        thread.join(5)
        assert received[0] == 0x81 and received[1] == 0x85  # the echo first, masked
        key = bytes(received[2:6])
        assert bytes(b ^ key[i % 4] for i, b in enumerate(received[6:11])) == b"hello"
        assert received[11] == 0x88  # then our close
    finally:
        thread.join(5)
        listener.close()

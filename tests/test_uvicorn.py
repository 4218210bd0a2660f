"""rfc6455.uvicorn.WebSocketProtocol under a real uvicorn server, with real clients.

uvicorn's own suite (tests/interop/test_uvicorn_suite.py) covers the ASGI contract
shared with its built-in protocols; these cover what is ours: 1011 after an
exception, the 1009 limit with its reason, keepalive timeouts, subprotocols that were
not offered, frames that arrive before the app accepts, and the send/receive rules.
The server runs in a thread (uvicorn installs no signal handlers there) on port 0;
the client is rfc6455's blocking client or a raw socket.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import OP_TEXT, frame

import rfc6455
from rfc6455 import ConnectionClosed, HandshakeRejected

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
try:
    import uvicorn
except ImportError:  # pragma: no cover - the uvicorn extra is part of dev
    if IN_CI:
        raise
    pytest.skip("uvicorn is not installed (the `uvicorn` extra)", allow_module_level=True)

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
TIMEOUT = 10.0


@contextmanager
def serve(app: App, **options: Any) -> Iterator[tuple[str, uvicorn.Server]]:
    """Run ``app`` under uvicorn with our protocol; yield (ws://127.0.0.1:PORT, server)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                            ws="rfc6455.uvicorn:WebSocketProtocol", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "uvicorn did not stop"


def echo_app(log: list[Any]) -> App:
    """Accept, echo, record every event; text "raise" raises, "close:<code>" closes."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        log.append(scope)
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            log.append(message)
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "raise":
                raise RuntimeError("on purpose")
            if message.get("text", "").startswith("close:"):
                await send({"type": "websocket.close", "code": int(message["text"][6:]),
                            "reason": "bye"})
                continue
            await send({"type": "websocket.send", **{k: v for k, v in message.items()
                                                     if k in ("text", "bytes")}})

    return app


def wait_for(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_echo_text_and_binary_with_compression() -> None:
    log: list[Any] = []
    with serve(echo_app(log)) as (url, _), rfc6455.connect(url + "/p?q=1", timeout=TIMEOUT) as ws:
        extensions = dict(ws.response_headers).get("sec-websocket-extensions", "")
        assert extensions.startswith("permessage-deflate"), ws.response_headers
        for message in ("hi", "\u2603" * 1000, b"\x00" * 100_000, b""):
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
    scope = log[0]
    assert (scope["path"], scope["query_string"], scope["scheme"]) == ("/p", b"q=1", "ws")
    assert "websocket.http.response" in scope["extensions"]


def test_exception_after_accept_closes_1011() -> None:
    log: list[Any] = []
    with serve(echo_app(log)) as (url, _), rfc6455.connect(url, timeout=TIMEOUT) as ws:
        ws.send("raise")
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=TIMEOUT)
    assert caught.value.code == 1011


def test_app_close_code_reason_and_its_disconnect_event() -> None:
    log: list[Any] = []
    with serve(echo_app(log)) as (url, _), rfc6455.connect(url, timeout=TIMEOUT) as ws:
        ws.send("close:4000")
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=TIMEOUT)
        wait_for(lambda: log[-1]["type"] == "websocket.disconnect")
    assert (caught.value.code, caught.value.reason) == (4000, "bye")
    assert log[-1] == {"type": "websocket.disconnect", "code": 4000, "reason": "bye"}


def test_peer_close_reaches_the_app_with_code_and_reason() -> None:
    log: list[Any] = []
    with serve(echo_app(log)) as (url, _):
        with rfc6455.connect(url, timeout=TIMEOUT) as ws:
            ws.close(4005, "client says bye")
        wait_for(lambda: bool(log) and log[-1]["type"] == "websocket.disconnect")
    assert log[-1] == {"type": "websocket.disconnect", "code": 4005, "reason": "client says bye"}


def test_ws_max_size_closes_1009_and_tells_the_app() -> None:
    log: list[Any] = []
    with serve(echo_app(log), ws_max_size=1000, ws_per_message_deflate=False) as (url, _):
        with rfc6455.connect(url, timeout=TIMEOUT) as ws:
            ws.send(b"x" * 1000)
            assert ws.recv(timeout=TIMEOUT) == b"x" * 1000
            ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosed) as caught:
                ws.recv(timeout=TIMEOUT)
        wait_for(lambda: log[-1]["type"] == "websocket.disconnect")
    assert caught.value.code == 1009
    assert log[-1]["code"] == 1009 and log[-1]["reason"]


def test_keepalive_timeout_closes_1011() -> None:
    """A client that never answers pings (a raw socket) gets close 1011 after the timeout."""
    log: list[Any] = []
    with serve(echo_app(log), ws_ping_interval=0.1, ws_ping_timeout=0.2) as (url, _):
        sock = raw_handshake(url)
        with sock:
            data = read_until_closed(sock)
        wait_for(lambda: log[-1]["type"] == "websocket.disconnect")
    close = data[data.index(b"\x88"):]
    assert close[2:4] == (1011).to_bytes(2, "big"), data
    assert b"keepalive ping timeout" in close
    assert log[-1] == {"type": "websocket.disconnect", "code": 1011,
                       "reason": "keepalive ping timeout"}


def test_subprotocol_not_offered_is_a_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "never.offered"})

    with serve(app) as (url, _), pytest.raises(HandshakeRejected) as caught:
        rfc6455.connect(url, timeout=TIMEOUT, subprotocols=["chat"])
    assert caught.value.status_code == 500


def test_frames_sent_before_the_app_accepts_are_delivered() -> None:
    accepted = asyncio.Event()
    got: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.3)  # the client's first frame arrives meanwhile
        await send({"type": "websocket.accept"})
        accepted.set()
        got.append(await receive())
        await send({"type": "websocket.close"})

    with serve(app, ws_per_message_deflate=False) as (url, _):
        sock = raw_handshake(url, wait_for_response=False)
        with sock:
            time.sleep(0.1)
            sock.sendall(frame(OP_TEXT, b"early", mask=True))
            read_until_closed(sock, reply_close=True)
    assert got == [{"type": "websocket.receive", "text": "early"}]


def test_send_rules() -> None:
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for bad in ({"type": "websocket.send"}, {"type": "websocket.accept"},
                    {"type": "websocket.close", "code": 1006}):
            try:
                await send(bad)
            except Exception as exc:  # noqa: BLE001 - recorded, then checked
                errors.append(exc)
        await send({"type": "websocket.close", "code": 1000})
        try:
            await send({"type": "websocket.send", "text": "late"})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        assert (await receive())["type"] == "websocket.disconnect"
        assert (await receive())["type"] == "websocket.disconnect"  # asked again: the same

    with (serve(app) as (url, _), rfc6455.connect(url, timeout=TIMEOUT) as ws,
          pytest.raises(ConnectionClosed) as caught):
        ws.recv(timeout=TIMEOUT)
    assert caught.value.code == 1000
    kinds = [type(e) for e in errors]
    assert kinds == [RuntimeError, RuntimeError, rfc6455.LocalProtocolError, RuntimeError], errors


def test_shutdown_closes_1012() -> None:
    log: list[Any] = []
    with serve(echo_app(log)) as (url, server):
        ws = rfc6455.connect(url, timeout=TIMEOUT)
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
        server.should_exit = True
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=TIMEOUT)
        ws.close()
    assert caught.value.code == 1012
    assert log[-1] == {"type": "websocket.disconnect", "code": 1012}


# ------------------------------------------------------------------ raw socket


def raw_handshake(url: str, *, wait_for_response: bool = True) -> socket.socket:
    """A socket that sent a WebSocket request (no extensions); with the 101 read."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    if wait_for_response:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_until_closed(sock: socket.socket, *, reply_close: bool = False) -> bytes:
    """Everything the server sends until it closes TCP; answers its close frame if asked."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        if reply_close and b"\r\n\r\n" in data:
            frames = data.split(b"\r\n\r\n", 1)[1]
            if frames.startswith(b"\x88"):
                sock.sendall(frame(0x8, frames[2:2 + frames[1]], mask=True))
                reply_close = False

"""Tests for rfc6455.server over real sockets on 127.0.0.1.

The helpers at the top (``running_server``, ``raw_handshake``, ...) are shared
with the other loop/server test modules.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from rfc6455 import (
    Config,
    ConnectionClosed,
    EchoHandler,
    Handler,
    HandshakeRejected,
    Server,
    WebSocket,
    connect,
)

# --- helpers shared by the server test modules ------------------------------------


@contextmanager
def running_server(config: Config | None = None, **kwargs: Any) -> Iterator[Server]:
    """A server on an ephemeral port, its loop in a thread; shut down on exit."""
    if config is None:
        config = Config(port=0)
    config.port = 0
    if "routes" not in kwargs and "handler" not in kwargs:
        kwargs["handler"] = EchoHandler
    server = Server(config, **kwargs)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def handshake_request(port: int, path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def raw_handshake(port: int, path: str = "/", timeout: float = 5.0) -> socket.socket:
    """A raw socket that completed the opening handshake (101 read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(handshake_request(port, path))
    data = b""
    while not data.endswith(b"\r\n\r\n"):  # byte by byte: leave the frames after it
        chunk = sock.recv(1)
        assert chunk, "server closed during the handshake"
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    return sock


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    key = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def make_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


# --- echo ---------------------------------------------------------------------------


def test_echo_with_our_client() -> None:
    with running_server() as server, connect(url(server)) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=5) == b"\x00\xff"
        big = os.urandom(1 << 20)
        ws.send(big)
        assert ws.recv(timeout=10) == big
        ws.send_fragments(["frag", "ment", "ed"])
        assert ws.recv(timeout=5) == "fragmented"
    assert ws.close_code == 1000


def test_echo_with_websockets_client() -> None:
    with running_server() as server:
        with ws_connect(url(server), compression=None) as ws:
            ws.send("text")
            assert ws.recv(timeout=5) == "text"
            ws.send(b"bin")
            assert ws.recv(timeout=5) == b"bin"
            big = "x" * (1 << 20)
            ws.send(big)
            assert ws.recv(timeout=10) == big
            ws.send(["a", "b", "c"])  # fragmented
            assert ws.recv(timeout=5) == "abc"
            pong = ws.ping(b"hi")
            assert pong.wait(5)
        assert server.stats()["messages_in"] == 4


def test_many_messages_in_one_write_keep_order() -> None:
    with running_server() as server:
        sock = raw_handshake(server.port)
        sock.sendall(b"".join(masked_frame(0x1, str(i).encode()) for i in range(200)))
        want = b"".join(bytes([0x81, len(str(i))]) + str(i).encode() for i in range(200))
        got = b""
        sock.settimeout(5)
        while len(got) < len(want):
            got += sock.recv(65536)
        assert got == want
        sock.close()


def test_frames_sent_with_the_handshake_are_not_lost() -> None:
    with running_server() as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(handshake_request(server.port) + masked_frame(0x1, b"early"))
        data = b""
        while b"early" not in data:
            chunk = sock.recv(4096)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
        assert data.endswith(b"\x81\x05early")
        sock.close()


def test_protocol_error_closes_with_1002() -> None:
    with running_server() as server:
        sock = raw_handshake(server.port)
        sock.sendall(bytes([0x83, 0x80]) + os.urandom(4))  # reserved opcode 3
        data = read_until_closed(sock)
        assert data[:1] == b"\x88"
        assert int.from_bytes(data[2:4], "big") == 1002
        sock.close()


def test_message_too_big_closes_with_1009() -> None:
    with running_server(Config(max_message_size=1000)) as server, connect(url(server)) as ws:
        ws.send("x" * 2000)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1009


# --- plain HTTP ---------------------------------------------------------------------


def test_healthz_metrics_404_426() -> None:
    with running_server(routes={"/chat": EchoHandler}) as server:
        status, _, body = http_get(server.port, "/healthz")
        assert (status, body) == (200, b"ok\n")
        with connect(url(server, "/chat")) as ws:
            ws.send("m")
            ws.recv(timeout=5)
        status, headers, body = http_get(server.port, "/metrics")
        assert status == 200
        assert "text/plain" in headers["Content-Type"]
        text = body.decode()
        assert "rfc6455_messages_received_total 1" in text
        assert "rfc6455_messages_sent_total 1" in text
        assert "# TYPE rfc6455_connections_open gauge" in text
        status, _, _ = http_get(server.port, "/nope")
        assert status == 404
        status, headers, _ = http_get(server.port, "/chat")
        assert status == 426
        assert headers["Upgrade"] == "websocket"
        # a WebSocket handshake to a path without a handler is refused with 404
        with pytest.raises(HandshakeRejected) as info:
            connect(url(server, "/nope"))
        assert info.value.status_code == 404


def test_malformed_handshake_gets_400() -> None:
    with running_server() as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"  # no key
        )
        data = read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 400")
        sock.close()


def test_custom_http_route() -> None:
    def page(request: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("Content-Type", "text/html")], b"<h1>hi</h1>"

    with running_server(http_routes={"/": page}) as server:
        status, _, body = http_get(server.port, "/")
        assert (status, body) == (200, b"<h1>hi</h1>")


# --- handlers and routing -------------------------------------------------------------


class Recording(Handler):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def on_open(self, ws: WebSocket) -> None:
        self.log.append(("open", ws.path, ws.subprotocol))
        ws.send(f"welcome {ws.path}")

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        if message == "boom":
            raise RuntimeError("secret internal detail")
        if message == "close":
            ws.close(4000, "bye")
            return
        ws.send(message)

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.log.append(("close", code, reason))


def test_routing_subprotocol_and_callbacks() -> None:
    log: list[Any] = []
    config = Config(subprotocols=["chat.v2", "chat.v1"])
    with (
        running_server(config, routes={"/a": lambda: Recording(log)}) as server,
        connect(url(server, "/a?x=1"), subprotocols=["chat.v1", "chat.v2"]) as ws,
    ):
        assert ws.subprotocol == "chat.v2"
        assert ws.recv(timeout=5) == "welcome /a"
        ws.send("close")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert (info.value.code, info.value.reason) == (4000, "bye")
    assert log[0] == ("open", "/a", "chat.v2")
    assert log[1][0] == "close"


def test_handler_exception_closes_only_that_connection_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[Any] = []
    with (
        running_server(handler=lambda: Recording(log)) as server,
        connect(url(server)) as good,
        connect(url(server)) as bad,
    ):
        good.recv(timeout=5)
        bad.recv(timeout=5)
        bad.send("boom")
        with pytest.raises(ConnectionClosed) as info:
            bad.recv(timeout=5)
        assert info.value.code == 1011
        assert "secret" not in info.value.reason
        good.send("still here")
        assert good.recv(timeout=5) == "still here"
    assert "secret internal detail" in caplog.text  # logged, with the traceback


def test_max_connections_gets_503_with_retry_after() -> None:
    with running_server(Config(max_connections=2, retry_after=7)) as server:
        with connect(url(server)), connect(url(server)):
            with pytest.raises(HandshakeRejected) as info:
                connect(url(server))
            assert info.value.status_code == 503
            assert ("retry-after", "7") in info.value.headers
        # slots free again once those closed
        with connect(url(server)) as ws:
            ws.send("ok")
            assert ws.recv(timeout=5) == "ok"


def test_max_connections_per_ip() -> None:
    with running_server(Config(max_connections_per_ip=1)) as server, connect(url(server)):
        with pytest.raises(HandshakeRejected) as info:
            connect(url(server))
        assert info.value.status_code == 503


def test_tls_server_and_client(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    with running_server(Config(certfile=str(cert), keyfile=str(key))) as server:
        ctx = ssl.create_default_context(cafile=str(cert))
        with connect(f"wss://localhost:{server.port}/", ssl_context=ctx) as ws:
            ws.send("secret")
            assert ws.recv(timeout=5) == "secret"
            big = os.urandom(300_000)
            ws.send(big)
            assert ws.recv(timeout=10) == big
        # verification is on by default: a self-signed certificate is refused
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(f"wss://localhost:{server.port}/")


def test_ipv6() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.fail("IPv6 loopback is not available on this machine")
    server = Server(Config(host="::1", port=0), handler=EchoHandler)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with connect(f"ws://[::1]:{server.port}/") as ws:
            ws.send("v6")
            assert ws.recv(timeout=5) == "v6"
    finally:
        server.shutdown()
        thread.join(10)


def test_listening_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="rfc6455.server"), running_server() as server:
        pass
    assert f"listening on ws://127.0.0.1:{server.port}" in caplog.text


def test_open_and_close_logged_with_connection_id(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level("INFO", logger="rfc6455.server"),
        running_server() as server,
        connect(url(server)) as ws,
    ):
        ws.send("x")
        ws.recv(timeout=5)
    records = [r for r in caplog.records if getattr(r, "conn_id", None) is not None]
    assert any("open" in r.getMessage() for r in records)
    closed = [r for r in records if "closed 1000" in r.getMessage()]
    assert closed and "in 1 msgs" in closed[0].getMessage()
    assert all(r.peer.startswith("127.0.0.1:") for r in records)  # type: ignore[attr-defined]


def test_debug_records_for_messages_and_transitions(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level("DEBUG", logger="rfc6455.server"),
        running_server() as server,
        connect(url(server), compression=False) as ws,  # a 3-byte frame: 2 + "x"
    ):
        ws.send("x")
        ws.recv(timeout=5)
    text = caplog.text
    assert "received text message, 1 bytes" in text
    assert "sending a 3-byte frame" in text
    assert "close frame received (1000" in text


def test_request_is_available_to_the_handler() -> None:
    seen: list[Any] = []

    class Inspect(Handler):
        def on_open(self, ws: WebSocket) -> None:
            assert ws.request is not None
            seen.append(dict(ws.request.headers).get("x-user"))
            seen.append(ws.remote_address[0])

    with running_server(handler=Inspect) as server:
        with connect(url(server), extra_headers=[("X-User", "ada")]) as ws:
            ws.send("x")
        assert seen == ["ada", "127.0.0.1"]


def test_permessage_deflate_through_the_server() -> None:
    from rfc6455.permessage_deflate import ServerPerMessageDeflate

    config = Config(extensions=(ServerPerMessageDeflate(),))
    with running_server(config) as server, ws_connect(url(server)) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        text = "compressible " * 10_000
        ws.send(text)
        assert ws.recv(timeout=10) == text
        ws.send(b"\x00" * 100_000)
        assert ws.recv(timeout=10) == b"\x00" * 100_000
    assert server.stats()["bytes_in"] < 100_000  # it really was compressed on the wire
    off = Config(extensions=(ServerPerMessageDeflate(),), compression=False)
    with running_server(off) as s2, ws_connect(url(s2)) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


def test_broadcast_frames_once_and_skips_closed_peers() -> None:
    from rfc6455 import broadcast

    peers: list[WebSocket] = []

    class Join(Handler):
        def on_open(self, ws: WebSocket) -> None:
            peers.append(ws)

        def on_message(self, ws: WebSocket, message: str | bytes) -> None:
            if message == "leave":
                ws.close()
            elif message == "not to me":
                ws.send(str(broadcast(peers, message.encode(), exclude=ws)))
            else:
                ws.send(str(broadcast(peers, message)))

    with (
        running_server(handler=Join) as server,
        connect(url(server)) as a,
        connect(url(server)) as b,
        connect(url(server)) as c,
    ):
        c.send("leave")
        with pytest.raises(ConnectionClosed):
            c.recv(timeout=5)
        a.send("hello all")
        assert a.recv(timeout=5) == "hello all"  # a is a peer too
        assert a.recv(timeout=5) == "2"  # written to a and b; c is closed
        assert b.recv(timeout=5) == "hello all"
        a.send("not to me")
        assert b.recv(timeout=5) == b"not to me"
        assert a.recv(timeout=5) == "1"  # only b: a excluded, c closed


def test_idle_server_has_no_timers_and_does_not_spin() -> None:
    server = Server(Config(port=0), handler=EchoHandler)
    server.start()
    try:
        ticks = server.loop.ticks
        assert server.loop.timer_count == 0  # no sweep without connections
        server.loop.run_until(lambda: False, timeout=0.3)
        assert server.loop.ticks - ticks <= 2
    finally:
        server.close()


def test_reuse_port_lets_two_servers_share_a_port() -> None:
    first = Server(Config(port=0, reuse_port=True), handler=EchoHandler)
    first.start()
    second = Server(Config(port=first.port, reuse_port=True), handler=EchoHandler)
    try:
        second.start()
        assert second.port == first.port
    finally:
        first.close()
        second.close()


def test_tls_client_sends_sni(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    names: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sslobj, name, context: names.append(name)  # type: ignore[assignment]
    with running_server(Config(ssl_context=ctx)) as server:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        with connect(f"wss://localhost:{server.port}/", ssl_context=client_ctx) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
    assert names == ["localhost"]


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 70000},
        {"high_water": 10, "low_water": 20},
        {"ping_interval": 0},
        {"rate_limit": -1},
        {"shutdown_timeout": -1},
        {"keyfile": "k.pem"},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Config(**bad)


def test_close_with_a_code_that_may_not_be_sent_raises_and_keeps_the_connection() -> None:
    from rfc6455 import LocalProtocolError

    errors: list[str] = []

    class BadClose(Handler):
        def on_message(self, ws: WebSocket, message: str | bytes) -> None:
            try:
                ws.close(1006)
            except LocalProtocolError:
                errors.append("refused")
            ws.send(message)

    with running_server(handler=BadClose) as server, connect(url(server)) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"  # still open
    assert errors == ["refused"]


def test_message_and_close_in_one_chunk_answered_before_the_close() -> None:
    with running_server() as server:
        sock = raw_handshake(server.port)
        sock.sendall(masked_frame(0x1, b"last") + masked_frame(0x8, b"\x03\xe8"))
        data = read_until_closed(sock)
        assert data == b"\x81\x04last" + b"\x88\x02\x03\xe8"
        sock.close()


def test_compression_is_on_by_default_on_both_sides() -> None:
    """Issue 4: the server accepts and the client offers permessage-deflate unless told not to."""
    from rfc6455 import connect

    with running_server(Config()) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        with connect(url) as ws:
            extensions = dict(ws.response_headers).get("sec-websocket-extensions", "")
            assert extensions.startswith("permessage-deflate")
            ws.send("compressible " * 100)
            assert ws.recv(timeout=10) == "compressible " * 100
        with connect(url, compression=False) as ws:
            assert "sec-websocket-extensions" not in dict(ws.response_headers)
    with (
        running_server(Config(compression=False)) as server,
        connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        assert "sec-websocket-extensions" not in dict(ws.response_headers)


def test_origin_and_auth_checks_refuse_with_403_and_401() -> None:
    from rfc6455 import HandshakeError, HandshakeRejected, UpgradeRequest, connect

    def needs_token(request: UpgradeRequest) -> None:
        if ("authorization", "Bearer good") not in request.headers:
            raise HandshakeError(
                "a bearer token is required", 401, [("WWW-Authenticate", "Bearer")]
            )

    config = Config(allowed_origins=["https://app.example"], check_request=needs_token)
    with running_server(config) as server:
        target = f"ws://127.0.0.1:{server.port}/"
        good = [("Authorization", "Bearer good")]
        with pytest.raises(HandshakeRejected) as refused:
            connect(target, origin="https://evil.example", extra_headers=good)
        assert refused.value.status_code == 403
        with pytest.raises(HandshakeRejected) as refused:
            connect(target, origin="https://app.example")
        assert refused.value.status_code == 401
        assert ("www-authenticate", "Bearer") in refused.value.headers
        with connect(target, origin="https://app.example", extra_headers=good) as ws:
            ws.send("in")
            assert ws.recv(timeout=5) == "in"
        with connect(target, extra_headers=good) as ws:  # no Origin: not a browser page
            ws.send("in")
            assert ws.recv(timeout=5) == "in"

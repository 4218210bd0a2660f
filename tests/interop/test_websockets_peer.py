"""Interop with the Python ``websockets`` library (sync API), both directions.

Our server (the CLI, ``--app echo``) against ``websockets.sync.client``; our
client against ``websockets.sync.server``; the same exchange with
permessage-deflate, with and without context takeover.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from interop_support import (
    OurServer,
    SelfSignedCert,
    basic_messages,
    client_ssl_context,
    deflate_messages,
    fragmented_messages,
    our_client_close_info,
    our_client_connect,
    our_client_extensions,
    our_client_ping,
    our_server,
    require_deflate,
    websockets_echo_server,
)

pytestmark = pytest.mark.interop

MAX_SIZE = 64 * 1024 * 1024
RECV_TIMEOUT = 30.0


def ws_connect(url: str, **kwargs: Any) -> Any:
    from websockets.sync.client import connect

    kwargs.setdefault("max_size", MAX_SIZE)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("open_timeout", 30)
    kwargs.setdefault("close_timeout", 30)
    return connect(url, **kwargs)


def assert_echoes(ws: Any, messages: list[str | bytes]) -> None:
    for index, message in enumerate(messages):
        ws.send(message)
        echo = ws.recv(timeout=RECV_TIMEOUT)
        assert type(echo) is type(message), f"message {index}: type {type(echo).__name__}"
        assert echo == message, f"message {index} ({len(message)} units) came back different"


@pytest.fixture
def server(websockets_lib: Any) -> Iterator[OurServer]:
    with our_server() as running:
        yield running


# --------------------------------------------------------------------------- our server


class TestOurServerWebsocketsClient:
    def test_echo_text_binary_and_1mib(self, server: OurServer) -> None:
        with ws_connect(server.url, compression=None) as ws:
            assert_echoes(ws, basic_messages())

    def test_fragmented_messages_are_reassembled(self, server: OurServer) -> None:
        with ws_connect(server.url, compression=None) as ws:
            ws.send(["frag", "mented ", "text \u2603"])
            assert ws.recv(timeout=RECV_TIMEOUT) == "fragmented text \u2603"
            ws.send([b"\x01\x02", b"", b"\x03" * 70000])
            assert ws.recv(timeout=RECV_TIMEOUT) == b"\x01\x02" + b"\x03" * 70000

    def test_ping_is_answered(self, server: OurServer) -> None:
        with ws_connect(server.url, compression=None) as ws:
            pong = ws.ping(b"are you there")
            assert pong.wait(RECV_TIMEOUT), "no pong for our ping"
            ws.send("still open")
            assert ws.recv(timeout=RECV_TIMEOUT) == "still open"

    @pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1000, "done"), (4001, "bye")])
    def test_client_close_is_echoed(self, server: OurServer, code: int, reason: str) -> None:
        with ws_connect(server.url, compression=None) as ws:
            ws.send("x")
            assert ws.recv(timeout=RECV_TIMEOUT) == "x"
            ws.close(code, reason)
            # RFC 6455 §5.5.1: the answer echoes the status code.
            assert ws.protocol.close_rcvd is not None, "server sent no close frame"
            assert ws.protocol.close_rcvd.code == code

    def test_deflate_with_context_takeover(self, server: OurServer) -> None:
        require_deflate()
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

        factory = ClientPerMessageDeflateFactory(client_max_window_bits=True)
        with ws_connect(server.url, extensions=[factory], compression=None) as ws:
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert accepted.startswith("permessage-deflate"), accepted
            assert "no_context_takeover" not in accepted
            assert_echoes(ws, deflate_messages())

    def test_deflate_without_context_takeover(self, server: OurServer) -> None:
        require_deflate()
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

        factory = ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True,
        )
        with ws_connect(server.url, extensions=[factory], compression=None) as ws:
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert accepted.startswith("permessage-deflate"), accepted
            # The server must honour server_no_context_takeover when it accepts the offer.
            assert "server_no_context_takeover" in accepted
            assert_echoes(ws, deflate_messages())

    def test_deflate_small_window(self, server: OurServer) -> None:
        require_deflate()
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

        factory = ClientPerMessageDeflateFactory(server_max_window_bits=10,
                                                 client_max_window_bits=9)
        with ws_connect(server.url, extensions=[factory], compression=None) as ws:
            accepted = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert "server_max_window_bits=10" in accepted, accepted
            assert_echoes(ws, deflate_messages())

    def test_echo_over_tls(self, websockets_lib: Any, tls_cert: SelfSignedCert) -> None:
        options = ("--certfile", str(tls_cert.cert), "--keyfile", str(tls_cert.key))
        with our_server(*options) as running, \
                ws_connect(running.url, ssl=client_ssl_context(tls_cert)) as ws:
            assert running.url.startswith("wss://")
            assert_echoes(ws, basic_messages())

    def test_no_compression_flag_declines_deflate(self, websockets_lib: Any) -> None:
        with our_server("--no-compression") as running, ws_connect(running.url) as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            assert_echoes(ws, ["plain", b"\x00" * 1000])


# --------------------------------------------------------------------------- our client


def our_connect(url: str, **kwargs: Any) -> Any:
    return our_client_connect(url, **kwargs)


class TestOurClientWebsocketsServer:
    def test_echo_text_binary_and_1mib(self, websockets_lib: Any) -> None:
        with websockets_echo_server(compression=None) as peer, our_connect(peer.url) as ws:
            for message in basic_messages():
                ws.send(message)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                assert type(echo) is type(message)
                assert echo == message
        assert peer.received == basic_messages()

    def test_receives_fragmented_messages(self, websockets_lib: Any) -> None:
        with websockets_echo_server(compression=None) as peer, our_connect(peer.url) as ws:
            ws.send("frag:text:3:fragmented text \u2603")
            assert ws.recv(timeout=RECV_TIMEOUT) == "fragmented text \u2603"
            ws.send("frag:binary:4:abcdefghij")
            assert ws.recv(timeout=RECV_TIMEOUT) == b"abcdefghij"

    @pytest.mark.parametrize("deflate", [None, {}], ids=["plain", "deflate"])
    def test_sends_fragmented_messages(self, websockets_lib: Any, deflate: dict[str, Any] | None) -> None:
        with websockets_echo_server() as peer, our_client_connect(peer.url, deflate=deflate) as ws:
            negotiated = our_client_extensions(ws).startswith("permessage-deflate")
            assert negotiated == (deflate is not None)
            for parts in fragmented_messages():
                ws.send_fragments(parts)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                whole = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                assert type(echo) is type(whole)
                assert echo == whole

    def test_echo_over_tls(self, websockets_lib: Any, tls_cert: SelfSignedCert) -> None:
        import ssl

        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(tls_cert.cert, tls_cert.key)
        with websockets_echo_server(ssl=server_context) as peer, \
                our_connect(peer.url, deflate={},
                            ssl_context=client_ssl_context(tls_cert)) as ws:
            assert peer.url.startswith("wss://")
            for message in basic_messages():
                ws.send(message)
                assert ws.recv(timeout=RECV_TIMEOUT) == message

    def test_answers_server_ping(self, websockets_lib: Any) -> None:
        with websockets_echo_server(compression=None) as peer, our_connect(peer.url) as ws:
            ws.send("ping:hello")
            # The server replies only once our automatic pong has arrived.
            assert ws.recv(timeout=RECV_TIMEOUT) == "pong:hello"

    def test_own_ping_gets_pong(self, websockets_lib: Any) -> None:
        with websockets_echo_server(compression=None) as peer, our_connect(peer.url) as ws:
            our_client_ping(ws, b"are you there", RECV_TIMEOUT)
            ws.send("after ping")
            assert ws.recv(timeout=RECV_TIMEOUT) == "after ping"

    @pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4001, "bye")])
    def test_client_close_code_reaches_server(self, websockets_lib: Any, code: int,
                                              reason: str) -> None:
        with websockets_echo_server(compression=None) as peer:
            ws = our_connect(peer.url)
            ws.send("x")
            assert ws.recv(timeout=RECV_TIMEOUT) == "x"
            ws.close(code, reason)
            peer.wait_closed(1)
        assert peer.closes == [(code, reason)]

    def test_server_close_4001_is_reported(self, websockets_lib: Any) -> None:
        with websockets_echo_server(compression=None) as peer, our_connect(peer.url) as ws:
            ws.send("close:4001:bye")
            assert our_client_close_info(ws, RECV_TIMEOUT) == (4001, "bye")

    @pytest.mark.parametrize("takeover", ["takeover", "server_imposed", "client_requested"])
    def test_deflate(self, websockets_lib: Any, takeover: str) -> None:
        """Context takeover kept, or dropped because the server says so or we ask."""
        require_deflate()
        from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

        imposed = takeover == "server_imposed"
        factory = ServerPerMessageDeflateFactory(
            server_no_context_takeover=imposed, client_no_context_takeover=imposed,
        )
        requested = takeover == "client_requested"
        offer = {"server_no_context_takeover": requested, "client_no_context_takeover": requested}
        with websockets_echo_server(extensions=[factory], compression=None) as peer, \
                our_connect(peer.url, deflate=offer) as ws:
            ws.send("info")
            info = json.loads(ws.recv(timeout=RECV_TIMEOUT))
            accepted = info["accepted_extensions"]
            assert accepted.startswith("permessage-deflate"), info
            assert ("server_no_context_takeover" in accepted) == (takeover != "takeover")
            for message in deflate_messages():
                ws.send(message)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                assert type(echo) is type(message)
                assert echo == message

    def test_deflate_default_websockets_server(self, websockets_lib: Any) -> None:
        """websockets' default offer answer: both window sizes cut to 12 bits."""
        require_deflate()
        with websockets_echo_server() as peer, our_connect(peer.url, deflate={}) as ws:
            ws.send("info")
            info = json.loads(ws.recv(timeout=RECV_TIMEOUT))
            assert "permessage-deflate" in info["accepted_extensions"], info
            assert "server_max_window_bits=12" in info["accepted_extensions"], info
            for message in deflate_messages():
                ws.send(message)
                assert ws.recv(timeout=RECV_TIMEOUT) == message

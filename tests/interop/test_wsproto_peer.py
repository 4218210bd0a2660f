"""Interop with ``wsproto`` (the sans-I/O library), both directions, over real sockets.

Our server (the CLI) against a blocking client driven by wsproto's connection;
our client against a wsproto echo server on a thread. Plain and with
permessage-deflate.
"""

from __future__ import annotations

from typing import Any

import pytest
from interop_support import (
    OurServer,
    WsprotoClient,
    basic_messages,
    deflate_messages,
    fragmented_messages,
    get_wsproto,
    our_client_close_info,
    our_client_connect,
    our_client_extensions,
    our_client_ping,
    our_server,
    require_deflate,
    wsproto_echo_server,
)

pytestmark = pytest.mark.interop

RECV_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def wsproto_lib() -> Any:
    return get_wsproto()


@pytest.fixture
def server(wsproto_lib: Any) -> Any:
    with our_server() as running:
        yield running


class TestOurServerWsprotoClient:
    def test_echo_text_binary_and_1mib(self, server: OurServer) -> None:
        client = WsprotoClient(server.port)
        for message in basic_messages():
            client.send(message)
            echo = client.recv()
            assert type(echo) is type(message)
            assert echo == message
        assert client.close(1000, "") == (1000, "")

    def test_fragmented_ping_and_close_4001(self, server: OurServer) -> None:
        client = WsprotoClient(server.port)
        client.send("frag", final=False)
        client.send("mented \u2603", final=True)
        assert client.recv() == "fragmented \u2603"
        client.send(b"\x00" * 70000, final=False)
        client.send(b"\x01", final=True)
        assert client.recv() == b"\x00" * 70000 + b"\x01"
        client.ping(b"are you there")
        code, _ = client.close(4001, "bye")
        assert code == 4001

    @pytest.mark.parametrize("takeover", [True, False])
    def test_deflate(self, server: OurServer, takeover: bool) -> None:
        require_deflate()
        deflate = {} if takeover else {"client_no_context_takeover": True,
                                       "server_no_context_takeover": True}
        client = WsprotoClient(server.port, deflate=deflate)
        assert [e.name for e in client.extensions] == ["permessage-deflate"]
        for message in deflate_messages():
            client.send(message)
            assert client.recv() == message
        assert client.close(1000, "")[0] == 1000


class TestOurClientWsprotoServer:
    def test_echo_ping_and_close(self, wsproto_lib: Any) -> None:
        with wsproto_echo_server() as peer, our_client_connect(peer.url) as ws:
            for message in basic_messages():
                ws.send(message)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                assert type(echo) is type(message)
                assert echo == message
            our_client_ping(ws, b"ping from rfc6455", RECV_TIMEOUT)
            ws.close(4001, "bye")
        assert not peer.errors
        assert peer.closes == [(4001, "bye")]

    @pytest.mark.parametrize("deflate", [None, {}], ids=["plain", "deflate"])
    def test_sends_fragmented_messages(self, wsproto_lib: Any, deflate: dict[str, Any] | None) -> None:
        with wsproto_echo_server(deflate={}) as peer, our_client_connect(peer.url, deflate=deflate) as ws:
            negotiated = our_client_extensions(ws).startswith("permessage-deflate")
            assert negotiated == (deflate is not None)
            for parts in fragmented_messages():
                ws.send_fragments(parts)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                whole = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                assert type(echo) is type(whole)
                assert echo == whole

    def test_server_close_4001_is_reported(self, wsproto_lib: Any) -> None:
        with wsproto_echo_server() as peer, our_client_connect(peer.url) as ws:
            ws.send("close:4001:bye")
            assert our_client_close_info(ws, RECV_TIMEOUT) == (4001, "bye")
        assert not peer.errors

    @pytest.mark.parametrize("takeover", [True, False])
    def test_deflate(self, wsproto_lib: Any, takeover: bool) -> None:
        require_deflate()
        server_deflate = {} if takeover else {"client_no_context_takeover": True,
                                              "server_no_context_takeover": True}
        with wsproto_echo_server(deflate=server_deflate) as peer, \
                our_client_connect(peer.url, deflate={}) as ws:
            accepted = our_client_extensions(ws)
            assert accepted.startswith("permessage-deflate"), ws.response_headers
            assert ("no_context_takeover" in accepted) == (not takeover)
            for message in deflate_messages():
                ws.send(message)
                assert ws.recv(timeout=RECV_TIMEOUT) == message
        assert not peer.errors

"""Interop with Node.js ``ws`` (npm), both directions.

Our server (the CLI, ``--app echo``) against ``node_peers/ws_client.js``; our
client against ``node_peers/ws_echo_server.js``; plain and with
permessage-deflate, with and without context takeover. The peers themselves
are first checked against the ``websockets`` library, so a failure below
points at us, not at the harness.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from interop_support import (
    MIB,
    NodePeers,
    NodeRun,
    SelfSignedCert,
    basic_messages,
    client_ssl_context,
    deflate_messages,
    deflate_specs,
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

RECV_TIMEOUT = 30.0
CLOSE_LINE = re.compile(r'"event":\s*"close"')
PING_LINE = re.compile(r'"event":\s*"ping"')
OPEN_LINE = re.compile(r'"event":\s*"open"')
MESSAGE_LINE = re.compile(r'"event":\s*"message"')

DEFLATE_SCRIPT = [{"op": kind, "size": size, "fill": fill} for kind, size, fill in deflate_specs()]
CONTEXT_TAKEOVER = {
    "takeover": [],
    "no_context_takeover": ["--server-no-context-takeover", "--client-no-context-takeover"],
}
# What the Node client offers our server, and what the answer must contain.
NODE_OFFERS = {
    "takeover": ([], []),
    "no_context_takeover": (CONTEXT_TAKEOVER["no_context_takeover"],
                            ["server_no_context_takeover"]),
    # 8 bits: zlib cannot deflate raw streams with a 256-byte window; both sides must cope.
    "window_bits_9": (["--server-max-window-bits", "9", "--client-max-window-bits", "9"],
                      ["server_max_window_bits=9", "client_max_window_bits=9"]),
    "window_bits_8": (["--server-max-window-bits", "8", "--client-max-window-bits", "8"],
                      ["server_max_window_bits=8", "client_max_window_bits=8"]),
}


def assert_default_script(run: NodeRun) -> None:
    """The client's default script: echoes of 9 messages, a pong, then close 1000 'done'."""
    assert run.returncode == 0, run.output
    assert not run.of("error"), run.output
    assert len(run.of("sent")) == 9
    run.assert_echoed()
    assert run.of("pong") == [{"event": "pong", "data": "are you there"}]
    assert run.close["code"] == 1000, run.output


# --------------------------------------------------------------------------- the peers alone


class TestPeersSelfCheck:
    """The Node scripts against the websockets library: the harness is sound."""

    def test_node_client_with_websockets_server(self, node_peers: NodePeers,
                                                websockets_lib: Any) -> None:
        with websockets_echo_server(compression=None) as peer:
            run = node_peers.run_client(peer.url)
        assert_default_script(run)

    def test_node_client_deflate_with_websockets_server(self, node_peers: NodePeers,
                                                       websockets_lib: Any) -> None:
        with websockets_echo_server() as peer:
            run = node_peers.run_client(peer.url, DEFLATE_SCRIPT, "--deflate")
        assert run.returncode == 0, run.output
        assert run.of("upgrade")[0]["extensions"].startswith("permessage-deflate")
        run.assert_echoed()

    def test_node_server_with_websockets_client(self, node_peers: NodePeers,
                                                websockets_lib: Any) -> None:
        from websockets.sync.client import connect

        with node_peers.echo_server("--deflate") as peer:
            with connect(peer.url, max_size=None, proxy=None, ping_interval=None) as ws:
                ws.send("frag:text:3:abcdefg")
                assert ws.recv(timeout=RECV_TIMEOUT) == "abcdefg"
                ws.send(b"\x00\x01")
                assert ws.recv(timeout=RECV_TIMEOUT) == b"\x00\x01"
                ws.send("close:4001:bye")
                with pytest.raises(Exception):  # noqa: B017 - ConnectionClosedOK
                    ws.recv(timeout=RECV_TIMEOUT)
                assert ws.close_code == 4001
                assert ws.close_reason == "bye"
            peer.process.wait_for_line(OPEN_LINE)
            opened = [e for e in peer.events() if e["event"] == "open"]
            assert opened[0]["accepted_extensions"].startswith("permessage-deflate")


# --------------------------------------------------------------------------- our server


class TestOurServerNodeClient:
    def test_default_script_without_compression(self, node_peers: NodePeers) -> None:
        with our_server("--no-compression") as server:
            run = node_peers.run_client(server.url, None, "--deflate")
        assert_default_script(run)
        assert run.of("upgrade")[0]["extensions"] == ""

    def test_default_script(self, node_peers: NodePeers) -> None:
        with our_server() as server:
            run = node_peers.run_client(server.url)
        assert_default_script(run)

    def test_default_script_over_tls(self, node_peers: NodePeers,
                                     tls_cert: SelfSignedCert) -> None:
        with our_server("--certfile", str(tls_cert.cert), "--keyfile", str(tls_cert.key)) as server:
            assert server.url.startswith("wss://")
            run = node_peers.run_client(server.url, None, "--deflate", "--ca", str(tls_cert.cert))
        assert_default_script(run)

    def test_graceful_shutdown_closes_with_1001(self, node_peers: NodePeers) -> None:
        script: list[dict[str, Any]] = [
            {"op": "text", "data": "before shutdown"},
            {"op": "expect_close"},
        ]
        with our_server() as server:
            client = node_peers.start_client(server.url, script)
            client.wait_for_line(MESSAGE_LINE)
            server.process.stop()  # SIGTERM: graceful shutdown
            run = node_peers.finish_client(client)
        assert run.returncode == 0, run.output
        run.assert_echoed()
        assert run.close["code"] == 1001, run.output

    @pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4001, "bye")])
    def test_client_close_code_is_echoed(self, node_peers: NodePeers, code: int,
                                         reason: str) -> None:
        script: list[dict[str, Any]] = [
            {"op": "text", "data": "x"},
            {"op": "close", "code": code, "reason": reason},
        ]
        with our_server() as server:
            run = node_peers.run_client(server.url, script)
        assert run.returncode == 0, run.output
        run.assert_echoed()
        assert run.close["code"] == code, run.output

    def test_invalid_utf8_closes_with_1007(self, node_peers: NodePeers) -> None:
        script: list[dict[str, Any]] = [
            {"op": "text", "data": "fine"},
            {"op": "text", "hex": "cebae1bdb9cf83cebcceb5eda080656469746564", "expect": 0},
            {"op": "expect_close"},
        ]
        with our_server() as server:
            run = node_peers.run_client(server.url, script)
        assert run.of("message")[0]["data"] == "fine"
        assert run.close["code"] == 1007, run.output

    def test_message_over_limit_closes_with_1009(self, node_peers: NodePeers) -> None:
        script: list[dict[str, Any]] = [
            {"op": "binary", "size": 1000, "fill": "random"},
            {"op": "binary", "size": 70_000, "fill": "random", "expect": 0},
            {"op": "expect_close"},
        ]
        with our_server("--max-message-size", "65536") as server:
            run = node_peers.run_client(server.url, script)
        assert len(run.of("message")) == 1
        assert run.close["code"] == 1009, run.output

    def test_server_heartbeat_ping_is_answered(self, node_peers: NodePeers) -> None:
        script: list[dict[str, Any]] = [
            {"op": "text", "data": "before"},
            {"op": "wait_ping"},
            {"op": "text", "data": "after"},
            {"op": "close", "code": 1000, "reason": ""},
        ]
        with our_server("--ping-interval", "0.2", "--ping-timeout", "20") as server:
            run = node_peers.run_client(server.url, script)
        assert run.returncode == 0, run.output
        assert run.of("ping"), "our server never pinged"
        run.assert_echoed()
        assert run.close["code"] == 1000

    @pytest.mark.parametrize("offer", sorted(NODE_OFFERS))
    def test_deflate(self, node_peers: NodePeers, offer: str) -> None:
        require_deflate()
        options, expected = NODE_OFFERS[offer]
        with our_server() as server:
            run = node_peers.run_client(server.url, DEFLATE_SCRIPT, "--deflate", *options)
        assert run.returncode == 0, run.output
        accepted = run.of("upgrade")[0]["extensions"]
        assert accepted.startswith("permessage-deflate"), accepted
        for parameter in expected:
            assert parameter in accepted, accepted
        run.assert_echoed()
        assert run.close["code"] == 1000

    def test_deflate_fragmented_and_ping(self, node_peers: NodePeers) -> None:
        require_deflate()
        with our_server() as server:
            run = node_peers.run_client(server.url, None, "--deflate")
        assert run.of("upgrade")[0]["extensions"].startswith("permessage-deflate")
        assert_default_script(run)


# --------------------------------------------------------------------------- our client


def node_info(ws: Any) -> dict[str, Any]:
    ws.send("info")
    info = json.loads(ws.recv(timeout=RECV_TIMEOUT))
    assert isinstance(info, dict)
    return info


class TestOurClientNodeServer:
    def test_echo_text_binary_and_1mib(self, node_peers: NodePeers) -> None:
        with node_peers.echo_server() as peer, our_client_connect(peer.url) as ws:
            for message in basic_messages():
                ws.send(message)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                assert type(echo) is type(message)
                assert echo == message

    @pytest.mark.parametrize("kind", ["text", "binary"])
    def test_receives_fragmented_messages(self, node_peers: NodePeers, kind: str) -> None:
        payload = "fragmented \u2603 " * 1000
        with node_peers.echo_server() as peer, our_client_connect(peer.url) as ws:
            ws.send(f"frag:{kind}:7:{payload}")
            echo = ws.recv(timeout=RECV_TIMEOUT)
        assert echo == (payload if kind == "text" else payload.encode())

    @pytest.mark.parametrize("deflate", [None, {}], ids=["plain", "deflate"])
    def test_sends_fragmented_messages(self, node_peers: NodePeers, deflate: dict[str, Any] | None) -> None:
        with node_peers.echo_server("--deflate") as peer, our_client_connect(peer.url, deflate=deflate) as ws:
            negotiated = our_client_extensions(ws).startswith("permessage-deflate")
            assert negotiated == (deflate is not None)
            for parts in fragmented_messages():
                ws.send_fragments(parts)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                whole = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                assert type(echo) is type(whole)
                assert echo == whole

    def test_echo_over_tls(self, node_peers: NodePeers, tls_cert: SelfSignedCert) -> None:
        options = ("--deflate", "--cert", str(tls_cert.cert), "--key", str(tls_cert.key))
        with node_peers.echo_server(*options) as peer, \
                our_client_connect(peer.url, deflate={},
                                   ssl_context=client_ssl_context(tls_cert)) as ws:
            assert peer.url.startswith("wss://")
            for message in basic_messages():
                ws.send(message)
                assert ws.recv(timeout=RECV_TIMEOUT) == message
            ws.send_fragments(["over ", "TLS"])
            assert ws.recv(timeout=RECV_TIMEOUT) == "over TLS"

    def test_answers_server_ping(self, node_peers: NodePeers) -> None:
        with node_peers.echo_server() as peer, our_client_connect(peer.url) as ws:
            ws.send("ping:hello")
            assert ws.recv(timeout=RECV_TIMEOUT) == "pong:hello"

    def test_own_ping_gets_pong(self, node_peers: NodePeers) -> None:
        with node_peers.echo_server() as peer, our_client_connect(peer.url) as ws:
            our_client_ping(ws, b"are you there", RECV_TIMEOUT)
            ws.send("after ping")
            assert ws.recv(timeout=RECV_TIMEOUT) == "after ping"
            # The server's log line may still be in the pipe: wait for it.
            peer.process.wait_for_line(PING_LINE)
            pings = [e for e in peer.events() if e["event"] == "ping"]
            assert pings[0]["data"] == "are you there"

    @pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4001, "bye")])
    def test_client_close_code_reaches_server(self, node_peers: NodePeers, code: int,
                                              reason: str) -> None:
        with node_peers.echo_server() as peer:
            ws = our_client_connect(peer.url)
            ws.send("x")
            assert ws.recv(timeout=RECV_TIMEOUT) == "x"
            ws.close(code, reason)
            peer.process.wait_for_line(CLOSE_LINE)
            closes = [e for e in peer.events() if e["event"] == "close"]
        assert [(e["code"], e["reason"]) for e in closes] == [(code, reason)]

    def test_server_close_4001_is_reported(self, node_peers: NodePeers) -> None:
        with node_peers.echo_server() as peer, our_client_connect(peer.url) as ws:
            ws.send("close:4001:bye")
            assert our_client_close_info(ws, RECV_TIMEOUT) == (4001, "bye")

    @pytest.mark.parametrize("takeover", ["takeover", "server_imposed", "client_requested"])
    def test_deflate(self, node_peers: NodePeers, takeover: str) -> None:
        """Context takeover kept, or dropped because the server says so or we ask."""
        require_deflate()
        server_options = CONTEXT_TAKEOVER["no_context_takeover" if takeover == "server_imposed"
                                          else "takeover"]
        requested = takeover == "client_requested"
        offer = {"server_no_context_takeover": requested, "client_no_context_takeover": requested}
        with node_peers.echo_server("--deflate", *server_options) as peer, \
                our_client_connect(peer.url, deflate=offer) as ws:
            accepted = node_info(ws)["accepted_extensions"]
            assert accepted.startswith("permessage-deflate"), accepted
            assert ("server_no_context_takeover" in accepted) == (takeover != "takeover")
            for message in deflate_messages():
                ws.send(message)
                echo = ws.recv(timeout=RECV_TIMEOUT)
                assert type(echo) is type(message)
                assert echo == message

    @pytest.mark.parametrize("bits", [9, 8])
    def test_deflate_small_windows_offered(self, node_peers: NodePeers, bits: int) -> None:
        offer = {"server_max_window_bits": bits, "client_max_window_bits": bits}
        with node_peers.echo_server("--deflate") as peer, \
                our_client_connect(peer.url, deflate=offer) as ws:
            accepted = node_info(ws)["accepted_extensions"]
            assert f"server_max_window_bits={bits}" in accepted, accepted
            assert f"client_max_window_bits={bits}" in accepted, accepted
            for message in deflate_messages():
                ws.send(message)
                assert ws.recv(timeout=RECV_TIMEOUT) == message

    def test_deflate_small_server_window(self, node_peers: NodePeers) -> None:
        require_deflate()
        with node_peers.echo_server("--deflate", "--server-max-window-bits", "9") as peer, \
                our_client_connect(peer.url, deflate={}) as ws:
            accepted = node_info(ws)["accepted_extensions"]
            assert "server_max_window_bits=9" in accepted, accepted
            message = bytes(range(256)) * (MIB // 256)
            ws.send(message)
            assert ws.recv(timeout=RECV_TIMEOUT) == message

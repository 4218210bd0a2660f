"""rfc6455.asyncio against other implementations.

websockets' asyncio ``connect`` talks to our ``serve`` and our ``connect`` to websockets'
``serve`` (text, binary, fragmented messages, permessage-deflate both ways, ping/pong,
close codes with reasons); Node's ``ws`` client runs its scripts against our ``serve``,
with and without permessage-deflate parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from interop_support import get_node_peers, get_websockets

from rfc6455.asyncio import ConnectionClosedError, ServerConnection, connect, serve

pytestmark = pytest.mark.interop

MESSAGES: list[str | bytes] = [
    "",
    "hello",
    "ünïcødé ✓" * 100,
    b"",
    b"\x00\xff" * 40_000,
    "x" * 70_000,  # larger than one 64 KiB read
]


def run(coro: Any, timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
def test_websockets_client_against_our_server(compression: bool) -> None:
    get_websockets()
    from websockets.asyncio.client import connect as ws_connect

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)
        # The client closed with 4001: the iteration ended with ConnectionClosedError.

    async def handler(ws: ServerConnection) -> None:
        try:
            await echo(ws)
        finally:
            closes.append((ws.close_code, ws.close_reason))

    closes: list[tuple[int | None, str]] = []

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=compression) as server:
            uri = f"ws://127.0.0.1:{server.port}/"
            async with ws_connect(
                uri, compression="deflate" if compression else None, max_size=None
            ) as ws:
                negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
                assert negotiated.startswith("permessage-deflate") == compression
                for message in MESSAGES:
                    await ws.send(message)
                    assert await ws.recv() == message
                await ws.send(["frag", "mented"])
                assert await ws.recv() == "fragmented"
                latency = await (await ws.ping(b"hi"))
                assert latency >= 0
                await ws.close(4001, "done here")
            await asyncio.sleep(0.1)
            assert closes == [(4001, "done here")]

    run(main())


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
def test_our_client_against_websockets_server(compression: bool) -> None:
    get_websockets()
    from websockets.asyncio.server import serve as ws_serve

    closes: list[tuple[int | None, str | None]] = []

    async def echo(ws: Any) -> None:
        try:
            async for message in ws:
                if message == "close me":
                    await ws.close(4002, "as you wish")
                    return
                await ws.send(message)
        finally:
            closes.append((ws.close_code, ws.close_reason))

    async def main() -> None:
        async with ws_serve(
            echo, "127.0.0.1", 0, compression="deflate" if compression else None, max_size=None
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
                negotiated = dict(ws.response_headers).get("sec-websocket-extensions", "")
                assert negotiated.startswith("permessage-deflate") == compression
                for message in MESSAGES:
                    await ws.send(message)
                    assert await ws.recv() == message

                async def parts() -> Any:
                    for part in (b"a", b"b", b"c"):
                        yield part

                await ws.send(parts())
                assert await ws.recv() == b"abc"
                assert await (await ws.ping()) >= 0
                await ws.send("close me")
                with pytest.raises(ConnectionClosedError):  # 4002 is not a normal closure
                    await ws.recv()
                assert (ws.close_code, ws.close_reason) == (4002, "as you wish")
            await asyncio.sleep(0.1)
            assert [code for code, _ in closes] == [4002]  # our reply echoes the code

    run(main())


# -- Node's ws client against our asyncio server (in a thread of this process) ------------


@contextlib.contextmanager
def asyncio_echo_server(**settings: Any) -> Iterator[str]:
    """Our asyncio echo server on its own loop in a thread; yields its URL."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["stop"] = stop = asyncio.Event()
        async with serve(echo, "127.0.0.1", 0, **settings) as server:
            state["port"] = server.port
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the asyncio server did not start"
    try:
        yield f"ws://127.0.0.1:{state['port']}/"
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(15)
        assert not thread.is_alive()


def test_node_client_against_our_asyncio_server() -> None:
    from test_node_ws import assert_default_script

    node_peers = get_node_peers()
    with asyncio_echo_server(compression=False) as uri:
        run = node_peers.run_client(uri)
    assert_default_script(run)
    assert run.of("upgrade")[0]["extensions"] == ""


@pytest.mark.parametrize("offer", ["takeover", "no_context_takeover", "window_bits_9"])
def test_node_client_deflate_against_our_asyncio_server(offer: str) -> None:
    from test_node_ws import DEFLATE_SCRIPT, NODE_OFFERS

    node_peers = get_node_peers()
    options, expected = NODE_OFFERS[offer]
    with asyncio_echo_server() as uri:
        run = node_peers.run_client(uri, DEFLATE_SCRIPT, "--deflate", *options)
    assert run.returncode == 0, run.output
    accepted = run.of("upgrade")[0]["extensions"]
    assert accepted.startswith("permessage-deflate"), accepted
    for parameter in expected:
        assert parameter in accepted, accepted
    run.assert_echoed()
    assert run.close["code"] == 1000

"""rfc6455 on asyncio: ``serve`` and ``connect``, with websockets' names and manners.

The same sans-I/O core, native scanner, :class:`~rfc6455.Config` limits and timeouts,
and exception tree as the selectors server, behind ``asyncio.BufferedProtocol`` objects, so it
runs on the standard loop and on uvloop::

    import asyncio
    from rfc6455.asyncio import connect, serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def main():
        async with serve(echo, "127.0.0.1", 0) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"

    asyncio.run(main())

What differs from websockets' asyncio API: README.md, "asyncio".
"""

from ._aio_client import ClientConnection, connect
from ._aio_connection import Connection, Data
from ._aio_server import Server, ServerConnection, broadcast, serve
from ._endpoint import Phase
from ._errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

__all__ = [
    "ClientConnection",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Data",
    "Phase",
    "Server",
    "ServerConnection",
    "broadcast",
    "connect",
    "serve",
]

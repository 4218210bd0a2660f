"""The Starlette echo endpoint that bench_uvicorn.py serves under uvicorn (``--app-dir``).

One WebSocket route, ``/``: every message goes back with its type. The same app runs on
every ``--ws`` implementation, so the benchmark compares only the WebSocket protocols.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def echo(websocket: WebSocket) -> None:
    """Accept, then send every message back until the client closes."""
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                await websocket.send_bytes(data)
            else:
                await websocket.send_text(message["text"])
    except WebSocketDisconnect:
        return  # the client closed while its last echo was on the way


app = Starlette(routes=[WebSocketRoute("/", echo)])

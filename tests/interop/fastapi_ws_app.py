"""The FastAPI app that test_uvicorn_fastapi.py serves under uvicorn with rfc6455's protocol.

``/ws`` echoes every message with its type; the text commands ``close:<code>:<reason>``
(the app closes with that code) and ``raise`` (the endpoint raises: the connection is
dropped, 1006) drive the close paths. ``/reject`` closes before accepting (HTTP 403); ``/deny`` sends a denial
response (401, body "nope"); ``/subprotocol`` accepts the client's last subprotocol.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.responses import PlainTextResponse

app = FastAPI()


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None and text.startswith("close:"):
                _, code, reason = text.split(":", 2)
                await websocket.close(int(code), reason)
                return
            if text == "raise":
                raise RuntimeError("the endpoint failed on purpose")
            if text is not None:
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


@app.websocket("/reject")
async def reject(websocket: WebSocket) -> None:
    await websocket.close()


@app.websocket("/deny")
async def deny(websocket: WebSocket) -> None:
    await websocket.send_denial_response(PlainTextResponse("nope", status_code=401))


@app.websocket("/subprotocol")
async def subprotocol(websocket: WebSocket) -> None:
    offered = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol=offered[-1] if offered else None)
    await websocket.send_text(",".join(offered))
    await websocket.close()

"""A uvicorn WebSocket protocol on the rfc6455 core: ASGI WebSocket apps on rfc6455.

Run FastAPI, Starlette or any ASGI WebSocket endpoint with::

    uvicorn app:app --ws rfc6455.uvicorn:WebSocketProtocol

(or ``uvicorn.run(app, ws=WebSocketProtocol)``; needs the ``uvicorn`` extra).
uvicorn parses the HTTP request and hands the upgrade over: it makes one
:class:`WebSocketProtocol` per connection with ``(config, server_state,
app_state)``, calls ``connection_made(transport)``, feeds the request head
with ``data_received`` and switches the transport to it. From then on this
is an ``asyncio.BufferedProtocol`` (so it runs under uvloop too) that drives the
sans-I/O handshake and connection and speaks ASGI (WebSocket spec 2.4, with
the ``websocket.http.response`` denial extension) to the application.

Strategy: the hot path is one ``Connection.receive`` per read and one
``send_text``/``send_binary`` per ``websocket.send``. A received message is
handed straight to a ``receive()`` that is waiting (no queue, no pause);
otherwise it is queued and reading pauses until the application has taken
everything queued, as uvicorn's own sans-I/O protocols do. ``send`` waits
while the transport asks us to pause writing. The mapping of ASGI events,
uvicorn's options and close codes is in docs/uvicorn.md.

Invariants:

- the application receives ``websocket.connect`` first and exactly one
  ``websocket.disconnect`` last; a ``receive()`` after it returns it again.
- an application that raises before answering gets the client an HTTP 500;
  after accepting, TCP is closed behind what it already sent, without a close
  frame (the client reports 1006, as with uvicorn's own protocols); a
  ``websocket.close`` before accepting is an HTTP 403.
- once the peer is gone (its close frame, a protocol failure, the keepalive
  timeout, the transport lost, server shutdown) ``send`` raises uvicorn's
  ``ClientDisconnected`` (an ``OSError``); after the application's own
  ``websocket.close`` or denial response, it raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import threading
from collections import deque
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

from ._connection import ServerConnection
from ._errors import ConnectionClosed, HandshakeError
from ._events import BinaryMessage, Close, ConnectionFailed, Event, Pong, TextMessage
from ._handshake import HTTPRequest, ServerHandshake, UpgradeRequest
from .permessage_deflate import ServerPerMessageDeflate

__all__ = ["WebSocketProtocol"]

Message = dict[str, Any]

# Phases of a connection, in order (ints: compared on every message).
_READING = 0  # the request head is not complete yet
_CONNECTING = 1  # the app has the request; no answer yet
_RESPONDING = 2  # the app started a denial response (websocket.http.response.start)
_OPEN = 3  # accepted
_CLOSING = 4  # the app sent websocket.close: waiting for the peer's close frame
_CLOSED = 5  # nothing more goes out

#: uvicorn has already parsed and bounded the request head; this only keeps
#: the handshake's own bound out of its way.
_MAX_HEAD = 256 * 1024

_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}

_INTERNAL_ERROR = b"Internal Server Error"

#: Bytes read from the socket per call (asyncio's own default).
_READ_SIZE = 256 * 1024
_threads = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer, shared by the connections of its loop.

    The transport reads into it (``get_buffer``) and hands it back at once
    (``buffer_updated``); the handshake and the connection copy what they keep, so it
    is free again when that returns. Without it the standard loop allocates 256 KiB
    per read, which costs an ``mmap``, an ``mremap`` and a ``munmap`` per message.
    """
    view: memoryview | None = getattr(_threads, "view", None)
    if view is None:
        view = _threads.view = memoryview(bytearray(_READ_SIZE))
    return view


def _response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """An HTTP/1.1 response: status line, ``headers`` as given, then ``body``."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, "").encode("ascii"))]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


def _check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse header names or values that would break the response's framing."""
    for name, value in headers:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError("ASGI headers must be (bytes, bytes) pairs")
        if not name or any(c in name for c in b" \t\r\n:\x00"):
            raise RuntimeError(f"invalid header name {name!r}")
        if any(c in value for c in b"\r\n\x00"):
            raise RuntimeError(f"invalid value for header {name!r}")


class WebSocketProtocol(asyncio.BufferedProtocol):
    """One WebSocket connection under uvicorn, on the rfc6455 core.

    uvicorn's options: ``ws_max_size`` is the connection's
    ``max_message_size`` (1009 beyond); ``ws_ping_interval`` /
    ``ws_ping_timeout`` drive keepalive pings (close 1011 "keepalive ping
    timeout" when a pong is late); ``ws_per_message_deflate`` offers
    permessage-deflate (12-bit windows, memLevel 5); ``ws_max_queue`` is
    accepted and stricter already: reading pauses as soon as one message waits
    unread.

    The attributes uvicorn's test suite looks at are public: ``transport``,
    ``close_timeout`` (seconds to wait for the peer's close frame after the
    app's ``websocket.close``; 10), ``close_timer``, ``ping_timer`` and
    ``ping_sent_at`` (loop time of the last keepalive ping, 0.0 before).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app: Any = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.app_state = app_state
        self.connections: set[Any] = server_state.connections
        self.tasks = server_state.tasks
        self.server_state = server_state

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.scope: Message = {}
        self.close_timeout = 10.0
        self.close_timer: asyncio.TimerHandle | None = None

        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.pending_ping_payload: bytes | None = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0

        extensions = [ServerPerMessageDeflate()] if config.ws_per_message_deflate else []
        self._handshake = ServerHandshake(
            extensions=extensions,
            max_header_size=_MAX_HEAD,
            max_message_size=config.ws_max_size,
        )
        self._request: UpgradeRequest | None = None
        self._conn: ServerConnection | None = None
        self._phase = _READING
        # True once the peer is gone for sending: send raises ClientDisconnected.
        self._gone = False
        self.disconnected = False  # connection_lost ran
        # The denial response being built: status, headers, body so far.
        self._response: tuple[int, list[tuple[bytes, bytes]], bytearray] | None = None

        # What the app receives: queued events, or a receive() waiting for one.
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[Message] | None = None
        self._disconnect: Message | None = None
        self._read_paused = False
        # Write backpressure: send() waits on these while the transport is paused.
        self._write_paused = False
        self._drain: list[asyncio.Future[None]] = []
        self._rbuf = _read_buffer()

    # ---------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_keepalive()
        self._cancel_close_timer()
        self._phase = _CLOSED
        self._gone = True
        self.disconnected = True
        self._disconnected({"type": "websocket.disconnect", "code": 1006})
        self.connections.discard(self)
        self._wake_writers()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        return None  # the transport closes; connection_lost reports it

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def get_buffer(self, sizehint: int) -> memoryview:
        """The buffer the transport reads into: this thread's, shared by its connections."""
        return self._rbuf

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the buffer: handle them now (what is kept is copied)."""
        conn = self._conn
        if conn is not None:
            # The usual read, one whole message, is decoded in the buffer in one step.
            message = conn.receive_one(cast(bytearray, self._rbuf.obj), nbytes)
            if message is not None:
                self._received(conn, message)
                return
        self.data_received(cast(bytes, self._rbuf[:nbytes]))

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer: uvicorn hands the request head over this way, and
        ``buffer_updated`` passes a view of the read buffer."""
        conn = self._conn
        if conn is None:
            self._request_data(data)
            return
        events = conn.receive(data)
        if len(events) == 1:
            cls = type(events[0])
            if cls is BinaryMessage or cls is TextMessage:
                self._received(conn, events[0].data)  # type: ignore[attr-defined]
                return
        self._handle(conn, events)

    def _received(self, conn: ServerConnection, message: str | bytes) -> None:
        """One message and nothing else: straight to the app if it is waiting for one.
        Nothing can be owed to the peer (every read's replies are flushed at its end)."""
        waiter = self._waiter
        if waiter is not None and self._phase == _OPEN and not waiter.done():
            self._waiter = None
            key = "bytes" if type(message) is bytes else "text"
            waiter.set_result({"type": "websocket.receive", key: message})
            return
        event: Event
        if isinstance(message, str):
            event = TextMessage(data=message)
        else:
            event = BinaryMessage(data=message)
        self._handle(conn, [event])

    def _handle(self, conn: ServerConnection, events: list[Event]) -> None:
        """React to a read's events, then write the connection's replies."""
        for event in events:
            cls = type(event)
            if cls is TextMessage:
                self._message({"type": "websocket.receive", "text": event.data})  # type: ignore[attr-defined]
            elif cls is BinaryMessage:
                self._message({"type": "websocket.receive", "bytes": event.data})  # type: ignore[attr-defined]
            elif cls is Close:
                self._peer_closed(event)  # type: ignore[arg-type]
            elif cls is ConnectionFailed:
                self._failed(event)  # type: ignore[arg-type]
            elif cls is Pong:
                self._pong(event.payload)  # type: ignore[attr-defined]
        out = conn.data_to_send()
        if out and not self.transport.is_closing():
            self.transport.write(out)
        if conn.should_close_transport:
            self._cancel_close_timer()
            self.transport.close()

    def shutdown(self) -> None:
        """Server shutdown (uvicorn calls it): close 1012, or HTTP 500 before accepting."""
        self.stop_keepalive()
        phase = self._phase
        if phase == _CLOSING:
            self._cancel_close_timer()
        elif phase == _OPEN:
            assert self._conn is not None
            self._phase = _CLOSED
            self._gone = True
            self._disconnected({"type": "websocket.disconnect", "code": 1012})
            self._write(self._conn.close(1012))
        elif phase < _RESPONDING:
            self._send_500()
        self.transport.close()

    # ------------------------------------------------------------ the request

    def _request_data(self, data: bytes) -> None:
        if self._phase != _READING:
            # Frames sent before our answer: the handshake keeps them for the
            # connection. Stop reading until the app answers.
            if self._phase < _OPEN:
                self._handshake.receive_data(data)
                self._pause_reading()
            return
        handshake = self._handshake
        try:
            handshake.receive_data(data)
            request = handshake.next_event()
        except HandshakeError as exc:
            self._phase = _CLOSED
            self.logger.info('"WebSocket" %d: %s', exc.status_code, exc.reason)
            self._write(handshake.reject_bytes(exc))
            self.transport.close()
            return
        if isinstance(request, UpgradeRequest):
            self._start(request)
        elif isinstance(request, HTTPRequest):  # uvicorn only hands over upgrades
            self._phase = _CLOSED
            self._write(handshake.reject(400, "not a WebSocket handshake"))
            self.transport.close()

    def _start(self, request: UpgradeRequest) -> None:
        self._request = request
        self._phase = _CONNECTING
        transport = self.transport
        raw_path, _, query = request.target.partition("?")
        root_path = self.config.root_path
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(transport) else "ws",
            "server": get_local_addr(transport),
            "client": get_remote_addr(transport),
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in request.headers],
            "subprotocols": list(request.subprotocols),
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self._queue.append({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _log(self, outcome: str) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            client = self.scope.get("client")
            query = self.scope.get("query_string", b"")
            path = self.scope.get("path", "") + ("?" + query.decode("latin-1") if query else "")
            who = f"{client[0]}:{client[1]}" if client else ""
            self.logger.info('%s - "WebSocket %s" %s', who, path, outcome)

    # ----------------------------------------------------------- the app task

    async def run_asgi(self) -> None:
        """Run the application; answer for it if it ends without answering."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            if self._phase == _OPEN:
                self._drop_after_app_error()
            else:
                self._answer_for_app()
        else:
            if self._phase < _OPEN:
                if self._phase == _CONNECTING:
                    self.logger.error("ASGI callable returned without completing handshake.")
                self._answer_for_app()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self.transport.close()

    def _answer_for_app(self) -> None:
        if self._phase == _CONNECTING:
            self._send_500()
        elif self._phase == _RESPONDING:
            self._finish_response()

    def _send_500(self) -> None:
        if self._phase > _CONNECTING or self.disconnected:
            return
        self._phase = _CLOSED
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(_INTERNAL_ERROR)),
            (b"connection", b"close"),
        ]
        self._write(_response(500, headers, _INTERNAL_ERROR))

    async def receive(self) -> Message:
        """ASGI ``receive``: the next event for the application."""
        queue = self._queue
        if queue:
            message = queue.popleft()
            if self._read_paused and not queue:
                self._read_paused = False
                self.transport.resume_reading()
            return message
        if self._disconnect is not None:
            return self._disconnect
        waiter: asyncio.Future[Message] = self.loop.create_future()
        self._waiter = waiter
        return await waiter

    async def send(self, message: Message) -> None:
        """ASGI ``send``: accept, refuse, send a message or close."""
        if self._write_paused:
            await self._writable()
        if self._phase == _OPEN and message["type"] == "websocket.send":
            conn = self._conn
            assert conn is not None
            data = message.get("bytes")
            try:
                if data is not None:
                    out = conn.send_binary(data)
                else:
                    text = message.get("text")
                    if text is None:
                        raise RuntimeError("websocket.send needs 'bytes' or 'text'")
                    out = conn.send_text(text)
            except ConnectionClosed:
                raise ClientDisconnected() from None
            self.transport.write(out)
            return
        await self._send_other(message)

    async def _send_other(self, message: Message) -> None:
        if self._gone:
            raise ClientDisconnected()
        kind = message["type"]
        phase = self._phase
        if phase == _OPEN:
            if kind != "websocket.close":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
                )
            code = message.get("code")
            self._close_with(1000 if code is None else code, message.get("reason") or "")
        elif phase == _CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._log("403")
                self._phase = _CLOSED
                self._disconnected({"type": "websocket.disconnect", "code": 1006})
                headers = [*self.server_state.default_headers, (b"content-length", b"0")]
                self._write(_response(403, [*headers, (b"connection", b"close")], b""))
                self.transport.close()
            elif kind == "websocket.http.response.start":
                self._start_response(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        elif phase == _RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            assert self._response is not None
            self._response[2].extend(message.get("body", b""))
            if not message.get("more_body", False):
                self._finish_response()
                self.transport.close()
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")

    def _accept(self, message: Message) -> None:
        request = self._request
        assert request is not None
        headers = [*self.server_state.default_headers, *message.get("headers", ())]
        _check_headers(headers)
        extra = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
        handshake = self._handshake
        # Raises LocalProtocolError for a subprotocol the client did not offer: the
        # app gets it, and the client a 500 if the app lets it through.
        out = handshake.accept(request, subprotocol=message.get("subprotocol"), extra_headers=extra)
        self._log("[accepted]")
        self._phase = _OPEN
        self._write(out)
        conn = self._conn = handshake.connection
        self.start_keepalive()
        if self._read_paused and not self._queue:
            self._read_paused = False
            self.transport.resume_reading()
        # Frames that came before the 101 are decoded already.
        self._handle(conn, list(conn.events()))

    # ---------------------------------------------------- the denial response

    def _start_response(self, message: Message) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        headers = list(message.get("headers", ()))
        _check_headers(headers)
        self._log(str(status))
        self._phase = _RESPONDING
        self._response = (status, headers, bytearray())

    def _finish_response(self) -> None:
        """Send the denial response as the app gave it, adding what framing needs."""
        assert self._response is not None
        status, headers, body = self._response
        self._phase = _CLOSED
        self._disconnected({"type": "websocket.disconnect", "code": 1006})
        names = {name.lower() for name, _ in headers}
        extra = [h for h in self.server_state.default_headers if h[0].lower() not in names]
        if b"content-length" not in names and b"transfer-encoding" not in names:
            extra.append((b"content-length", b"%d" % len(body)))
        if b"connection" not in names:
            extra.append((b"connection", b"close"))
        self._write(_response(status, [*extra, *headers], bytes(body)))

    # ------------------------------------------------------------ the session

    def _message(self, message: Message) -> None:
        if self._phase != _OPEN:
            return  # after our close frame: read on until the peer's, drop the data
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(message)
            return
        self._queue.append(message)
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def _peer_closed(self, event: Close) -> None:
        if self._phase == _CLOSING:  # the reply to our close frame: done
            self._phase = _CLOSED
            return
        self._phase = _CLOSED
        self._gone = True
        self.stop_keepalive()
        self._disconnected(
            {"type": "websocket.disconnect", "code": event.code, "reason": event.reason}
        )

    def _failed(self, event: ConnectionFailed) -> None:
        self._phase = _CLOSED
        self._gone = True
        self.stop_keepalive()
        self._disconnected(
            {"type": "websocket.disconnect", "code": event.code, "reason": event.reason}
        )

    def _close_with(self, code: int, reason: str = "") -> None:
        """Send our close frame, tell the app, wait up to close_timeout for the reply."""
        conn = self._conn
        assert conn is not None
        out = conn.close(code, reason)  # raises LocalProtocolError for a bad code or reason
        self._phase = _CLOSING
        self.stop_keepalive()
        self._disconnected({"type": "websocket.disconnect", "code": code, "reason": reason})
        if not self.transport.is_closing():
            self._write(out)
            if self._read_paused:
                self._read_paused = False
                self.transport.resume_reading()
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    def _drop_after_app_error(self) -> None:
        """The app raised while the connection was open: close TCP once what it sent is
        written, without a close frame. uvicorn's own protocols do this, and its test
        suite expects it (the client sees 1006): every ``--ws`` choice must behave
        alike for the app that fails."""
        self._phase = _CLOSED
        self.stop_keepalive()

    def _close_timed_out(self) -> None:
        self.close_timer = None
        self._phase = _CLOSED
        self.transport.close()

    def _cancel_close_timer(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    def _disconnected(self, message: Message) -> None:
        """Deliver the one ``websocket.disconnect`` (later calls do nothing)."""
        if self._disconnect is not None:
            return
        self._disconnect = message
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(message)
        else:
            self._queue.append(message)

    # --------------------------------------------------------------- keepalive

    def start_keepalive(self) -> None:
        """Schedule the first keepalive ping, if ``ws_ping_interval`` asks for them."""
        if self.ping_interval is not None and self.ping_interval > 0:
            self._schedule_ping()

    def stop_keepalive(self) -> None:
        """Cancel the keepalive timers."""
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self.pending_ping_payload = None

    def _schedule_ping(self) -> None:
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = self.loop.call_later(delay, self._send_ping)

    def _send_ping(self) -> None:
        self.ping_timer = None
        conn = self._conn
        if self._phase != _OPEN or conn is None or self.transport.is_closing():
            return
        payload = os.urandom(4)
        self.pending_ping_payload = payload
        self.ping_sent_at = self.loop.time()
        self.transport.write(conn.send_ping(payload))
        if self.ping_timeout is not None:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self._ping_timed_out)
        else:
            self._schedule_ping()

    def _pong(self, payload: bytes) -> None:
        if self.pending_ping_payload is None or payload != self.pending_ping_payload:
            return  # unsolicited, or for an older ping
        self.last_ping_rtt = self.loop.time() - self.ping_sent_at
        self.pending_ping_payload = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self._schedule_ping()

    def _ping_timed_out(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        conn = self._conn
        if self._phase != _OPEN or conn is None or self.transport.is_closing():
            return
        reason = "keepalive ping timeout"
        self._phase = _CLOSED
        self._gone = True
        self._disconnected({"type": "websocket.disconnect", "code": 1011, "reason": reason})
        self._write(conn.close(1011, reason))
        self.transport.close()

    # ------------------------------------------------------------------- flow

    def _write(self, data: bytes) -> None:
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def _pause_reading(self) -> None:
        if not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    async def _writable(self) -> None:
        while self._write_paused and not self.disconnected:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._drain.append(waiter)
            await waiter

    def _wake_writers(self) -> None:
        waiters, self._drain = self._drain, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

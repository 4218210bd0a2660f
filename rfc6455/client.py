"""The WebSocket client on the loop, and a reconnecting wrapper around it.

Strategy: :class:`ClientWebSocket` is the endpoint of ``_endpoint.py`` (the
same one the server uses) with a client handshake in front. It has a periodic
check timer of its own (clients are few, so one timer per connection is fine)
that enforces the same deadlines as the server's sweep.
:class:`ReconnectingClient` wraps it and reconnects with capped exponential
backoff and full jitter. The blocking client is in :mod:`rfc6455.sync_client`.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any, Unpack

from ._client_options import ClientOptions, WebSocketURL, backoff_delay, parse_url, prepare
from ._endpoint import PhaseTrigger, WebSocket
from ._errors import HandshakeError, LocalProtocolError
from ._events import Message
from ._handshake import ClientHandshake, HandshakeAccepted
from ._limits import EndpointSettings
from ._loop import Loop, TimerHandle
from ._transport import Transport
from .app import Handler

__all__ = [
    "ClientWebSocket",
    "ReconnectingClient",
    "WebSocketURL",
    "loop_connect",
    "parse_url",
]

logger = logging.getLogger("rfc6455.client")


class ClientWebSocket(WebSocket):
    """A client connection on a :class:`~rfc6455.Loop` (see :class:`~rfc6455.WebSocket`).

    Attributes:
        failure: why the connection could not be opened (None if it opened).
        response_headers: the headers of the 101 response.
    """

    __slots__ = (
        "_connecting",
        "_hs",
        "_on_error",
        "_on_lost",
        "_pending_handler",
        "_timer",
        "failure",
        "response_headers",
    )

    is_client = True

    def __init__(
        self,
        loop: Loop,
        settings: EndpointSettings,
        handler: Handler,
        hs: ClientHandshake,
        remote_address: Any,
        on_error: Callable[[BaseException], object] | None,
        on_lost: Callable[[ClientWebSocket], object] | None = None,
    ) -> None:
        super().__init__(loop, settings, remote_address)
        self._hs: ClientHandshake | None = hs
        self._pending_handler: Handler | None = handler
        self._on_error = on_error
        self._on_lost = on_lost
        self._timer: TimerHandle | None = None
        self._connecting: socket.socket | None = None
        self.failure: BaseException | None = None
        self.response_headers: list[tuple[str, str]] = []
        self.path = hs.target.split("?", 1)[0]

    def connection_made(self, transport: Transport) -> None:
        super().connection_made(transport)
        assert self._hs is not None
        self._write(self._hs.request_bytes())

    def _handshake_data(self, data: bytes) -> None:
        hs = self._hs
        if hs is None or self.state != "handshake":
            return
        try:
            hs.receive_data(data)
            event = hs.next_event()
        except (HandshakeError, LocalProtocolError) as exc:
            self._fail_open(exc)
            return
        if isinstance(event, HandshakeAccepted):
            self._hs = None
            handler = self._pending_handler
            self._pending_handler = None
            assert handler is not None
            self.subprotocol = event.subprotocol
            self.response_headers = event.headers
            self._open(hs.connection, handler)

    def _handshake_eof(self) -> None:
        hs = self._hs
        if hs is not None:
            try:
                hs.receive_data(b"")
                hs.next_event()
            except (HandshakeError, LocalProtocolError) as exc:
                self._fail_open(exc)
                return
        self._fail_open(ConnectionError("connection closed during the handshake"))

    def _handshake_timed_out(self) -> None:
        if self._connecting is not None:
            self._connect_failed(TimeoutError("TCP connect timed out"))
        else:
            self._fail_open(TimeoutError("opening handshake timed out"))

    def _fail_open(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self._log(logging.INFO, "could not connect: %s", exc)
        self.abort()

    def _start_connect(
        self,
        sock: socket.socket,
        addr: Any,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> None:
        loop = self._loop
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timer = loop.call_later(self._settings.check_interval(), self._periodic)
        err = sock.connect_ex(addr)

        def start() -> None:
            self._connecting = None
            transport = Transport(
                loop,
                sock,
                self,
                ssl_context=context,
                server_side=False,
                server_hostname=server_hostname,
            )
            self.attach(transport)
            transport.start()

        def connected() -> None:
            loop.remove_writer(sock.fileno())
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._connect_failed(OSError(error, f"connect failed: {os.strerror(error)}"))
            else:
                start()

        if err == 0:
            start()
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._connecting = sock
            loop.add_writer(sock.fileno(), connected)
        else:
            self._connecting = sock
            loop.call_soon(
                self._connect_failed, OSError(err, f"connect failed: {os.strerror(err)}")
            )

    def _connect_failed(self, exc: BaseException) -> None:
        sock = self._connecting
        self._connecting = None
        if sock is None or self.state == "closed":
            return
        if sock.fileno() != -1:
            self._loop.remove_writer(sock.fileno())
        sock.close()
        self.failure = exc
        self._move(PhaseTrigger.LOST)
        self._log(logging.INFO, "could not connect: %s", exc)
        self._lost(exc, False)

    def _periodic(self) -> None:
        self._timer = None
        if self.state == "closed":
            return
        self.check_deadlines(self._loop.now)
        if self.state != "closed":
            self._timer = self._loop.call_later(self._settings.check_interval(), self._periodic)

    def _lost(self, exc: BaseException | None, was_open: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._hs = None
        self._pending_handler = None
        if not was_open:
            failure = self.failure or exc or ConnectionError("connection failed")
            self.failure = failure
            if self._on_error is not None:
                try:
                    self._on_error(failure)
                except Exception:  # noqa: BLE001 - a hook must not break the loop
                    self._log(logging.ERROR, "on_error hook raised", exc_info=True)
        on_lost = self._on_lost
        self._on_lost = None
        self._on_error = None
        if on_lost is not None:
            on_lost(self)


def loop_connect(
    loop: Loop,
    url: str,
    handler: Handler,
    *,
    open_timeout: float | None = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    message_timeout: float | None = 60.0,
    on_error: Callable[[BaseException], object] | None = None,
    on_lost: Callable[[ClientWebSocket], object] | None = None,
    **options: Unpack[ClientOptions],
) -> ClientWebSocket:
    """Open a client connection on ``loop``; ``handler`` gets its callbacks.

    Returns at once; ``handler.on_open`` runs when the handshake completes.
    If the connection cannot be opened (refused, TLS error, rejected
    handshake, ``open_timeout``), ``on_error(exc)`` is called instead and
    ``ws.failure`` holds the exception. Name resolution is blocking.

    Args:
        loop: the loop to run on.
        url: ``ws://host[:port]/path`` or ``wss://...``.
        handler: gets the connection's callbacks.
        open_timeout: TCP connect, TLS and the handshake together.
        ping_interval: send a ping after this long without hearing from the server.
        ping_timeout: drop a server silent this long after the ping interval.
        message_timeout: time the server has to complete a frame or fragmented
            message it started (1008 after it).
        on_error: called with the exception if the connection cannot be opened.
        on_lost: called with the connection once its socket is gone, whether
            it opened or not (after ``on_close`` or ``on_error``).
        **options: the handshake options of :class:`~rfc6455._client_options.ClientOptions`
            (the same as :func:`rfc6455.connect`'s).
    """
    prepared = prepare(url, options)
    settings = EndpointSettings(
        handshake_timeout=open_timeout,
        close_timeout=prepared.close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        message_timeout=message_timeout,
        log=logger,
    )
    parsed = prepared.url
    family, type_, proto, _, addr = socket.getaddrinfo(
        parsed.host, parsed.port, type=socket.SOCK_STREAM
    )[0]
    ws = ClientWebSocket(loop, settings, handler, prepared.handshake, addr, on_error, on_lost)
    sock = socket.socket(family, type_, proto)
    ws._start_connect(sock, addr, prepared.ssl_context, prepared.server_hostname)
    return ws


class ReconnectingClient:
    """Keeps a loop client connected: reconnects with capped exponential backoff.

    The delay before attempt *n* (after a failure or a lost connection) is
    ``uniform(0, min(max_delay, initial_delay * factor ** n))`` ("full
    jitter"), so that many clients losing one server do not come back in
    lockstep. A successful open resets *n*.

    Args:
        loop: the loop to run on.
        url: the server URL.
        handler_factory: returns the handler for each new connection.
        on_reconnect: called with the new connection after every successful
            reconnection (not the first connection): restore subscriptions
            and other state there.
        initial_delay, max_delay, factor: the backoff curve.
        max_attempts: give up after this many failed attempts in a row (None: never).
        **connect_options: passed to :func:`loop_connect`.
    """

    def __init__(
        self,
        loop: Loop,
        url: str,
        handler_factory: Callable[[], Handler],
        *,
        on_reconnect: Callable[[ClientWebSocket], object] | None = None,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        max_attempts: int | None = None,
        **connect_options: Any,
    ) -> None:
        self.loop = loop
        self.url = url
        self._factory = handler_factory
        self._on_reconnect = on_reconnect
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.factor = factor
        self.max_attempts = max_attempts
        self._options = connect_options
        self.ws: ClientWebSocket | None = None
        self.failures = 0
        self.connections = 0
        self._timer: TimerHandle | None = None
        self._stopped = False
        self._opened_once = False

    def start(self) -> None:
        """Connect now (and again whenever the connection is lost)."""
        self._stopped = False
        self._attempt()

    def stop(self, code: int = 1000, reason: str = "") -> None:
        """Stop reconnecting and close the current connection."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.ws is not None:
            self.ws.close(code, reason)

    def next_delay(self) -> float:
        """The delay before the next attempt (random, see the class docstring)."""
        return backoff_delay(self.failures, self.initial_delay, self.max_delay, self.factor)

    def _attempt(self) -> None:
        self._timer = None
        if self._stopped:
            return
        client = self
        inner = self._factory()

        class _Hooked(Handler):
            __slots__ = ()

            def on_open(self, ws: WebSocket) -> None:
                client._opened(ws)
                inner.on_open(ws)

            def on_message(self, ws: WebSocket, message: Message) -> None:
                inner.on_message(ws, message)

            def on_ping(self, ws: WebSocket, payload: bytes) -> None:
                inner.on_ping(ws, payload)

            def on_pong(self, ws: WebSocket, payload: bytes) -> None:
                inner.on_pong(ws, payload)

            def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
                inner.on_close(ws, code, reason)

        ws = loop_connect(self.loop, self.url, _Hooked(), on_lost=self._lost, **self._options)
        self.ws = ws

    def _opened(self, ws: WebSocket) -> None:
        self.failures = 0
        self.connections += 1
        if self._opened_once and self._on_reconnect is not None:
            assert isinstance(ws, ClientWebSocket)
            self._on_reconnect(ws)
        self._opened_once = True

    def _lost(self, ws: ClientWebSocket) -> None:
        if ws is not self.ws:
            return
        if ws.failure is not None:
            self.failures += 1
        else:
            self.failures = max(1, self.failures)
        if self._stopped:
            return
        if self.max_attempts is not None and self.failures > self.max_attempts:
            logger.warning("giving up on %s after %d attempts", self.url, self.failures - 1)
            self._stopped = True
            return
        delay = self.next_delay()
        logger.info("reconnecting to %s in %.2fs", self.url, delay)
        self._timer = self.loop.call_later(delay, self._attempt)

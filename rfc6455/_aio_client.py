"""The asyncio binding's client: :class:`connect` and :class:`ClientConnection`.

Strategy:

* ``loop.create_connection`` with one :class:`ClientConnection` (an
  ``asyncio.BufferedProtocol``), so the client runs on any loop that drives protocols,
  uvloop included. The handshake options are the blocking client's
  (:class:`~rfc6455._client_options.ClientOptions`, turned into a
  :class:`~rfc6455.ClientHandshake` by ``prepare``); permessage-deflate is offered
  by default.
* ``open_timeout`` bounds TCP, TLS and the handshake together. Once open, the
  connection's deadlines (heartbeat, close, idle, message, slow consumer) are checked
  by a timer of its own, at the selectors server's interval.
* :class:`connect` is awaitable (one connection), an async context manager (closed on
  exit) and an async iterator that reconnects: each iteration yields a new open
  connection; transient failures (refused or reset sockets, timeouts, 5xx and 429
  answers, broken responses) are retried with capped exponential backoff and full
  jitter, the same curve as :class:`~rfc6455.ReconnectingClient`; other errors (4xx,
  an invalid handshake response, a bad URL) are raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Generator
from typing import Any, Unpack

from ._aio_connection import Connection
from ._client_options import ClientOptions, Prepared, backoff_delay, prepare
from ._endpoint import Phase
from ._errors import ConnectionClosed, HandshakeError, HandshakeRejected
from ._handshake import ClientHandshake, HandshakeAccepted
from ._limits import EndpointSettings

__all__ = ["ClientConnection", "connect"]

logger = logging.getLogger("rfc6455.asyncio")


class ClientConnection(Connection):
    """The client's side of one connection (see :class:`~rfc6455.asyncio.Connection`).

    Attributes:
        response_headers: the headers of the 101 response.
    """

    __slots__ = ("_hs", "_opened", "_timer", "response_headers")

    def __init__(
        self, settings: EndpointSettings, handshake: ClientHandshake, max_queue: int | None
    ) -> None:
        super().__init__(settings, max_queue=max_queue)
        self._hs: ClientHandshake | None = handshake
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self.response_headers: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self._hs is not None
        self._write(self._hs.request_bytes())

    def _handshake_data(self, data: bytes) -> None:
        hs = self._hs
        if hs is None:
            return
        try:
            hs.receive_data(data)
            event = hs.next_event()
        except HandshakeError as exc:
            self._hs = None
            if not self._opened.done():
                self._opened.set_exception(exc)
                self._opened.exception()  # retrieved: the opener may have given up already
            self.abort()
            return
        if isinstance(event, HandshakeAccepted):
            self._hs = None
            self.subprotocol = event.subprotocol
            self.response_headers = event.headers
            if not self._opened.done():
                self._opened.set_result(None)
            self._open(hs.connection)
            self._schedule()

    def _handshake_eof(self) -> None:
        self._handshake_data(b"")
        super()._handshake_eof()

    def _schedule(self) -> None:
        self._timer = self._loop.call_later(self._settings.check_interval(), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.check_deadlines(self._loop.time())
        if self.state is not Phase.CLOSED:
            self._schedule()

    def _lost(self, exc: BaseException | None, was_open: bool) -> None:
        self._hs = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._opened.done():
            self._opened.set_exception(
                ConnectionClosed(1006, "", "the connection closed during the handshake")
            )
            self._opened.exception()  # retrieved: the opener may have given up already

    async def wait_open(self) -> None:
        """Wait for the handshake's outcome.

        Raises:
            HandshakeError: the server refused (:class:`~rfc6455.HandshakeRejected`
                with its status) or answered with an invalid response.
            ConnectionClosed: the socket closed before the handshake was done.
        """
        await asyncio.shield(self._opened)


def _retryable(exc: BaseException) -> bool:
    """Whether a failed attempt is worth another: the network, or a busy server."""
    if isinstance(exc, HandshakeRejected):
        return exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, HandshakeError):
        return exc.status_code == 0  # no or a broken response: the network
    return isinstance(exc, (OSError, TimeoutError, ConnectionClosed))


class connect:
    """Open a client connection to ``uri`` (``ws://`` or ``wss://``).

    Three ways to use it::

        ws = await connect(uri)                 # one connection
        async with connect(uri) as ws:          # closed when the block ends
            ...
        async for ws in connect(uri):           # reconnects: a new connection per loop
            try:
                async for message in ws:
                    ...
            except ConnectionClosed:
                continue

    Args:
        uri: the server's URL.
        open_timeout: TCP, TLS and the handshake together (``TimeoutError``).
        ping_interval: send a ping after this long without hearing from the server.
        ping_timeout: drop the connection (1006) when the server stays silent this long
            after ``ping_interval``.
        idle_timeout: close (1000) after this long without a data message.
        message_timeout: time the server has to finish a message it started (1008).
        write_buffer_timeout: how long a ``send`` may wait for the write buffer to drain
            below ``low_water`` before the server is taken for a slow consumer (1008).
        high_water: write buffer above which ``send`` waits.
        low_water: write buffer at or below which waiting sends go on.
        max_queue: messages received and not yet read above which reading pauses.
        initial_delay: reconnecting: the first backoff cap, in seconds.
        max_delay: reconnecting: the largest backoff cap.
        factor: reconnecting: the cap's growth per failed attempt.
        max_attempts: reconnecting: give up after this many failures in a row (the last
            error is raised; None: never).
        **options: the handshake options shared with :func:`rfc6455.connect`
            (``subprotocols``, ``extra_headers``, ``compression``, ``extensions``,
            ``origin``, ``ssl_context``, ``server_hostname``, ``max_message_size``,
            ``close_timeout``).
    """

    def __init__(
        self,
        uri: str,
        *,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        idle_timeout: float | None = None,
        message_timeout: float | None = 60.0,
        write_buffer_timeout: float = 5.0,
        high_water: int = 64 * 1024,
        low_water: int = 16 * 1024,
        max_queue: int | None = 16,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        max_attempts: int | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.uri = uri
        self.open_timeout = open_timeout
        self.max_queue = max_queue
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.factor = factor
        self.max_attempts = max_attempts
        self._options = options
        prepare(uri, options)  # a bad URL or option fails here, not at the first await
        self.settings = EndpointSettings(
            handshake_timeout=None,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            idle_timeout=idle_timeout,
            close_timeout=options.get("close_timeout", 10.0),
            message_timeout=message_timeout,
            write_buffer_timeout=write_buffer_timeout,
            high_water=high_water,
            low_water=low_water,
            log=logger,
        )
        #: Failed attempts in a row (reconnecting).
        self.failures = 0
        self._ws: ClientConnection | None = None

    async def _open(self) -> ClientConnection:
        prepared: Prepared = prepare(self.uri, self._options)
        loop = asyncio.get_running_loop()
        ws: ClientConnection | None = None
        async with asyncio.timeout(self.open_timeout):
            url = prepared.url
            _, ws = await loop.create_connection(
                lambda: ClientConnection(self.settings, prepared.handshake, self.max_queue),
                url.host,
                url.port,
                ssl=prepared.ssl_context,
                server_hostname=prepared.server_hostname,
            )
            try:
                await ws.wait_open()
            except BaseException:
                ws.abort()
                raise
        return ws

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._open().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._ws = await self._open()
        return self._ws

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    def next_delay(self) -> float:
        """The wait before the next attempt: ``uniform(0, cap)``, where the cap grows
        from ``initial_delay`` by ``factor`` per failure in a row, up to ``max_delay``."""
        return backoff_delay(self.failures, self.initial_delay, self.max_delay, self.factor)

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        while True:
            try:
                ws = await self._open()
            except Exception as exc:
                if not _retryable(exc):
                    raise
                self.failures += 1
                if self.max_attempts is not None and self.failures >= self.max_attempts:
                    raise
                delay = self.next_delay()
                logger.info("connecting to %s failed (%s); retrying in %.2fs", self.uri, exc, delay)
                await asyncio.sleep(delay)
                continue
            self.failures = 0
            self._ws = ws
            yield ws
            if ws.state is not Phase.CLOSED:
                await ws.close()

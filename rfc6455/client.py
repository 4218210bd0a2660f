"""WebSocket clients: a blocking one for scripts and tests, and one on the loop.

Strategy: both drive the sans-I/O :class:`ClientHandshake` and
:class:`ClientConnection`. The blocking client owns a plain blocking socket
(``settimeout`` per call) and no thread: ``recv`` reads until a message is
complete, answering pings on the way, so it is as simple as it looks. The
loop client is the server's :class:`~rfc6455.server.WebSocket` with a client
handshake in front; it has a periodic check timer of its own (clients are
few, so one timer per connection is fine) that enforces the same deadlines
as the server's sweep. :class:`ReconnectingClient` wraps the loop client and
reconnects with capped exponential backoff and full jitter.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from time import monotonic as _now
from typing import Any, Self
from urllib.parse import urlsplit

from ._connection import ClientConnection
from ._constants import DEFAULT_MAX_MESSAGE_SIZE
from ._errors import ConnectionClosed, HandshakeError, LocalProtocolError, connection_closed
from ._events import (
    BinaryMessage,
    Close,
    ConnectionFailed,
    ConnectionLost,
    Pong,
    TextMessage,
)
from ._extensions import ClientExtensionFactory
from ._handshake import ClientHandshake, HandshakeAccepted
from ._loop import Loop, TimerHandle
from ._state import ConnectionState
from ._transport import Transport
from .permessage_deflate import ClientPerMessageDeflate
from .server import Config, Handler, Message, WebSocket, _Options

__all__ = [
    "ClientWebSocket",
    "ConnectionClosed",
    "ReconnectingClient",
    "SyncWebSocket",
    "WebSocketURL",
    "connect",
    "loop_connect",
    "parse_url",
]

logger = logging.getLogger("rfc6455.client")


@dataclass(frozen=True)
class WebSocketURL:
    """The parts of a ``ws://`` or ``wss://`` URL."""

    secure: bool
    host: str
    port: int
    target: str

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host, with the port if it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> WebSocketURL:
    """Split a ``ws://`` / ``wss://`` URL.

    Raises:
        ValueError: another scheme, no host, or user info in the URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL: {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    if parts.username or parts.password:
        raise ValueError("user info in WebSocket URLs is not supported")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return WebSocketURL(secure, parts.hostname, port, target)


def _client_ssl_context(
    url: WebSocketURL, ssl_context: ssl.SSLContext | None
) -> ssl.SSLContext | None:
    if not url.secure:
        if ssl_context is not None:
            raise ValueError("ssl_context given for a ws:// URL")
        return None
    # Certificate verification and host name checking are on by default.
    return ssl_context if ssl_context is not None else ssl.create_default_context()


# --- blocking client ----------------------------------------------------------------


_REPLYING = ConnectionState.REPLYING


class SyncWebSocket:
    """A blocking WebSocket client connection (use :func:`connect`).

    Not thread-safe: use it from one thread. Pings from the server are
    answered whenever the connection reads (inside :meth:`recv`).

    Attributes:
        subprotocol: the subprotocol the server chose, or None.
        response_headers: the headers of the 101 response.
        close_code: set once the connection is closed.
        close_reason: the reason that came with ``close_code``.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: ClientConnection,
        accepted: HandshakeAccepted,
        close_timeout: float | None,
    ) -> None:
        self._sock = sock
        self._conn = conn
        self._messages: deque[Message] = deque()
        self._close_timeout = close_timeout
        self.subprotocol = accepted.subprotocol
        self.response_headers = accepted.headers
        self.close_code: int | None = None
        self.close_reason = ""
        self.pongs: list[bytes] = []
        self._closed = False
        self._process()  # frames that arrived with the 101 response

    # -- sending ---------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send a text (``str``) or binary (bytes-like) message.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        conn = self._conn
        if conn.state is not ConnectionState.OPEN and conn.state is not _REPLYING:
            raise self._closed_error()
        if isinstance(message, str):
            data = conn.send_text(message)
        else:
            data = conn.send_binary(message)
        self._sendall(data)

    def send_fragments(self, fragments: Sequence[Message]) -> None:
        """Send one message as several frames (all ``str`` or all bytes)."""
        if not fragments:
            raise ValueError("no fragments")
        conn = self._conn
        if conn.state is not ConnectionState.OPEN and conn.state is not _REPLYING:
            raise self._closed_error()
        last = len(fragments) - 1
        for i, fragment in enumerate(fragments):
            self._sendall(conn.send_fragment(fragment, final=i == last))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong's payload lands in :attr:`pongs` during ``recv``."""
        if self._conn.state is not ConnectionState.OPEN:
            raise self._closed_error()
        self._sendall(self._conn.send_ping(payload))

    def _sendall(self, data: bytes) -> None:
        try:
            self._sock.settimeout(None)
            self._sock.sendall(data)
        except OSError:
            self._lost()
            raise self._closed_error() from None

    # -- receiving -------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Args:
            timeout: seconds to wait; None waits forever.

        Raises:
            TimeoutError: no message within ``timeout``.
            ConnectionClosed: the connection closed (``code``, ``reason``).
        """
        messages = self._messages
        if messages:
            return messages.popleft()
        if self._conn.state is _REPLYING:
            # Every message that came before the server's close has been handed
            # out (and perhaps answered): now our close frame goes.
            self._flush()
        deadline = None if timeout is None else _now() + timeout
        while True:
            if self._closed:
                raise self._closed_error()
            remaining = None if deadline is None else max(0.0, deadline - _now())
            if remaining == 0.0 and deadline is not None:
                raise TimeoutError("no message received in time")
            self._read(remaining)
            if messages:
                return messages.popleft()

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages until the connection closes normally."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as exc:
                if exc.ok:
                    return
                raise

    def _read(self, timeout: float | None) -> None:
        sock = self._sock
        closing = self._conn.state is ConnectionState.CLOSED
        if closing and self._close_timeout is not None:
            # Closing handshake done: the server should close TCP now (§7.1.1);
            # do not wait for it longer than the close timeout.
            timeout = self._close_timeout if timeout is None else min(timeout, self._close_timeout)
        try:
            sock.settimeout(timeout)
            data = sock.recv(65536)
        except TimeoutError:
            if closing:
                self._lost()
                return
            raise TimeoutError("no message received in time") from None
        except OSError:
            data = b""
        self._conn.receive_data(data)
        self._process()
        if not data:
            self._lost()

    def _process(self) -> None:
        conn = self._conn
        for event in conn.events():
            cls = type(event)
            if cls is TextMessage or cls is BinaryMessage:
                self._messages.append(event.data)  # type: ignore[attr-defined]
            elif isinstance(event, Pong):
                self.pongs.append(event.payload)
            elif isinstance(event, (Close, ConnectionFailed)):
                if self.close_code is None:
                    self.close_code = event.code
                    self.close_reason = event.reason
            elif isinstance(event, ConnectionLost) and self.close_code is None:
                self.close_code = 1006
        if conn.state is _REPLYING and self._messages:
            # The server's close (or a failure) came with messages: the application
            # may answer them first (Autobahn 7.1.1); recv() or close() sends our close.
            return
        self._flush()

    def _flush(self) -> None:
        conn = self._conn
        out = conn.data_to_send()
        if out:
            try:
                self._sock.settimeout(self._close_timeout)
                self._sock.sendall(out)
            except OSError:
                pass
        if conn.state is ConnectionState.CLOSED and conn.should_close_transport:
            self._lost()

    def _lost(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.close_code is None:
            self.close_code = 1006
        self._sock.close()

    def _closed_error(self) -> ConnectionClosed:
        code = self.close_code if self.close_code is not None else 1006
        return connection_closed(code, self.close_reason)

    # -- closing ---------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (bounded by the close timeout), then close.

        Messages that arrive meanwhile are discarded.
        """
        if self._closed:
            return
        conn = self._conn
        if conn.state is _REPLYING:
            self._flush()  # the answer to the server's close
        elif conn.state is ConnectionState.OPEN:
            try:
                self._sock.settimeout(self._close_timeout)
                self._sock.sendall(conn.close(code, reason))
            except OSError:
                self._lost()
                return
        deadline = None if self._close_timeout is None else _now() + self._close_timeout
        # Wait for the server's close frame and for it to close TCP (§7.1.1).
        while not self._closed:
            remaining = None if deadline is None else deadline - _now()
            if remaining is not None and remaining <= 0:
                break
            try:
                self._read(remaining)
            except TimeoutError:
                break
        if self.close_code is None and conn.close_received is None and conn.close_sent:
            self.close_code = 1006
        self._lost()

    @property
    def closed(self) -> bool:
        """True once the socket is closed."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _offered(
    compression: bool, extensions: Sequence[ClientExtensionFactory] | None
) -> Sequence[ClientExtensionFactory]:
    if not compression:
        return ()
    return (ClientPerMessageDeflate(),) if extensions is None else extensions


def connect(
    url: str,
    *,
    timeout: float | None = 10.0,
    close_timeout: float | None = 10.0,
    extra_headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    compression: bool = True,
    extensions: Sequence[ClientExtensionFactory] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    sock: socket.socket | None = None,
) -> SyncWebSocket:
    """Open a blocking WebSocket connection.

    Args:
        url: ``ws://host[:port]/path`` or ``wss://...``.
        timeout: the open timeout: TCP connect, TLS and the handshake together.
        close_timeout: how long :meth:`SyncWebSocket.close` waits for the server.
        extra_headers: more request headers (Authorization, Cookie, ...).
        subprotocols: subprotocols to offer, most preferred first.
        origin: an ``Origin`` header to send.
        compression: offer the extensions (False: offer none).
        extensions: extension factories to offer; None (the default) offers
            permessage-deflate (``ClientPerMessageDeflate()``), as browsers do.
        ssl_context: for ``wss://`` (default: system CAs, verification on).
        server_hostname: SNI / certificate name (default: the URL's host).
        max_message_size: largest message accepted (the client fails with 1009).
        sock: an already connected socket to use instead of connecting.

    Raises:
        HandshakeRejected: the server answered with an HTTP status (``status_code``).
        HandshakeError: the server's answer was not a valid handshake.
        TimeoutError: the connection did not open within ``timeout``.
        OSError: the TCP connection or TLS failed.

    Example::

        with connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))
    """
    parsed = parse_url(url)
    context = _client_ssl_context(parsed, ssl_context)
    deadline = None if timeout is None else _now() + timeout
    if sock is None:
        sock = socket.create_connection((parsed.host, parsed.port), timeout=timeout)
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            sock.settimeout(timeout)
            sock = context.wrap_socket(sock, server_hostname=server_hostname or parsed.host)
        hs = ClientHandshake(
            parsed.host_header,
            parsed.target,
            subprotocols=subprotocols,
            extensions=_offered(compression, extensions),
            extra_headers=extra_headers,
            origin=origin,
            max_message_size=max_message_size,
        )
        sock.settimeout(timeout)
        sock.sendall(hs.request_bytes())
        while True:
            event = hs.next_event()
            if isinstance(event, HandshakeAccepted):
                break
            remaining = None if deadline is None else deadline - _now()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("opening handshake timed out")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("opening handshake timed out") from None
            hs.receive_data(data)
        return SyncWebSocket(sock, hs.connection, event, close_timeout)
    except BaseException:
        sock.close()
        raise


# --- loop client --------------------------------------------------------------------


class ClientWebSocket(WebSocket):
    """A client connection on a :class:`Loop` (see :class:`WebSocket` for the API).

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

    _role = "client"

    def __init__(
        self,
        loop: Loop,
        opts: _Options,
        handler: Handler,
        hs: ClientHandshake,
        remote_address: Any,
        on_error: Callable[[BaseException], object] | None,
    ) -> None:
        super().__init__(loop, opts, remote_address)
        self._hs: ClientHandshake | None = hs
        self._pending_handler: Handler | None = handler
        self._on_error = on_error
        self._on_lost: Callable[[ClientWebSocket], object] | None = None
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
        if hs is None or self._phase != 0:
            return
        try:
            hs.receive_data(data)
            event = hs.next_event()
        except (HandshakeError, LocalProtocolError) as exc:
            self._fail(exc)
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
                self._fail(exc)
                return
        self._fail(ConnectionError("connection closed during the handshake"))

    def _fail(self, exc: BaseException) -> None:
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
        self._t_start = loop.time()
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timer = loop.call_later(self._opts.sweep_interval(), self._periodic)
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
            self._transport = transport
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
        if sock is None or self._phase == 3:
            return
        if sock.fileno() != -1:
            self._loop.remove_writer(sock.fileno())
        sock.close()
        self.failure = exc
        self._phase = 3
        self._log(logging.INFO, "could not connect: %s", exc)
        self._lost(exc, False)

    def _periodic(self) -> None:
        self._timer = None
        if self._phase == 3:
            return
        now = self._loop.time()
        timeout = self._opts.handshake_timeout
        if self._connecting is not None and timeout is not None and now - self._t_start >= timeout:
            self._connect_failed(TimeoutError("TCP connect timed out"))
            return
        if self._phase == 0 and timeout is not None and now - self._t_start >= timeout:
            self._fail(TimeoutError("opening handshake timed out"))
            return
        self._check(now)
        if self._phase != 3:
            self._timer = self._loop.call_later(self._opts.sweep_interval(), self._periodic)

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

    def _log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        if logger.isEnabledFor(level):
            peer = self._peer_text()
            logger.log(
                level,
                "[#%d %s] " + msg,
                self.id,
                peer,
                *args,
                exc_info=exc_info,
                extra={"conn_id": self.id, "peer": peer},
            )


def loop_connect(
    loop: Loop,
    url: str,
    handler: Handler,
    *,
    open_timeout: float | None = 10.0,
    close_timeout: float | None = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    extra_headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    compression: bool = True,
    extensions: Sequence[ClientExtensionFactory] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    on_error: Callable[[BaseException], object] | None = None,
) -> ClientWebSocket:
    """Open a client connection on ``loop``; ``handler`` gets its callbacks.

    Returns at once; ``handler.on_open`` runs when the handshake completes.
    If the connection cannot be opened (refused, TLS error, rejected
    handshake, ``open_timeout``), ``on_error(exc)`` is called instead and
    ``ws.failure`` holds the exception. Name resolution is blocking.
    """
    parsed = parse_url(url)
    context = _client_ssl_context(parsed, ssl_context)
    opts = _Options(
        Config(
            handshake_timeout=open_timeout,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            write_buffer_limit=None,
        )
    )
    hs = ClientHandshake(
        parsed.host_header,
        parsed.target,
        subprotocols=subprotocols,
        extensions=_offered(compression, extensions),
        extra_headers=extra_headers,
        origin=origin,
        max_message_size=max_message_size,
    )
    family, type_, proto, _, addr = socket.getaddrinfo(
        parsed.host, parsed.port, type=socket.SOCK_STREAM
    )[0]
    ws = ClientWebSocket(loop, opts, handler, hs, addr, on_error)
    sock = socket.socket(family, type_, proto)
    ws._start_connect(
        sock, addr, context, (server_hostname or parsed.host) if context is not None else None
    )
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
        cap = min(self.max_delay, self.initial_delay * self.factor ** max(0, self.failures - 1))
        return random.uniform(0, cap)

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

        ws = loop_connect(self.loop, self.url, _Hooked(), **self._options)
        ws._on_lost = self._lost
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

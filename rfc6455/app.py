"""The application layer: handlers, routing, and broadcast.

Strategy: a :class:`Handler` gets callbacks on the loop's thread for one
connection (or for all, when one instance is shared). The server asks a
:class:`Router` which handler factory serves a request path. :func:`broadcast`
encodes and frames a message once and queues the same bytes to every peer:
server frames are unmasked, so nothing depends on the receiver. It uses only
the public :class:`~rfc6455.WebSocket` API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ._endpoint import WebSocket
from ._events import Message
from ._frames import frame_header

__all__ = [
    "EchoHandler",
    "Handler",
    "HandlerFactory",
    "Message",
    "Router",
    "broadcast",
]


class Handler:
    """Callbacks for one connection. Subclass it; all methods are optional.

    Callbacks run on the loop thread and must not block. An exception from a
    callback closes that connection with 1011 and is logged; nothing else is
    affected. Give the server the class (one instance per connection) or one
    instance (shared by all connections).

    Example::

        class Chat(Handler):
            def on_open(self, ws):
                ws.send(f"hello {ws.remote_address[0]}")

            def on_message(self, ws, message):
                if not ws.writable:          # the peer is not reading fast enough
                    ws.close(1008, "slow down")
                    return
                ws.send(message.upper() if isinstance(message, str) else message)

        Server(Config(port=8765), routes={"/chat": Chat}).serve_forever()
    """

    __slots__ = ()

    def on_open(self, ws: WebSocket) -> None:
        """The handshake completed; ``ws`` can send."""

    def on_message(self, ws: WebSocket, message: Message) -> None:
        """A whole data message: ``str`` for text, ``bytes`` for binary."""

    def on_ping(self, ws: WebSocket, payload: bytes) -> None:
        """A ping arrived (the pong was already queued)."""

    def on_pong(self, ws: WebSocket, payload: bytes) -> None:
        """A pong arrived."""

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        """The connection ended: ``code`` and ``reason`` as in :attr:`WebSocket.close_code`
        (the peer's code, ours after a protocol error, 1006 without a close frame)."""


class EchoHandler(Handler):
    """Sends every data message back with its type; stops reading from a peer
    that does not read its answers (backpressure) until it catches up."""

    __slots__ = ()

    def on_message(self, ws: WebSocket, message: Message) -> None:
        ws.send(message)
        if not ws.writable:
            ws.pause_reading()
            ws.on_writable(ws.resume_reading)


#: A handler class, a callable returning a fresh handler, or one shared instance.
HandlerFactory = Handler | Callable[[], Handler]


class Router:
    """Which handler serves which request path.

    Args:
        routes: request path (without the query) → handler factory.
        default: the factory for every other path (or for all, without routes).
    """

    __slots__ = ("_default", "_routes")

    def __init__(
        self,
        routes: Mapping[str, HandlerFactory] | None = None,
        default: HandlerFactory | None = None,
    ) -> None:
        if not routes and default is None:
            raise ValueError("give routes or a default handler")
        self._routes = dict(routes or {})
        self._default = default

    def factory_for(self, path: str) -> HandlerFactory | None:
        """The handler factory for ``path``, or None (answer 404)."""
        factory = self._routes.get(path)
        return factory if factory is not None else self._default

    def is_endpoint(self, path: str) -> bool:
        """True if a WebSocket upgrade to ``path`` would be served (plain GET: 426)."""
        return path in self._routes or (self._default is not None and not self._routes)

    @staticmethod
    def make_handler(factory: HandlerFactory) -> Handler:
        """The handler for one new connection: the shared instance, or a fresh one."""
        return factory if isinstance(factory, Handler) else factory()


def broadcast(
    peers: Iterable[WebSocket], message: Message, *, exclude: WebSocket | None = None
) -> int:
    """Send one message to many server-side connections, framed once.

    The frame is built once and the same bytes are queued to every peer that
    is open (except ``exclude``, e.g. the publisher); peers that are not open
    are skipped, and a peer whose write fails does not stop the others.
    Nothing blocks: a peer that cannot keep up is buffered and, once its
    buffer stays over ``write_buffer_limit`` for ``write_buffer_timeout``,
    closed with 1008 (the slow-consumer rule), so one slow subscriber never
    delays the rest.

    Frames are sent uncompressed (valid with permessage-deflate: RFC 7692 §6
    lets any message go uncompressed). Do not use it on a connection that is in
    the middle of sending a fragmented message; client connections (whose
    frames must be masked) are skipped.

    Returns:
        The number of peers the frame was queued to.
    """
    if isinstance(message, str):
        payload = message.encode("utf-8")
        first = 0x81
    else:
        payload = bytes(message)
        first = 0x82
    frame = frame_header(first, len(payload)) + payload
    sent = 0
    for peer in peers:
        if peer is not exclude and peer.queue_frame(frame):
            sent += 1
    return sent

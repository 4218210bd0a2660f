"""rfc6455: the WebSocket protocol (RFC 6455, RFC 7692) for Python.

The sans-I/O core (connections, handshake, frames, extensions) contains no
networking code: it turns bytes into events and events into bytes. The event
loop and the connection endpoint build on it; the server (``rfc6455.server``),
the loop client (``rfc6455.client``) and the blocking client
(``rfc6455.sync_client``) are siblings on the endpoint, and the application
layer (``rfc6455.app``: handlers, routing, broadcast) sits on top. The layers
and the module map: docs/layers.md.
This module re-exports the public API of every layer; ``__all__`` is the
single list of public names.
"""

from ._close import build_close_payload, parse_close_payload
from ._connection import ClientConnection, Connection, ServerConnection
from ._constants import DEFAULT_MAX_MESSAGE_SIZE, CloseCode, Opcode, is_valid_close_code
from ._endpoint import WebSocket
from ._errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    ExtensionError,
    HandshakeError,
    HandshakeRejected,
    InvalidUTF8,
    LocalProtocolError,
    MessageTooBig,
    PolicyViolation,
    ProtocolError,
    RemoteProtocolError,
    WebSocketError,
)
from ._events import (
    NEED_DATA,
    BinaryChunk,
    BinaryMessage,
    Close,
    ConnectionFailed,
    ConnectionLost,
    Event,
    NeedData,
    Ping,
    Pong,
    TextChunk,
    TextMessage,
)
from ._extensions import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
    parse_extensions,
    serialize_extension,
)
from ._frames import encode_frame
from ._handshake import (
    ClientHandshake,
    HandshakeAccepted,
    HTTPRequest,
    ServerHandshake,
    UpgradeRequest,
    accept_key,
)
from ._kernels import apply_mask, apply_mask_inplace
from ._loop import Loop
from ._state import ConnectionState
from .app import EchoHandler, Handler, broadcast
from .client import ClientWebSocket, ReconnectingClient, loop_connect
from .permessage_deflate import (
    ClientPerMessageDeflate,
    PerMessageDeflate,
    ServerPerMessageDeflate,
)
from .server import Config, Server, ServerWebSocket
from .sync_client import SyncWebSocket, connect

__version__ = "0.1.0"

__all__ = [  # noqa: RUF022 (grouped by topic, not sorted)
    "__version__",
    # connections
    "Connection",
    "ServerConnection",
    "ClientConnection",
    "ConnectionState",
    # handshake
    "ServerHandshake",
    "ClientHandshake",
    "UpgradeRequest",
    "HTTPRequest",
    "HandshakeAccepted",
    "accept_key",
    # events
    "Event",
    "TextMessage",
    "BinaryMessage",
    "TextChunk",
    "BinaryChunk",
    "Ping",
    "Pong",
    "Close",
    "ConnectionFailed",
    "ConnectionLost",
    "NEED_DATA",
    "NeedData",
    # errors
    "WebSocketError",
    "LocalProtocolError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "RemoteProtocolError",
    "ProtocolError",
    "InvalidUTF8",
    "MessageTooBig",
    "PolicyViolation",
    "ExtensionError",
    "HandshakeError",
    "HandshakeRejected",
    # extensions
    "Extension",
    "ServerExtensionFactory",
    "ClientExtensionFactory",
    "parse_extensions",
    "serialize_extension",
    "PerMessageDeflate",
    "ServerPerMessageDeflate",
    "ClientPerMessageDeflate",
    # event loop, server, client
    "Loop",
    "Server",
    "Config",
    "Handler",
    "EchoHandler",
    "WebSocket",
    "ServerWebSocket",
    "ClientWebSocket",
    "broadcast",
    "connect",
    "loop_connect",
    "SyncWebSocket",
    "ReconnectingClient",
    # frames, masking, constants
    "encode_frame",
    "apply_mask",
    "apply_mask_inplace",
    "Opcode",
    "CloseCode",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "is_valid_close_code",
    "build_close_payload",
    "parse_close_payload",
]

"""The public API: ``rfc6455.__all__`` is exactly the list we mean to publish."""

from __future__ import annotations

import importlib
import re
import types

import rfc6455

INTENDED = {
    "__version__",
    # connections (sans-I/O)
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
}


def test_all_is_the_intended_list() -> None:
    assert set(rfc6455.__all__) == INTENDED


def test_all_has_no_duplicates() -> None:
    assert len(rfc6455.__all__) == len(set(rfc6455.__all__))


def test_every_name_importable() -> None:
    module = importlib.import_module("rfc6455")
    for name in rfc6455.__all__:
        assert getattr(module, name, None) is not None, name


def test_no_unlisted_public_names() -> None:
    # Submodules (rfc6455.server, ...) are reached by import, not re-exported.
    public = {
        name
        for name, value in vars(rfc6455).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= INTENDED


def test_exported_objects_live_in_the_package() -> None:
    for name in rfc6455.__all__:
        value = getattr(rfc6455, name)
        module = getattr(value, "__module__", None)
        if module is not None and isinstance(value, type):
            assert module.startswith("rfc6455."), (name, module)


def test_errors_share_one_root() -> None:
    for name in rfc6455.__all__:
        value = getattr(rfc6455, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, rfc6455.WebSocketError), name


def test_version() -> None:
    assert isinstance(rfc6455.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", rfc6455.__version__)

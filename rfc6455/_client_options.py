"""What both clients share: URL parsing, TLS defaults, and the options of the handshake.

Strategy: the blocking client (:func:`rfc6455.connect`) and the loop client
(:func:`rfc6455.loop_connect`) take the same handshake options, declared once
here as :class:`ClientOptions` (a ``TypedDict``, so type checkers check the
keyword arguments of both functions) and turned into a
:class:`~rfc6455.ClientHandshake` by :func:`prepare`.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit

from ._constants import DEFAULT_MAX_MESSAGE_SIZE
from ._extensions import ClientExtensionFactory
from ._handshake import ClientHandshake
from .permessage_deflate import ClientPerMessageDeflate

__all__ = ["ClientOptions", "Prepared", "WebSocketURL", "backoff_delay", "parse_url", "prepare"]


class ClientOptions(TypedDict, total=False):
    """Keyword options of both clients' opening handshake (all optional).

    Attributes:
        close_timeout: how long closing waits for the server (default 10 s).
        extra_headers: more request headers (Authorization, Cookie, ...).
        subprotocols: subprotocols to offer, most preferred first.
        origin: an ``Origin`` header to send.
        compression: offer the extensions (False: offer none; default True).
        extensions: extension factories to offer; None (the default) offers
            permessage-deflate (``ClientPerMessageDeflate()``), as browsers do.
        ssl_context: for ``wss://`` (default: system CAs, verification on).
        server_hostname: SNI / certificate name (default: the URL's host).
        max_message_size: largest message accepted (the client fails with
            1009; default 1 MiB, None for no limit).
    """

    close_timeout: float | None
    extra_headers: Sequence[tuple[str, str]]
    subprotocols: Sequence[str]
    origin: str | None
    compression: bool
    extensions: Sequence[ClientExtensionFactory] | None
    ssl_context: ssl.SSLContext | None
    server_hostname: str | None
    max_message_size: int | None


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


@dataclass(frozen=True)
class Prepared:
    """A client connection ready to be dialled.

    Attributes:
        url: the parsed URL.
        ssl_context: the TLS context for ``wss://``, None for ``ws://``.
        server_hostname: the TLS server name (None without TLS).
        handshake: the opening handshake, request not sent yet.
        close_timeout: how long closing waits for the server.
    """

    url: WebSocketURL
    ssl_context: ssl.SSLContext | None
    server_hostname: str | None
    handshake: ClientHandshake
    close_timeout: float | None


def prepare(url: str, options: ClientOptions) -> Prepared:
    """Parse ``url`` and build the handshake the options describe.

    Raises:
        ValueError: a bad URL, or an ``ssl_context`` for a ``ws://`` URL.
    """
    parsed = parse_url(url)
    context = options.get("ssl_context")
    if not parsed.secure:
        if context is not None:
            raise ValueError("ssl_context given for a ws:// URL")
    elif context is None:
        # Certificate verification and host name checking are on by default.
        context = ssl.create_default_context()
    extensions: Sequence[ClientExtensionFactory] = ()
    if options.get("compression", True):
        offered = options.get("extensions")
        extensions = (ClientPerMessageDeflate(),) if offered is None else offered
    handshake = ClientHandshake(
        parsed.host_header,
        parsed.target,
        subprotocols=options.get("subprotocols", ()),
        extensions=extensions,
        extra_headers=options.get("extra_headers", ()),
        origin=options.get("origin"),
        max_message_size=options.get("max_message_size", DEFAULT_MAX_MESSAGE_SIZE),
    )
    server_hostname = None
    if context is not None:
        server_hostname = options.get("server_hostname") or parsed.host
    return Prepared(parsed, context, server_hostname, handshake, options.get("close_timeout", 10.0))


def backoff_delay(failures: int, initial_delay: float, max_delay: float, factor: float) -> float:
    """The wait before a reconnecting client's next attempt, capped exponential backoff
    with full jitter: ``uniform(0, cap)``, where the cap grows from ``initial_delay`` by
    ``factor`` per failure in a row (``failures``), up to ``max_delay``."""
    cap = min(max_delay, initial_delay * factor ** max(0, failures - 1))
    return random.uniform(0, cap)

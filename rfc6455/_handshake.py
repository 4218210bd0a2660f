"""The opening handshake (RFC 6455 §4), both roles, on top of h11.

Strategy: h11 parses and serializes HTTP/1.1; this module only judges the
WebSocket rules on top of it. Each handshake object is a small state machine:
bytes go in through ``receive_data`` (``b""`` is EOF), ``next_event`` reports
one event (or ``NEED_DATA``), then the object waits for the caller's answer
(server: ``accept`` / ``reject`` / ``respond``). Whatever h11 buffered after
the request (server) or after the 101 response (client) is the start of the
frame stream, which a fast peer may send in the same packet: it becomes the
connection's ``trailing_data`` so no frame is lost (wsproto does the same).

Errors: every h11 error is converted into :class:`HandshakeError` carrying
h11's status hint; only rfc6455 exceptions escape. After an error the
handshake is terminal and ``next_event`` raises the same error again.
Responses that refuse (``reject``, ``respond``) are formatted here rather than
by h11, because they must work in every h11 state, including after h11 gave up
on the request.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import http
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import h11

from rfc6455._connection import ClientConnection, ServerConnection
from rfc6455._constants import GUID
from rfc6455._errors import HandshakeError, HandshakeRejected, LocalProtocolError
from rfc6455._events import NEED_DATA, Event, NeedData
from rfc6455._extensions import (
    ClientExtensionFactory,
    Extension,
    ExtensionParams,
    ServerExtensionFactory,
    is_token,
    parse_extensions,
)

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_SIZE",
    "ClientHandshake",
    "HTTPRequest",
    "HandshakeAccepted",
    "ServerHandshake",
    "UpgradeRequest",
    "accept_key",
]

#: 16 KiB for the request line plus headers (or the response head, client side).
#: h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE and Node's --max-http-header-size both
#: default to 16 KiB; browsers' handshakes with cookies fit in 8 KiB. A peer that
#: sends more is answered 431 (RFC 6585 §5) before it can make us buffer more.
DEFAULT_MAX_HEADER_SIZE = 16 * 1024

#: Bodies of plain HTTP requests (and of a refusal the client reads) are kept up to
#: 64 KiB: the plain-HTTP endpoints on a WebSocket port (/healthz, /metrics) take
#: none, and a bound is needed so a POST cannot make the server buffer without end.
DEFAULT_MAX_BODY_SIZE = 64 * 1024

#: RFC 6455 §4.1: the only version this implementation speaks.
_VERSION = "13"

Headers = list[tuple[str, str]]


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (§4.2.2).

    base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
    """
    digest = hashlib.sha1(key.encode("ascii") + GUID).digest()
    return base64.b64encode(digest).decode("ascii")


# --- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeRequest(Event):
    """A valid WebSocket opening handshake request (server side).

    Answer it with :meth:`ServerHandshake.accept` or :meth:`ServerHandshake.reject`.

    Attributes:
        method: always ``"GET"``.
        target: the request target, path and query (``"/chat?room=1"``).
        headers: all headers in order, names lower-case, values decoded as latin-1.
        host: the ``Host`` header.
        origin: the ``Origin`` header, or None if absent (non-browser clients).
        key: the ``Sec-WebSocket-Key`` header.
        subprotocols: the subprotocols offered, in the client's order.
        extensions: the extension offers, parsed, in the client's order.
        http_version: ``"1.1"``.
    """

    method: str
    target: str
    headers: Headers
    host: str
    origin: str | None
    key: str
    subprotocols: list[str]
    extensions: list[tuple[str, ExtensionParams]]
    http_version: str = "1.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRequest(Event):
    """A plain HTTP request that is not a WebSocket handshake attempt (server side).

    Answer it with :meth:`ServerHandshake.respond` (or ``reject``), then close.

    Attributes:
        method: the request method, e.g. ``"GET"``.
        target: the request target.
        headers: all headers in order, names lower-case, values decoded as latin-1.
        http_version: ``"1.1"`` or ``"1.0"``.
        body: the request body (at most ``max_body_size`` bytes; larger is 413).
    """

    method: str
    target: str
    headers: Headers
    http_version: str = "1.1"
    body: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeAccepted(Event):
    """The server accepted our handshake (client side).

    Attributes:
        subprotocol: the subprotocol the server chose, or None.
        extensions: the negotiated extensions, in the order the server listed them.
        headers: the 101 response's headers, names lower-case.
    """

    subprotocol: str | None
    extensions: list[Extension]
    headers: Headers


# --- header helpers -----------------------------------------------------------


def _decode_headers(raw: Any) -> Headers:
    # Names lower-cased as h11 does (they are tokens: ASCII); values may carry obs-text,
    # hence latin-1. From raw_items(), a list: iterating h11's Headers itself goes
    # through Sequence.__iter__ and __getitem__ in Python, item by item.
    return [
        (name.lower().decode("ascii"), value.decode("latin-1")) for name, value in raw.raw_items()
    ]


def _group(headers: Headers) -> dict[str, list[str]]:
    """Header values by (lower-case) name, in order."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    return grouped


def _tokens(values: list[str]) -> list[str]:
    """The elements of comma-separated list headers (RFC 7230 §7), empty ones dropped."""
    if len(values) == 1 and "," not in values[0]:  # the usual header: one element
        item = values[0].strip()
        return [item] if item else []
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _lower_tokens(values: list[str]) -> list[str]:
    return [token.lower() for token in _tokens(values)]


# What h11 writes for a 101 with these three headers (tests compare the two).
_PLAIN_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: %s\r\n\r\n"
)


def _check_header(name: str, value: str) -> None:
    if not is_token(name):
        raise LocalProtocolError(f"header name {name!r} is not a token")
    if any(char in value for char in "\r\n\0"):
        raise LocalProtocolError(f"header {name!r} value contains CR, LF or NUL")


def _format_response(status: int, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}"]
    for name, value in headers:
        _check_header(name, value)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _is_valid_key(key: str) -> bool:
    # §4.1: "a randomly selected 16-byte value that has been base64-encoded"; 16
    # bytes always encode to 24 characters ending in "==".
    if len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:  # binascii.Error, or non-ASCII characters
        return False


class _State(enum.Enum):
    READING = "reading"  # waiting for the request / response
    DELIVERED = "delivered"  # the event went out; waiting for the caller's answer
    ACCEPTED = "accepted"  # switched to WebSocket: the connection takes over
    CLOSED = "closed"  # a refusal or plain HTTP response was produced
    ERROR = "error"


# --- server -------------------------------------------------------------------


_C = TypeVar("_C", ServerConnection, ClientConnection)


def _build_connection(cls: type[_C], handshake: ServerHandshake | ClientHandshake) -> _C:
    """The connection a handshake hands over: extensions, early bytes, options."""
    if handshake._state is not _State.ACCEPTED:
        raise LocalProtocolError("the handshake has not been accepted")
    return cls(
        extensions=handshake.extensions,
        trailing_data=handshake.trailing_data,
        **handshake._connection_options,
    )


def _feed(handshake: ServerHandshake | ClientHandshake, data: bytes) -> None:
    """Both roles' ``receive_data``: EOF bookkeeping, head accounting, then h11."""
    if handshake._state is _State.ACCEPTED:
        raise LocalProtocolError("handshake accepted: feed handshake.connection instead")
    if handshake._eof:
        if data:
            raise LocalProtocolError("data received after EOF")
        return
    if not data:
        handshake._eof = True
    handshake._fed += len(data)
    handshake._h11.receive_data(data)


_Read = TypeVar("_Read")


def _next_event(
    handshake: ServerHandshake | ClientHandshake, read: Callable[[], _Read]
) -> _Read | NeedData:
    """Both roles' ``next_event``: a stored error again; nothing while the caller
    answers; else ``read()``, and a ``HandshakeError`` from it ends the handshake."""
    if handshake._error is not None:
        raise handshake._error
    if handshake._state is not _State.READING:
        return NEED_DATA
    try:
        return read()
    except HandshakeError as exc:
        handshake._error = exc
        handshake._state = _State.ERROR
        raise


class ServerHandshake:
    """The server side of the opening handshake (RFC 6455 §4.2), sans-I/O.

    Feed bytes with :meth:`receive_data` and call :meth:`next_event` until it
    returns an :class:`UpgradeRequest` (a valid handshake), an
    :class:`HTTPRequest` (plain HTTP: no ``Upgrade: websocket`` and no
    ``Sec-WebSocket-*`` header) or raises :class:`HandshakeError` (a malformed
    handshake attempt, a broken HTTP request, or a refusal by ``check_request``).
    Then answer with the bytes of :meth:`accept`, :meth:`reject` /
    :meth:`reject_bytes` or :meth:`respond`. After ``accept``,
    :attr:`connection` is the :class:`ServerConnection` to use.

    Origin and authentication checks: either inspect the ``UpgradeRequest``
    (``origin``, ``headers``) and answer ``reject(403, ...)``, or pass
    ``check_request``, which may raise ``HandshakeError(reason, 401 or 403,
    headers)``; ``next_event`` then raises that error.

    Args:
        subprotocols: subprotocols this server speaks, most preferred first.
        extensions: extension factories, in the order to apply them.
        select_subprotocol: optional hook given the client's offers; returns the
            one to use or None. Overrides the ``subprotocols`` preference order.
        check_request: optional hook run on each valid request before
            ``next_event`` returns it; raise HandshakeError to refuse.
        max_header_size: the most bytes of request head to accept (431 beyond).
        max_body_size: the most bytes of plain HTTP request body (413 beyond).
        **connection_options: passed to :class:`ServerConnection`
            (``max_message_size``, ``stream_messages``, ...).
    """

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ServerExtensionFactory] = (),
        select_subprotocol: Callable[[list[str]], str | None] | None = None,
        check_request: Callable[[UpgradeRequest], None] | None = None,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        **connection_options: Any,
    ) -> None:
        self._subprotocols = list(subprotocols)
        self._factories = list(extensions)
        self._select_subprotocol = select_subprotocol
        self._check_request = check_request
        self._max_header_size = max_header_size
        self._max_body_size = max_body_size
        self._connection_options = connection_options
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
        self._fed = 0  # bytes given to h11, to measure the head exactly
        self._state = _State.READING
        self._error: HandshakeError | None = None
        self._eof = False
        # While reading: the validated upgrade request, or the plain request's parts.
        self._pending: UpgradeRequest | None = None
        self._plain: tuple[str, str, Headers, str] | None = None
        self._body = bytearray()
        #: The event ``next_event`` returned, once it did.
        self.request: UpgradeRequest | HTTPRequest | None = None
        #: After :meth:`accept`: the chosen subprotocol, or None.
        self.subprotocol: str | None = None
        #: After :meth:`accept`: the negotiated extensions, in order.
        self.extensions: list[Extension] = []
        #: After :meth:`accept`: bytes received after the request (early frames).
        self.trailing_data = b""
        self._connection: ServerConnection | None = None

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the client; ``b""`` means EOF.

        Raises:
            LocalProtocolError: after :meth:`accept` (feed the connection
                instead), or data after EOF.
        """
        _feed(self, data)

    def next_event(self) -> UpgradeRequest | HTTPRequest | NeedData:
        """The next request, or ``NEED_DATA``.

        Once a request was returned this returns ``NEED_DATA`` until the caller
        answers; bytes received meanwhile are kept, unbounded, as the
        connection's trailing data, so stop reading until you answer.

        Raises:
            HandshakeError: the request is malformed or refused; answer with
                :meth:`reject_bytes` and close. Raised again on later calls.
        """
        return _next_event(self, self._read)

    def _read(self) -> UpgradeRequest | HTTPRequest | NeedData:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise HandshakeError(str(exc), exc.error_status_hint) from None
            if isinstance(event, h11.Request):
                self._on_head(event)
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_body_size:
                    raise HandshakeError("request body too large", 413)
            elif isinstance(event, h11.EndOfMessage):
                return self._on_end()
            elif isinstance(event, h11.ConnectionClosed):
                raise HandshakeError("connection closed before a complete request")
            else:  # NEED_DATA (PAUSED only comes after EndOfMessage)
                return NEED_DATA

    def _on_head(self, request: h11.Request) -> None:
        method = request.method.decode("ascii")
        target = request.target.decode("latin-1")
        headers = _decode_headers(request.headers)
        # h11 bounds only *incomplete* heads; a complete one that came in a single
        # large chunk is bounded here, to the byte: what h11 consumed for it.
        # (trailing_data copies h11's buffer: asked only when the head may be too large.)
        if (
            self._fed > self._max_header_size
            and self._fed - len(self._h11.trailing_data[0]) > self._max_header_size
        ):
            raise HandshakeError("request header fields too large", 431)
        version = request.http_version.decode("ascii")
        if not version.startswith("1."):  # h11 parses any x.y, e.g. the HTTP/2 preface
            raise HandshakeError(f"HTTP/{version} is not supported", 505)
        values = _group(headers)
        upgrade = _lower_tokens(values.get("upgrade", []))
        if "websocket" in upgrade or any(n.startswith("sec-websocket-") for n in values):
            self._pending = self._validate(method, target, headers, values, version, upgrade)
        else:
            self._plain = (method, target, headers, version)

    def _validate(
        self,
        method: str,
        target: str,
        headers: Headers,
        values: dict[str, list[str]],
        version: str,
        upgrade: list[str],
    ) -> UpgradeRequest:
        # §4.2.1 lists what a server must check; the order here decides which
        # reason a request with several faults gets.
        if method != "GET":
            raise HandshakeError(f"WebSocket handshake method must be GET, not {method}")
        if version < "1.1":  # h11 only parses single-digit HTTP/x.y versions
            raise HandshakeError(f"WebSocket handshake needs HTTP/1.1, not HTTP/{version}")
        hosts = values.get("host", [])
        if len(hosts) != 1:  # pragma: no cover - h11 already enforces it for HTTP/1.1
            raise HandshakeError("WebSocket handshake needs exactly one Host header")
        if "websocket" not in upgrade:
            raise HandshakeError('missing "Upgrade: websocket" header')
        if "upgrade" not in _lower_tokens(values.get("connection", [])):
            raise HandshakeError('missing "Connection: Upgrade" header')
        if values.get("transfer-encoding", []) or any(
            value.strip() != "0" for value in values.get("content-length", [])
        ):
            raise HandshakeError("WebSocket handshake request must not have a body")
        # §4.2.2: "If this version does not match a version understood by the
        # server, the server MUST abort the WebSocket handshake ... and instead
        # send an appropriate HTTP error code (such as 426 Upgrade Required) and a
        # |Sec-WebSocket-Version| header field indicating the version(s) the
        # server is capable of understanding."
        if _tokens(values.get("sec-websocket-version", [])) != [_VERSION]:
            raise HandshakeError(
                "unsupported WebSocket version: only 13 is supported",
                426,
                [("Sec-WebSocket-Version", _VERSION)],
            )
        keys = values.get("sec-websocket-key", [])
        if len(keys) != 1:
            what = "missing" if not keys else "duplicated"
            raise HandshakeError(f"{what} Sec-WebSocket-Key header")
        key = keys[0].strip()
        if not _is_valid_key(key):
            raise HandshakeError("Sec-WebSocket-Key is not 16 bytes in base64")
        origins = values.get("origin", [])
        if len(origins) > 1:
            raise HandshakeError("duplicated Origin header")
        subprotocols = _tokens(values.get("sec-websocket-protocol", []))
        for subprotocol in subprotocols:
            if not is_token(subprotocol):
                raise HandshakeError(f"invalid subprotocol {subprotocol!r}")
        return UpgradeRequest(
            method=method,
            target=target,
            headers=headers,
            host=hosts[0],
            origin=origins[0] if origins else None,
            key=key,
            subprotocols=subprotocols,
            extensions=parse_extensions(values.get("sec-websocket-extensions", [])),
            http_version=version,
        )

    def _on_end(self) -> UpgradeRequest | HTTPRequest:
        request: UpgradeRequest | HTTPRequest
        if self._pending is not None:
            request = self._pending
            if self._check_request is not None:
                self._check_request(request)
        else:
            assert self._plain is not None
            method, target, headers, version = self._plain
            request = HTTPRequest(
                method=method,
                target=target,
                headers=headers,
                http_version=version,
                body=bytes(self._body),
            )
        self._state = _State.DELIVERED
        self.request = request
        return request

    def accept(
        self,
        request: UpgradeRequest,
        *,
        subprotocol: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        extensions: Sequence[ServerExtensionFactory] | None = None,
    ) -> bytes:
        """Accept the handshake: the bytes of the 101 response to send.

        Subprotocol: ``subprotocol`` if given; else the ``select_subprotocol``
        hook's answer; else the first of the server's ``subprotocols`` that the
        client offered; else none (no ``Sec-WebSocket-Protocol`` header, §4.2.2).

        Extensions: for each factory in order, the client's offers of that name
        are tried in the client's order and the first that ``factory.accept``
        takes wins (§9.1). An extension whose RSV bits are already claimed by an
        earlier one is skipped.

        Args:
            request: the UpgradeRequest this handshake returned.
            subprotocol: the subprotocol to use; must be one the client offered.
            extra_headers: more headers for the response (e.g. Set-Cookie).
            extensions: factories to negotiate with instead of the ones given
                at construction (``()`` turns extensions off for this connection).

        Raises:
            LocalProtocolError: ``request`` is not this handshake's pending
                request, or the subprotocol was not offered, or a bad header.
            HandshakeError: an extension factory refused the request outright;
                answer with :meth:`reject_bytes`.
        """
        if (
            self._state is not _State.DELIVERED
            or not isinstance(request, UpgradeRequest)
            or request is not self.request
        ):
            raise LocalProtocolError("accept() needs the UpgradeRequest from next_event()")
        if subprotocol is None:
            if self._select_subprotocol is not None:
                subprotocol = self._select_subprotocol(list(request.subprotocols))
            else:
                offered = request.subprotocols
                subprotocol = next((p for p in self._subprotocols if p in offered), None)
        if subprotocol is not None and subprotocol not in request.subprotocols:
            raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered")

        elements: list[str] = []
        negotiated: list[Extension] = []
        claimed = 0
        factories = self._factories if extensions is None else extensions
        for factory in factories:
            for name, params in request.extensions:
                if name != factory.name:
                    continue
                result = factory.accept(params)
                if result is None:
                    continue
                element, extension = result
                if extension.rsv_mask & claimed:
                    break
                claimed |= extension.rsv_mask
                elements.append(element)
                negotiated.append(extension)
                break

        if subprotocol is None and not elements and not extra_headers:
            # The usual response: only headers we make (the accept key is base64), so
            # nothing for h11 to validate; formatted here, h11's request parsing stays.
            data = _PLAIN_101 % accept_key(request.key).encode("ascii")
            self._state = _State.ACCEPTED
            self.subprotocol = None
            self.extensions = negotiated
            self.trailing_data = bytes(self._h11.trailing_data[0])
            return data
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(request.key)),
        ]
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        if elements:
            headers.append(("Sec-WebSocket-Extensions", ", ".join(elements)))
        for name, value in extra_headers:
            _check_header(name, value)
            headers.append((name, value))
        try:
            data = self._h11.send(
                h11.InformationalResponse(
                    status_code=101, headers=headers, reason=b"Switching Protocols"
                )
            )
        except h11.LocalProtocolError as exc:  # pragma: no cover - headers checked above
            raise LocalProtocolError(str(exc)) from None
        assert data is not None
        self._state = _State.ACCEPTED
        self.subprotocol = subprotocol
        self.extensions = negotiated
        self.trailing_data = bytes(self._h11.trailing_data[0])
        return data

    @property
    def connection(self) -> ServerConnection:
        """The WebSocket connection, after :meth:`accept`.

        It has the negotiated extensions, the bytes received after the request
        as its trailing data, and the ``connection_options``.
        """
        if self._connection is None:
            self._connection = _build_connection(ServerConnection, self)
        return self._connection

    def reject(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """Refuse the handshake (or any request): the bytes of the response.

        The body is ``reason`` on one line, as text/plain; the response says
        ``Connection: close``: send it, then close the connection.

        Raises:
            LocalProtocolError: after :meth:`accept`, or a bad header.
        """
        if self._state is _State.ACCEPTED:
            raise LocalProtocolError("the handshake was already accepted")
        body = (" ".join(reason.splitlines()) + "\n").encode("utf-8")
        self._state = _State.CLOSED
        return _format_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *headers,
            ],
            body,
        )

    def reject_bytes(self, error: HandshakeError) -> bytes:
        """The response for a :class:`HandshakeError` (its status, reason, headers)."""
        return self.reject(error.status_code, error.reason, error.headers)

    def respond(
        self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> bytes:
        """Answer a plain :class:`HTTPRequest`: the bytes of the response.

        ``Content-Length`` and ``Connection: close`` are added (one request per
        connection); for a HEAD request the body is left out. Send, then close.

        Raises:
            LocalProtocolError: no HTTPRequest is pending, or a bad header.
        """
        request = self.request
        if self._state is not _State.DELIVERED or not isinstance(request, HTTPRequest):
            raise LocalProtocolError("respond() answers an HTTPRequest from next_event()")
        self._state = _State.CLOSED
        response = _format_response(
            status,
            [*headers, ("Content-Length", str(len(body))), ("Connection", "close")],
            b"" if request.method == "HEAD" else body,
        )
        return response


# --- client -------------------------------------------------------------------


class ClientHandshake:
    """The client side of the opening handshake (RFC 6455 §4.1), sans-I/O.

    Send :meth:`request_bytes`, then feed the response with
    :meth:`receive_data` and call :meth:`next_event` until it returns
    :class:`HandshakeAccepted`; then :attr:`connection` is the
    :class:`ClientConnection` to use.

    Args:
        host: the ``Host`` header value (``"example.com"`` or ``"example.com:8080"``).
        target: the request target, path and query.
        subprotocols: subprotocols to offer, most preferred first.
        extensions: extension factories whose offers to send.
        extra_headers: more request headers (e.g. Authorization, Cookie).
        origin: the ``Origin`` header, or None to send none.
        max_header_size: the most bytes of response head to accept.
        **connection_options: passed to :class:`ClientConnection`.
    """

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ClientExtensionFactory] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        origin: str | None = None,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        **connection_options: Any,
    ) -> None:
        for subprotocol in subprotocols:
            if not is_token(subprotocol):
                raise LocalProtocolError(f"subprotocol {subprotocol!r} is not a token")
        self.host = host
        self.target = target
        self.subprotocols = list(subprotocols)
        self._factories = list(extensions)
        self._extra_headers = list(extra_headers)
        self.origin = origin
        self._connection_options = connection_options
        #: §4.1: "a nonce consisting of a randomly selected 16-byte value".
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        self._max_header_size = max_header_size
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        self._fed = 0  # bytes given to h11, to measure the head exactly
        self._requested = False
        self._state = _State.READING
        self._error: HandshakeError | None = None
        self._eof = False
        self._rejection: tuple[int, str, Headers] | None = None
        self._body = bytearray()
        #: After acceptance: the chosen subprotocol, or None.
        self.subprotocol: str | None = None
        #: After acceptance: the negotiated extensions, in order.
        self.extensions: list[Extension] = []
        #: After acceptance: bytes received after the 101 response (early frames).
        self.trailing_data = b""
        self._connection: ClientConnection | None = None

    def request_bytes(self) -> bytes:
        """The bytes of the upgrade request (§4.1). Call once.

        Raises:
            LocalProtocolError: called twice, or a bad header.
        """
        if self._requested:
            raise LocalProtocolError("request_bytes() was already called")
        headers = [
            ("Host", self.host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self.key),
            ("Sec-WebSocket-Version", _VERSION),
        ]
        if self.origin is not None:
            headers.append(("Origin", self.origin))
        if self.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
        offers = [factory.offer() for factory in self._factories]
        if offers:
            parse_extensions(offers)  # our own offers must follow the grammar
            headers.append(("Sec-WebSocket-Extensions", ", ".join(offers)))
        for name, value in self._extra_headers:
            _check_header(name, value)
            headers.append((name, value))
        try:
            data = self._h11.send(h11.Request(method="GET", target=self.target, headers=headers))
            end = self._h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise LocalProtocolError(str(exc)) from None
        assert data is not None and end is not None
        self._requested = True
        return data + end

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the server; ``b""`` means EOF.

        Raises:
            LocalProtocolError: after acceptance (feed the connection instead),
                or data after EOF.
        """
        _feed(self, data)

    def next_event(self) -> HandshakeAccepted | NeedData:
        """``HandshakeAccepted`` once a valid 101 response is in, else ``NEED_DATA``.

        Raises:
            HandshakeRejected: the server answered with another status (the
                body, up to ``DEFAULT_MAX_BODY_SIZE``, is on the exception).
            HandshakeError: an invalid 101 response (``status_code`` 101), or
                no or a broken HTTP response (``status_code`` 0). Raised again
                on later calls.
            LocalProtocolError: :meth:`request_bytes` was not called yet.
        """
        if not self._requested and self._error is None:
            raise LocalProtocolError("call request_bytes() first")
        return _next_event(self, self._read)

    def _read(self) -> HandshakeAccepted | NeedData:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._rejection is not None:  # e.g. EOF inside the body
                    raise self._rejected() from None
                if self._eof:
                    raise HandshakeError(
                        f"connection closed before a complete handshake response: {exc}", 0
                    ) from None
                raise HandshakeError(f"invalid HTTP response: {exc}", 0) from None
            # As on the server: a complete head that came in one chunk is bounded here.
            if (
                isinstance(event, (h11.InformationalResponse, h11.Response))
                and self._fed - len(self._h11.trailing_data[0]) > self._max_header_size
            ):
                raise HandshakeError("response header fields too large", 0)
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return self._on_switch(_decode_headers(event.headers))
                # Other 1xx (100 Continue, 103 Early Hints) precede the real answer.
            elif isinstance(event, h11.Response):
                self._rejection = (
                    event.status_code,
                    event.reason.decode("latin-1"),
                    _decode_headers(event.headers),
                )
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) >= DEFAULT_MAX_BODY_SIZE:
                    raise self._rejected()
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                # Only after a Response: h11 raises on EOF while the head is awaited.
                raise self._rejected()
            else:
                return NEED_DATA

    def _rejected(self) -> HandshakeRejected:
        assert self._rejection is not None
        status, phrase, headers = self._rejection
        return HandshakeRejected(
            f"server rejected the WebSocket handshake: {status} {phrase}".rstrip(),
            status,
            headers,
            bytes(self._body[:DEFAULT_MAX_BODY_SIZE]),
        )

    def _on_switch(self, headers: Headers) -> HandshakeAccepted:
        def fail(reason: str) -> HandshakeError:
            return HandshakeError(f"invalid 101 response: {reason}", 101, headers)

        values = _group(headers)
        # §4.1, the client's checks of the server's response, in the RFC's order.
        if _lower_tokens(values.get("upgrade", [])) != ["websocket"]:
            raise fail('missing "Upgrade: websocket" header')
        if "upgrade" not in _lower_tokens(values.get("connection", [])):
            raise fail('missing "Connection: Upgrade" header')
        accepts = values.get("sec-websocket-accept", [])
        if len(accepts) != 1 or accepts[0].strip() != accept_key(self.key):
            raise fail("wrong or missing Sec-WebSocket-Accept")

        # §4.1: "If the response includes a |Sec-WebSocket-Extensions| header
        # field and this header field indicates the use of an extension that was
        # not present in the client's handshake ... the client MUST _Fail the
        # WebSocket Connection_."
        try:
            elements = parse_extensions(values.get("sec-websocket-extensions", []))
        except HandshakeError as exc:
            raise fail(exc.reason) from None
        factories = {factory.name: factory for factory in self._factories}
        negotiated: list[Extension] = []
        seen: set[str] = set()
        claimed = 0
        for name, params in elements:
            factory = factories.get(name)
            if factory is None:
                raise fail(f"extension {name!r} was not offered")
            if name in seen:
                raise fail(f"extension {name!r} accepted twice")
            seen.add(name)
            try:
                extension = factory.accept_response(params)
            except HandshakeError as exc:
                raise fail(exc.reason) from None
            if extension.rsv_mask & claimed:
                raise fail(f"extension {name!r} reuses RSV bits of another extension")
            claimed |= extension.rsv_mask
            negotiated.append(extension)

        # §4.1: a subprotocol "that was not present in the client's handshake"
        # MUST fail the connection.
        protocols = _tokens(values.get("sec-websocket-protocol", []))
        if len(protocols) > 1:
            raise fail("more than one subprotocol selected")
        subprotocol = protocols[0] if protocols else None
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise fail(f"subprotocol {subprotocol!r} was not offered")

        self._state = _State.ACCEPTED
        self.subprotocol = subprotocol
        self.extensions = negotiated
        self.trailing_data = bytes(self._h11.trailing_data[0])
        return HandshakeAccepted(subprotocol=subprotocol, extensions=negotiated, headers=headers)

    @property
    def connection(self) -> ClientConnection:
        """The WebSocket connection, after :class:`HandshakeAccepted`.

        It has the negotiated extensions, the bytes received after the 101
        response as its trailing data, and the ``connection_options``.
        """
        if self._connection is None:
            self._connection = _build_connection(ClientConnection, self)
        return self._connection

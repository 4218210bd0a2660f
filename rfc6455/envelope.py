"""The JSON envelope, version 1 (docs/protocol.md): parse, validate, route, answer.

Strategy: :func:`parse` turns one text message into an :class:`Envelope` or raises
:class:`EnvelopeError` with the protocol's error code; it checks the envelope only
(``v``, ``type``, ``id``, ``data``), never a type's fields, and ignores unknown fields.
:class:`EnvelopeApp` is a :class:`~rfc6455.Handler` that routes each envelope by
``type`` to a function registered with :meth:`EnvelopeApp.route`, and answers every
request that has an ``id`` exactly once: an ``ack`` with what the function returned,
or an ``error`` with what it raised. A malformed message gets an ``error``, never a
closed connection. Server messages are encoded by :func:`encode`, with ``ts`` set.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._endpoint import WebSocket
from ._errors import WebSocketError
from ._events import Message
from .app import Handler

__all__ = [
    "ERROR_CODES",
    "LATER",
    "SUBPROTOCOL",
    "VERSIONS",
    "Envelope",
    "EnvelopeApp",
    "EnvelopeError",
    "Request",
    "encode",
    "error_message",
    "parse",
]

logger = logging.getLogger("rfc6455.envelope")

#: The subprotocol a client offers to speak this protocol (RFC 6455 §1.9).
SUBPROTOCOL = "rfc6455.json.v1"
#: The envelope versions this implementation speaks.
VERSIONS: tuple[int, ...] = (1,)
#: Envelopes larger than this (in UTF-8 bytes) get ``too_large``: 64 KiB, enough for any
#: chat line or dashboard update, small next to the 1 MiB WebSocket message limit.
DEFAULT_MAX_ENVELOPE_SIZE = 64 * 1024
#: The longest request ``id`` accepted.
MAX_ID_LENGTH = 64

#: Every error code, and whether retrying may help (``temporary``).
ERROR_CODES: Mapping[str, bool] = {
    "bad_json": False,
    "bad_envelope": False,
    "unsupported_version": False,
    "unknown_type": False,
    "unauthorized": False,
    "forbidden": False,
    "rate_limited": True,
    "too_large": False,
    "unavailable": True,
    "internal": True,
}


class EnvelopeError(WebSocketError):
    """A request cannot be served: becomes an ``error`` message.

    Args:
        code: one of :data:`ERROR_CODES`.
        message: public text for the client (never internal details).
        data: more fields for the error's ``data`` (e.g. ``versions``).
        re: the ``id`` of the request it answers, when known.
    """

    def __init__(
        self,
        code: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        re: str | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown envelope error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = dict(data or {})
        self.re = re

    @property
    def temporary(self) -> bool:
        """True if the same request may succeed later."""
        return ERROR_CODES[self.code]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One parsed message.

    Attributes:
        type: what the message is.
        data: the type's fields (``{}`` if absent).
        id: the client's request id, or None (then no ``ack`` is sent).
        v: the envelope version.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    v: int = 1


def _now_ms() -> int:
    return int(time.time() * 1000)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: valid JSON syntax, no double can hold it
        raise ValueError(f"number {text[:20]} out of range")
    return value


def _loads(text: str) -> Any:
    """``json.loads`` of RFC 8259 JSON only: ``NaN``, ``Infinity`` and ``-Infinity``
    (which Python's json accepts) and numbers out of a double's range are refused.

    Anything accepted can be sent on as JSON every client parses: Python would write
    those values back as ``NaN`` / ``Infinity``, which JavaScript's ``JSON.parse``
    refuses (one publication would break every subscriber's parser).
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def parse(message: Message, *, max_size: int = DEFAULT_MAX_ENVELOPE_SIZE) -> Envelope:
    """Parse and check one message of the protocol.

    Raises:
        EnvelopeError: ``too_large``, ``bad_json``, ``bad_envelope`` or
            ``unsupported_version``, with ``re`` set when the message had a valid ``id``.
    """
    if not isinstance(message, str):
        raise EnvelopeError("bad_json", "binary messages are not part of the protocol")
    # A str of n characters encodes to between n and 4n UTF-8 bytes.
    if len(message) > max_size or (len(message) * 4 > max_size and
                                   len(message.encode("utf-8", "surrogatepass")) > max_size):
        raise EnvelopeError("too_large", f"envelopes are limited to {max_size} bytes")
    try:
        obj = _loads(message)
    except (ValueError, RecursionError):
        raise EnvelopeError("bad_json", "not valid JSON") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("bad_envelope", "an envelope is a JSON object")
    raw_id = obj.get("id")
    request_id: str | None = None
    if raw_id is not None:
        if not isinstance(raw_id, str) or not 1 <= len(raw_id) <= MAX_ID_LENGTH:
            raise EnvelopeError("bad_envelope", f"id must be a string of 1-{MAX_ID_LENGTH} characters")
        request_id = raw_id
    version = obj.get("v")
    if type(version) is not int:
        raise EnvelopeError("bad_envelope", "v (the version, an integer) is required", re=request_id)
    if version not in VERSIONS:
        raise EnvelopeError(
            "unsupported_version",
            f"version {version} is not supported",
            {"versions": list(VERSIONS)},
            re=request_id,
        )
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise EnvelopeError("bad_envelope", "type (a string) is required", re=request_id)
    data = obj.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EnvelopeError("bad_envelope", "data must be an object", re=request_id)
    return Envelope(type=kind, data=data, id=request_id, v=version)


def encode(
    kind: str,
    data: Mapping[str, Any] | None = None,
    *,
    re: str | None = None,
    ts: int | None = None,
) -> str:
    """One server message as JSON text, with ``v`` and ``ts`` set."""
    obj: dict[str, Any] = {"v": VERSIONS[-1], "type": kind}
    if re is not None:
        obj["re"] = re
    obj["ts"] = _now_ms() if ts is None else ts
    obj["data"] = dict(data) if data is not None else {}
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (JSON allows it, UTF-8 does not)
            text = json.dumps(obj, separators=(",", ":"))
    return text


def error_message(error: EnvelopeError, *, ts: int | None = None) -> str:
    """The ``error`` message for ``error``."""
    data = {"code": error.code, "message": error.message, "temporary": error.temporary}
    data.update(error.data)
    return encode("error", data, re=error.re, ts=ts)


class Request:
    """What a route function gets.

    A route answers by returning (the ``ack`` data, or None for an empty ack) or by
    raising :class:`EnvelopeError`; a route that needs a result from elsewhere (a
    broker) returns :data:`LATER` and answers afterwards, once, with :meth:`ack` or
    :meth:`fail`.

    Attributes:
        ws: the connection the request came on.
        envelope: the parsed message.
    """

    __slots__ = ("_answered", "envelope", "ws")

    def __init__(self, ws: WebSocket, envelope: Envelope) -> None:
        self.ws = ws
        self.envelope = envelope
        self._answered = False

    def ack(self, data: Mapping[str, Any] | None = None) -> None:
        """Answer with an ``ack`` (sent only if the request had an ``id``)."""
        if self._claim() and self.envelope.id is not None:
            self._send(encode("ack", data, re=self.envelope.id))

    def fail(self, error: EnvelopeError) -> None:
        """Answer with an ``error`` (sent whether or not the request had an ``id``)."""
        if self._claim():
            error.re = self.envelope.id
            self._send(error_message(error))

    def _claim(self) -> bool:
        if self._answered:
            return False
        self._answered = True
        return True

    def _send(self, text: str) -> None:
        if self.ws.open:
            self.ws.send(text)

    @property
    def data(self) -> dict[str, Any]:
        """The request's ``data``."""
        return self.envelope.data

    def field(self, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
        """``data[name]``, checked to be of ``kind``.

        Raises:
            EnvelopeError: ``bad_envelope`` naming the field, if it is missing
                (and required) or of another type.
        """
        value = self.envelope.data.get(name)
        if value is None:
            if required:
                raise EnvelopeError("bad_envelope", f"data.{name} is required")
            return None
        # bool is an int in Python, never in the protocol.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise EnvelopeError("bad_envelope", f"data.{name} has the wrong type")
        return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


class _Later:
    """The type of :data:`LATER`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LATER"


#: Returned by a route that answers later, with :meth:`Request.ack` or :meth:`Request.fail`.
LATER = _Later()

#: A route: the request in; the ``ack`` data out (None: an empty ack), or :data:`LATER`.
Route = Callable[[Request], "Mapping[str, Any] | None | _Later"]


class EnvelopeApp(Handler):
    """A handler that speaks the envelope protocol and routes requests by ``type``.

    One instance serves every connection (give the server the instance). ``ping``
    is built in. Example::

        app = EnvelopeApp()

        @app.route("echo")
        def echo(request):
            return {"text": request.field("text", str)}

        Server(Config(subprotocols=[SUBPROTOCOL]), handler=app).serve_forever()

    Args:
        max_size: the envelope limit (``too_large`` above it).
    """

    __slots__ = ("_routes", "max_size")

    def __init__(self, *, max_size: int = DEFAULT_MAX_ENVELOPE_SIZE) -> None:
        self._routes: dict[str, Route] = {"ping": self._ping}
        self.max_size = max_size

    def route(self, kind: str) -> Callable[[Route], Route]:
        """Decorator: requests of type ``kind`` go to the decorated function."""

        def register(function: Route) -> Route:
            self._routes[kind] = function
            return function

        return register

    def add_route(self, kind: str, function: Route) -> None:
        """Requests of type ``kind`` go to ``function``."""
        self._routes[kind] = function

    def on_message(self, ws: WebSocket, message: Message) -> None:
        reply = self.handle(ws, message)
        if reply is not None:
            ws.send(reply)

    def handle(self, ws: WebSocket, message: Message) -> str | None:
        """The answer to one message (None: nothing to send), as text."""
        try:
            envelope = parse(message, max_size=self.max_size)
        except EnvelopeError as exc:
            return error_message(exc)
        route = self._routes.get(envelope.type)
        if route is None:
            return error_message(
                EnvelopeError("unknown_type", f"unknown type {envelope.type!r}", re=envelope.id)
            )
        request = Request(ws, envelope)
        try:
            result = route(request)
        except EnvelopeError as exc:
            if not request._claim():
                raise  # answered, then raised: a bug in the route
            exc.re = envelope.id
            return error_message(exc)
        except Exception:  # noqa: BLE001 - one request fails, not the connection
            ws.log(logging.ERROR, "route %r raised", envelope.type, exc_info=True)
            if not request._claim():
                return None  # it had answered already: one answer per request
            return error_message(EnvelopeError("internal", "internal error", re=envelope.id))
        if result is LATER or not request._claim():
            return None
        if envelope.type == "ping":
            return encode("pong", re=envelope.id)
        if envelope.id is None:
            return None
        assert not isinstance(result, _Later)
        return encode("ack", result, re=envelope.id)

    @staticmethod
    def _ping(request: Request) -> None:
        return None

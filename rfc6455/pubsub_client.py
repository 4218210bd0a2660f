"""The Python client of the pub/sub protocol (docs/protocol.md), on the loop.

Strategy: :class:`PubSubClient` rides on :class:`~rfc6455.ReconnectingClient`
(capped exponential backoff, full jitter). Every request gets an ``id`` and a
:class:`Reply` that is resolved exactly once: by the ``ack`` or ``error`` whose
``re`` is that id, by its own timer (``TimeoutError``), or by the connection's
end (:class:`~rfc6455.ConnectionClosed`). A request made while disconnected
waits in a queue (its timer running) and goes out when the next connection
opens; a request that was *sent* and not answered when the connection dropped
fails with ``ConnectionClosed`` and is **never resent**: for a ``publish`` the
outcome is unknown (the server may have stored it), and a silent resend could
store it twice. The application decides (read ``history``, or publish again).

Subscriptions are state, not requests: each topic has a :class:`Cursor`, the
(epoch, offset) of the last publication handed to the application. On every
new connection each topic is subscribed again with ``since`` = its cursor, so
the server replays what was missed. A ``message`` is delivered only if it is
the cursor's next offset in the cursor's epoch; an offset at or below the cursor
is a duplicate and dropped; anything else (a hole, another epoch) triggers a
resubscribe with ``since``. An ack with ``recovered: false`` moves the cursor
to the ack's position and calls ``on_resync(topic, ack)``: never a silent skip.
The blocking flavour, :class:`SyncPubSubClient`, is in
:mod:`rfc6455.pubsub_sync_client`; both share :class:`Cursor` and the errors
(``_pubsub_common``); this module is where to import all of them from.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ._endpoint import WebSocket
from ._errors import ConnectionClosed, connection_closed
from ._events import Message
from ._loop import Loop, TimerHandle
from ._pubsub_common import (
    DEFAULT_TIMEOUT,
    Cursor,
    Meta,
    Publication,
    PubSubError,
    ResyncNeeded,
    Verdict,
    dispatch,
    request_text,
    with_token,
)
from .app import Handler
from .client import ReconnectingClient
from .pubsub_sync_client import SyncPubSubClient

__all__ = [
    "DEFAULT_TIMEOUT",
    "Cursor",
    "Meta",
    "PubSubClient",
    "PubSubError",
    "Publication",
    "Reply",
    "ResyncNeeded",
    "SyncPubSubClient",
    "Verdict",
]

logger = logging.getLogger("rfc6455.pubsub_client")

ReplyCallback = Callable[["Reply"], object]
#: ``callback(payload, meta)`` for each publication of a subscribed topic.
MessageCallback = Callable[[Any, Meta], object]


class Reply:
    """The answer to one request, resolved once: ``data`` (the ack) or ``error``.

    ``error`` is a :class:`PubSubError` (the server said no), a ``TimeoutError``
    (no answer in time; the request may still have taken effect) or a
    :class:`~rfc6455.ConnectionClosed` (the connection dropped first; same caveat).
    """

    __slots__ = ("_callbacks", "_timer", "data", "done", "error", "id", "kind")

    def __init__(self, kind: str, callback: ReplyCallback | None = None) -> None:
        self.kind = kind
        self.id: str | None = None
        self.data: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.done = False
        self._timer: TimerHandle | None = None
        self._callbacks: list[ReplyCallback] = [] if callback is None else [callback]

    @property
    def ok(self) -> bool:
        """True once resolved with an ack."""
        return self.done and self.error is None

    def result(self) -> dict[str, Any]:
        """The ack data; raises the error, or ``RuntimeError`` if not resolved yet."""
        if not self.done:
            raise RuntimeError(f"{self.kind} has no answer yet")
        if self.error is not None:
            raise self.error
        assert self.data is not None
        return self.data

    def add_callback(self, callback: ReplyCallback) -> None:
        """Call ``callback(reply)`` once resolved (now, if it is)."""
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def start_timer(self, loop: Loop, timeout: float | None, on_timeout: Callable[[], object]
                    ) -> None:
        """Resolve with ``TimeoutError`` after ``timeout`` seconds (None: never)."""
        if timeout is not None:
            self._timer = loop.call_later(timeout, on_timeout)

    def resolve(self, data: dict[str, Any] | None = None, error: BaseException | None = None
                ) -> bool:
        """Resolve (the first call only); False if it was resolved already."""
        if self.done:
            return False
        self.done = True
        self.data, self.error = (None, error) if error is not None else (data or {}, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("%s reply callback raised", self.kind)
        return True

    def __repr__(self) -> str:
        state = "pending" if not self.done else ("ok" if self.error is None else repr(self.error))
        return f"<Reply {self.kind} id={self.id} {state}>"


class _Sub:
    """One subscription of the loop client."""

    __slots__ = ("attempt", "callback", "cursor", "first", "on_error", "topic")

    def __init__(self, topic: str, callback: MessageCallback,
                 on_error: Callable[[BaseException], object] | None, cursor: Cursor) -> None:
        self.topic = topic
        self.callback = callback
        self.on_error = on_error
        self.cursor = cursor
        #: The subscribe request in flight, if any.
        self.attempt: Reply | None = None
        #: What subscribe() returned: resolved by the first answer.
        self.first: Reply | None = None


class _Connection(Handler):
    """Forwards one connection's callbacks to its :class:`PubSubClient`."""

    __slots__ = ("client",)

    def __init__(self, client: PubSubClient) -> None:
        self.client = client

    def on_open(self, ws: WebSocket) -> None:
        self.client._opened(ws)

    def on_message(self, ws: WebSocket, message: Message) -> None:
        self.client._received(ws, message)

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.client._closed(ws, code, reason)


class PubSubClient:
    """A pub/sub client on a :class:`~rfc6455.Loop`: reconnects, resubscribes, never
    skips or repeats a publication silently.

    Every method must be called on the loop's thread (from another thread: through
    ``loop.call_soon_threadsafe``); every callback runs there.

    Args:
        loop: the loop to run on.
        url: ``ws://host:port/path`` of a ``serve --app pubsub`` server.
        token: sent as ``Authorization: Bearer <token>`` in every handshake.
        on_resync: ``on_resync(topic, ack)`` when a reconnection could not recover
            what was missed on ``topic`` (the ack has ``recovered: false``). Without it,
            the subscription's ``on_error`` gets a :class:`ResyncNeeded`, else a warning
            is logged.
        on_connect: ``on_connect(ws)`` after each connection opened (subscriptions sent).
        on_disconnect: ``on_disconnect(code, reason)`` after each connection ended.
        request_timeout: the deadline of internal requests (resubscriptions).
        initial_delay, max_delay, max_attempts: the reconnection backoff
            (:class:`~rfc6455.ReconnectingClient`).
        **connect_options: passed to :func:`~rfc6455.loop_connect` (``open_timeout``,
            ``ping_interval``, ``extra_headers``, ``ssl_context``, ...).
    """

    def __init__(
        self,
        loop: Loop,
        url: str,
        *,
        token: str | None = None,
        on_resync: Callable[[str, dict[str, Any]], object] | None = None,
        on_connect: Callable[[WebSocket], object] | None = None,
        on_disconnect: Callable[[int, str], object] | None = None,
        request_timeout: float = DEFAULT_TIMEOUT,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        max_attempts: int | None = None,
        **connect_options: Any,
    ) -> None:
        self.loop = loop
        self.url = url
        self.on_resync = on_resync
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.request_timeout = request_timeout
        self.reconnecting = ReconnectingClient(
            loop,
            url,
            lambda: _Connection(self),
            initial_delay=initial_delay,
            max_delay=max_delay,
            max_attempts=max_attempts,
            **with_token(connect_options, token),
        )
        self.ws: WebSocket | None = None
        #: The server's id for the current connection (the ``connect`` ack), if known.
        self.client_id: str | None = None
        self._ids = itertools.count(1)
        self._subs: dict[str, _Sub] = {}
        self._sent: dict[str, Reply] = {}  # id -> request sent on self.ws
        self._queue: deque[tuple[Reply, dict[str, Any]]] = deque()  # waiting for a connection
        self._running = False

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Connect (and reconnect whenever the connection drops)."""
        self._running = True
        self.reconnecting.start()

    def stop(self) -> None:
        """Close and stop reconnecting; requests not answered fail with ConnectionClosed."""
        self._running = False
        self.reconnecting.stop()
        error = connection_closed(1000, "", "the client was stopped")
        while self._queue:
            self._queue.popleft()[0].resolve(error=error)
        for reply in list(self._sent.values()):
            reply.resolve(error=error)
        self._sent.clear()

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self.ws is not None

    # -- requests --------------------------------------------------------------------

    def request(
        self,
        kind: str,
        data: Mapping[str, Any],
        callback: ReplyCallback | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Reply:
        """Send any request; ``callback(reply)`` once it is answered, timed out or cut off.

        Sent now if connected, else when the next connection opens (if that is
        before ``timeout``). Once sent, it is never resent.
        """
        reply = Reply(kind, callback)
        reply.id = str(next(self._ids))
        reply.start_timer(self.loop, timeout, lambda: self._timed_out(reply, timeout))
        payload = dict(data)
        if self.ws is not None:
            self._send(reply, payload)
        else:
            self._queue.append((reply, payload))
        return reply

    def publish(self, topic: str, payload: Any, callback: ReplyCallback | None = None,
                timeout: float | None = DEFAULT_TIMEOUT) -> Reply:
        """Publish; the reply's data is ``{"topic", "offset", "epoch"}``.

        Not retried after a dropped connection (the reply fails with ConnectionClosed).
        """
        return self.request("publish", {"topic": topic, "payload": payload}, callback, timeout)

    def history(self, topic: str, *, since: Mapping[str, Any] | None = None,
                limit: int | None = None, callback: ReplyCallback | None = None,
                timeout: float | None = DEFAULT_TIMEOUT) -> Reply:
        """Read a topic's history; data: ``{"messages": [...], "complete", "offset", "epoch"}``."""
        data: dict[str, Any] = {"topic": topic}
        if since is not None:
            data["since"] = dict(since)
        if limit is not None:
            data["limit"] = limit
        return self.request("history", data, callback, timeout)

    def presence(self, topic: str, callback: ReplyCallback | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT) -> Reply:
        """Who is subscribed to ``topic``; data: ``{"count", "clients": [...]}``."""
        return self.request("presence", {"topic": topic}, callback, timeout)

    def subscribe(
        self,
        topic: str,
        callback: MessageCallback,
        *,
        on_error: Callable[[BaseException], object] | None = None,
        since: Mapping[str, Any] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Reply:
        """Subscribe; ``callback(payload, meta)`` for each publication, once and in order.

        The subscription lasts until :meth:`unsubscribe` or a permanent error (then
        ``on_error(PubSubError)``); it is renewed with ``since`` on every reconnection.
        ``since`` (``{"offset", "epoch"}``) starts after a position saved earlier.
        Subscribing again to a topic replaces the callbacks and keeps the position.
        The returned reply resolves with the first answer (the ack, or an error).
        """
        sub = self._subs.get(topic)
        if sub is not None:
            sub.callback, sub.on_error = callback, on_error
            reply = Reply("subscribe")
            reply.resolve({"topic": topic, "offset": sub.cursor.offset,
                           "epoch": sub.cursor.epoch})
            return reply
        cursor = Cursor() if since is None else Cursor(str(since["epoch"]), int(since["offset"]))
        sub = self._subs[topic] = _Sub(topic, callback, on_error, cursor)
        first = sub.first = Reply("subscribe")
        first.start_timer(self.loop, timeout, lambda: first.resolve(
            error=TimeoutError(f"subscribe {topic} not answered within {timeout}s")))
        if self.ws is not None:
            self._resubscribe(sub)
        return first

    def unsubscribe(self, topic: str, callback: ReplyCallback | None = None,
                    timeout: float | None = DEFAULT_TIMEOUT) -> Reply:
        """Stop delivering ``topic`` at once, and tell the server."""
        sub = self._subs.pop(topic, None)
        if sub is not None and sub.first is not None:
            sub.first.resolve(error=ConnectionClosed(1000, "", "unsubscribed"))
        if self.ws is None:
            reply = Reply("unsubscribe", callback)
            reply.resolve({"topic": topic})  # no connection, no server-side subscription
            return reply
        return self.request("unsubscribe", {"topic": topic}, callback, timeout)

    def position(self, topic: str) -> dict[str, Any] | None:
        """The last ``{"offset", "epoch"}`` delivered on ``topic`` (None: none yet)."""
        sub = self._subs.get(topic)
        return None if sub is None else sub.cursor.since()

    # -- internals -------------------------------------------------------------------

    def _send(self, reply: Reply, data: dict[str, Any]) -> None:
        assert self.ws is not None and reply.id is not None
        self._sent[reply.id] = reply
        try:
            self.ws.send(request_text(reply.kind, data, reply.id))
        except ConnectionClosed as exc:
            self._sent.pop(reply.id, None)
            reply.resolve(error=exc)

    def _timed_out(self, reply: Reply, timeout: float | None) -> None:
        if reply.id is not None:
            self._sent.pop(reply.id, None)
        for i, (queued, _) in enumerate(self._queue):
            if queued is reply:
                del self._queue[i]
                break
        reply.resolve(error=TimeoutError(f"{reply.kind} not answered within {timeout}s"))

    def _resubscribe(self, sub: _Sub) -> None:
        """Send ``subscribe`` (with ``since`` = the cursor once there is one)."""
        data: dict[str, Any] = {"topic": sub.topic}
        since = sub.cursor.since()
        if since is not None:
            data["since"] = since
        sub.attempt = self.request("subscribe", data, lambda r: self._subscribed(sub, r),
                                   self.request_timeout)

    def _subscribed(self, sub: _Sub, reply: Reply) -> None:
        if self._subs.get(sub.topic) is not sub or sub.attempt is not reply:
            return  # unsubscribed, or an older attempt
        sub.attempt = None
        error = reply.error
        if error is None:
            assert reply.data is not None
            try:
                lost = sub.cursor.on_ack(reply.data)
            except PubSubError as exc:
                error = exc
            else:
                if sub.first is not None:
                    sub.first.resolve(reply.data)
                if lost:
                    self._resync(sub, reply.data)
                return
        if isinstance(error, ConnectionClosed):
            return  # subscribed again on the next connection
        if sub.first is not None:
            sub.first.resolve(error=error)
        if isinstance(error, PubSubError) and not error.temporary:
            del self._subs[sub.topic]
        else:
            self.loop.call_later(self.reconnecting.next_delay(), self._retry, sub)
        self._report(sub, error)

    def _retry(self, sub: _Sub) -> None:
        if self._subs.get(sub.topic) is sub and sub.attempt is None and self.ws is not None:
            self._resubscribe(sub)

    def _resync(self, sub: _Sub, ack: dict[str, Any]) -> None:
        if self.on_resync is not None:
            try:
                self.on_resync(sub.topic, ack)
            except Exception:
                logger.exception("on_resync raised")
        elif sub.on_error is not None:
            self._report(sub, ResyncNeeded(sub.topic, ack))
        else:
            logger.warning("%s: publications were missed and cannot be recovered (ack %s)",
                           sub.topic, ack)

    @staticmethod
    def _report(sub: _Sub, error: BaseException) -> None:
        if sub.on_error is None:
            logger.warning("subscription %s: %s", sub.topic, error)
            return
        try:
            sub.on_error(error)
        except Exception:
            logger.exception("on_error raised")

    # -- connection callbacks (from _Connection) -------------------------------------

    def _opened(self, ws: WebSocket) -> None:
        self.ws = ws
        self.client_id = None
        self.request("connect", {}, self._connected, self.request_timeout)
        for sub in list(self._subs.values()):
            self._resubscribe(sub)
        while self._queue and self.ws is ws:
            reply, data = self._queue.popleft()
            self._send(reply, data)
        if self.on_connect is not None:
            self.on_connect(ws)

    def _connected(self, reply: Reply) -> None:
        if reply.data is not None and isinstance(reply.data.get("client"), str):
            self.client_id = reply.data["client"]

    def _closed(self, ws: WebSocket, code: int, reason: str) -> None:
        if ws is not self.ws:
            return
        self.ws = None
        error = connection_closed(code, reason,
                                  f"connection closed ({code}) before the answer came")
        sent, self._sent = self._sent, {}
        for reply in sent.values():
            reply.resolve(error=error)
        if self.on_disconnect is not None:
            self.on_disconnect(code, reason)

    def _received(self, ws: WebSocket, text: Message) -> None:
        if ws is self.ws:
            dispatch(text, self)

    def _answer(self, re: str, msg: dict[str, Any]) -> None:
        reply = self._sent.pop(re, None)
        if reply is not None:  # else: answered late, after its timeout
            if msg["type"] == "error":
                reply.resolve(error=PubSubError.from_data(msg["data"]))
            else:
                reply.resolve(msg["data"])

    def _topic_error(self, topic: str | None, data: dict[str, Any]) -> None:
        sub = self._subs.get(topic) if topic is not None else None
        if sub is not None:  # the server interrupted the subscription: renew it
            logger.info("subscription %s interrupted: %s", topic, data.get("message"))
            if sub.attempt is None:
                self._resubscribe(sub)
        else:
            logger.warning("error from the server: %s", PubSubError.from_data(data))

    def _message(self, data: dict[str, Any], ts: Any) -> None:
        topic = data.get("topic")
        sub = self._subs.get(topic) if isinstance(topic, str) else None
        if sub is None:
            return  # unsubscribed meanwhile
        offset, epoch = data.get("offset"), data.get("epoch")
        verdict = sub.cursor.check(epoch, offset)
        if verdict is Verdict.DELIVER:
            assert isinstance(topic, str) and isinstance(epoch, str) and isinstance(offset, int)
            meta = Meta(topic, offset, epoch, ts if isinstance(ts, int) else None)
            try:
                sub.callback(data.get("payload"), meta)
            except Exception:
                logger.exception("subscription callback for %s raised", topic)
        elif verdict is Verdict.GAP and sub.attempt is None:
            logger.info("%s: offset %s in %s after %r: resubscribing", topic, offset, epoch,
                        sub.cursor)
            self._resubscribe(sub)


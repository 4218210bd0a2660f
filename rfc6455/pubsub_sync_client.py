"""The blocking client of the pub/sub protocol (docs/protocol.md), for scripts.

Strategy: one :class:`~rfc6455.SyncWebSocket` and no thread. Every call has a
deadline (its ``timeout=``, else the client's ``timeout``) and reads the
connection until the answer to its request id arrives; whatever else arrives
meanwhile is dispatched: publications go through their topic's
:class:`~rfc6455.pubsub_client.Cursor` (the same no-gap, no-duplicate rule as the
loop client) into an inbox that :meth:`SyncPubSubClient.recv` empties, answers
to requests that timed out are dropped. A request that was sent when the
connection dropped raises :class:`~rfc6455.ConnectionClosed` and is never
resent (a ``publish`` may have been stored); the next call reconnects first
(``auto_reconnect``), and :meth:`~SyncPubSubClient.recv` reconnects by itself:
attempts with capped exponential backoff and full jitter until its deadline,
then every topic is subscribed again with ``since`` = its cursor.
A lost position is queued in the inbox, in stream order, as a
:class:`~rfc6455.pubsub_client.ResyncNeeded`: ``on_resync`` gets it, or ``recv`` raises it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Self

from ._client_options import backoff_delay
from ._errors import ConnectionClosed, HandshakeError, connection_closed
from ._pubsub_common import (
    Cursor,
    Publication,
    PubSubError,
    ResyncNeeded,
    Verdict,
    dispatch,
    request_text,
    with_token,
)
from .sync_client import SyncWebSocket, connect

__all__ = ["SyncPubSubClient"]

#: What ``reconnect`` retries: the server is down, refuses, or answers oddly.
_CONNECT_ERRORS = (OSError, TimeoutError, HandshakeError)

_Hook = Callable[[dict[str, Any]], None]


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


class SyncPubSubClient:
    """A blocking pub/sub client: requests with deadlines, ``recv`` for publications.

    Not thread-safe: use it from one thread. Connects in the constructor.

    Args:
        url: ``ws://host:port/path`` of a ``serve --app pubsub`` server.
        token: sent as ``Authorization: Bearer <token>``.
        timeout: the default deadline of every call (and of the first connection).
        auto_reconnect: reconnect (and resubscribe with ``since``) when the
            connection is found lost: inside :meth:`recv`, or before a request.
        on_resync: ``on_resync(topic, ack)`` when publications were lost for good;
            without it :meth:`recv` raises :class:`ResyncNeeded` (then goes on).
        initial_delay, max_delay: the reconnection backoff.
        **connect_options: passed to :func:`rfc6455.connect`.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        auto_reconnect: bool = True,
        on_resync: Callable[[str, dict[str, Any]], object] | None = None,
        initial_delay: float = 0.1,
        max_delay: float = 5.0,
        **connect_options: Any,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.auto_reconnect = auto_reconnect
        self.on_resync = on_resync
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self._options = with_token(connect_options, token)
        self.ws: SyncWebSocket | None = None
        #: Connections opened so far.
        self.connections = 0
        self._ids = 0
        self._cursors: dict[str, Cursor] = {}
        self._resubscribing: set[str] = set()
        self._stale: set[str] = set()  # refused for now (temporary error): to renew
        self._hooks: dict[str, _Hook] = {}  # request id -> what to do with its answer
        self._pump_deadline = 0.0  # the deadline of the read being dispatched
        self._inbox: deque[Publication | BaseException] = deque()
        self.reconnect(timeout)

    # -- connection ------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def reconnect(self, timeout: float | None = None) -> None:
        """(Re)connect, then resubscribe every topic with ``since``; wait for the acks.

        A connection still open is closed first (within its ``close_timeout``).
        Attempts are spaced by capped exponential backoff with full jitter.

        Raises:
            TimeoutError: no connection, or not all acks, before the deadline.
        """
        deadline = self._deadline(timeout)
        failures = 0
        while True:
            self._drop()
            try:
                self.ws = connect(self.url, timeout=_left(deadline), **self._options)
                self.connections += 1
                for topic in list(self._cursors):
                    self._resubscribe(topic, deadline)
                while self._resubscribing:
                    self._pump(deadline)
                return
            except (*_CONNECT_ERRORS, ConnectionClosed) as exc:
                # refused, or lost again before every topic was back: start over
                failures += 1
                delay = backoff_delay(failures, self.initial_delay, self.max_delay, 2.0)
                if time.monotonic() + delay >= deadline:
                    self._drop()
                    raise TimeoutError(f"could not reconnect to {self.url}: {exc}") from exc
                time.sleep(delay)

    def _drop(self) -> None:
        """Forget the current connection: requests in flight will never be answered."""
        ws, self.ws = self.ws, None
        self._hooks.clear()
        self._resubscribing.clear()
        self._stale.clear()
        if ws is not None and not ws.closed:
            ws.close()

    def _ready(self, deadline: float) -> SyncWebSocket:
        ws = self.ws
        if ws is None or ws.closed:
            if not self.auto_reconnect:
                code = 1006 if ws is None or ws.close_code is None else ws.close_code
                raise connection_closed(code, "", "not connected")
            self.reconnect(_left(deadline))
            ws = self.ws
            assert ws is not None
        return ws

    def close(self) -> None:
        """Close the connection (no reconnection until a call asks for one)."""
        self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------

    def _pump(self, deadline: float) -> None:
        """Read and dispatch one message (TimeoutError, ConnectionClosed pass through)."""
        ws = self.ws
        if ws is None:
            raise connection_closed(1006, "", "not connected")
        text = ws.recv(timeout=_left(deadline))
        self._pump_deadline = deadline
        dispatch(text, self)

    def _answer(self, re: str, msg: dict[str, Any]) -> None:
        hook = self._hooks.pop(re, None)
        if hook is not None:  # else: the answer to a request that timed out
            hook(msg)

    def _topic_error(self, topic: str | None, data: dict[str, Any]) -> None:
        if topic is not None and topic in self._cursors:
            self._resubscribe(topic, self._pump_deadline)  # the server interrupted it: renew
        else:
            self._inbox.append(PubSubError.from_data(data))

    def _message(self, data: dict[str, Any], ts: Any) -> None:
        topic = data.get("topic")
        cursor = self._cursors.get(topic) if isinstance(topic, str) else None
        if cursor is None:
            return
        assert isinstance(topic, str)
        offset, epoch = data.get("offset"), data.get("epoch")
        verdict = cursor.check(epoch, offset)
        if verdict is Verdict.DELIVER:
            assert isinstance(epoch, str) and isinstance(offset, int)
            self._inbox.append(Publication(topic, data.get("payload"), offset, epoch,
                                           ts if isinstance(ts, int) else None))
        elif verdict is Verdict.GAP and topic not in self._resubscribing:
            self._resubscribe(topic, None)

    def recv(self, timeout: float | None = None) -> Publication:
        """The next publication of a subscribed topic, each offset once and in order.

        Reconnects and resubscribes by itself (``auto_reconnect``) within the deadline.

        Raises:
            TimeoutError: nothing before the deadline.
            ResyncNeeded: publications were lost for good (without ``on_resync``).
            PubSubError: an error the server sent outside any request, or a
                resubscription refused.
            ConnectionClosed: the connection dropped (without ``auto_reconnect``).
        """
        deadline = self._deadline(timeout)
        inbox = self._inbox
        while True:
            while inbox:
                item = inbox.popleft()
                if isinstance(item, Publication):
                    return item
                if isinstance(item, ResyncNeeded) and self.on_resync is not None:
                    self.on_resync(item.topic, item.ack)
                    continue
                raise item
            try:
                self._ready(deadline)
                for topic in list(self._stale - self._resubscribing):
                    self._stale.discard(topic)
                    self._resubscribe(topic, deadline)
                self._pump(deadline)
            except ConnectionClosed:
                if not self.auto_reconnect:
                    raise  # else: the next turn reconnects

    # -- requests --------------------------------------------------------------------

    def _send(self, kind: str, data: Mapping[str, Any], hook: _Hook, deadline: float,
              *, reconnect: bool = True) -> str:
        ws = self._ready(deadline) if reconnect else self.ws
        if ws is None:
            raise connection_closed(1006, "", "not connected")
        self._ids += 1
        rid = str(self._ids)
        ws.send(request_text(kind, data, rid), timeout=_left(deadline))
        self._hooks[rid] = hook
        return rid

    def request(self, kind: str, data: Mapping[str, Any], timeout: float | None = None
                ) -> dict[str, Any]:
        """Send a request and wait for its ack; returns the ack data.

        Raises:
            PubSubError: the server answered with an error (``code``, ``temporary``).
            TimeoutError: no answer in time (the request may still take effect).
            ConnectionClosed: the connection dropped before the answer; not resent.
        """
        deadline = self._deadline(timeout)
        answer: list[dict[str, Any]] = []
        rid = self._send(kind, data, answer.append, deadline)
        try:
            while not answer:
                self._pump(deadline)
        except TimeoutError:
            self._hooks.pop(rid, None)
            raise TimeoutError(f"{kind} not answered in time") from None
        msg = answer[0]
        if msg["type"] == "error":
            raise PubSubError.from_data(msg["data"])
        data_: dict[str, Any] = msg["data"]
        return data_

    def publish(self, topic: str, payload: Any, timeout: float | None = None) -> dict[str, Any]:
        """Publish; returns ``{"topic", "offset", "epoch"}``. Never resent by the client."""
        return self.request("publish", {"topic": topic, "payload": payload}, timeout)

    def history(self, topic: str, *, since: Mapping[str, Any] | None = None,
                limit: int | None = None, timeout: float | None = None) -> dict[str, Any]:
        """A topic's history: ``{"messages": [{"offset", "payload", "ts"}...], ...}``."""
        data: dict[str, Any] = {"topic": topic}
        if since is not None:
            data["since"] = dict(since)
        if limit is not None:
            data["limit"] = limit
        return self.request("history", data, timeout)

    def presence(self, topic: str, timeout: float | None = None) -> dict[str, Any]:
        """Who is subscribed to ``topic``: ``{"count", "clients": [...]}``."""
        return self.request("presence", {"topic": topic}, timeout)

    def subscribe(self, topic: str, *, since: Mapping[str, Any] | None = None,
                  timeout: float | None = None) -> dict[str, Any]:
        """Subscribe (renewed with ``since`` on every reconnection); returns the ack.

        ``since`` starts after a position saved earlier (subscribing again to a topic
        keeps its position). If that position cannot be recovered, the ack says
        ``recovered: false`` and a :class:`ResyncNeeded` is queued for :meth:`recv`.
        """
        existing = self._cursors.get(topic)
        if since is not None:
            cursor = Cursor(str(since["epoch"]), int(since["offset"]))
        else:
            cursor = existing if existing is not None else Cursor()
        data: dict[str, Any] = {"topic": topic}
        position = cursor.since()
        if position is not None:
            data["since"] = position
        self._cursors[topic] = cursor  # a new cursor has no epoch: messages wait for the ack
        try:
            ack = self.request("subscribe", data, timeout)
            lost = cursor.on_ack(ack)
        except BaseException:
            if self._cursors.get(topic) is cursor and cursor is not existing:
                del self._cursors[topic]
            raise
        if lost:
            self._inbox.append(ResyncNeeded(topic, ack))
        return ack

    def unsubscribe(self, topic: str, timeout: float | None = None) -> dict[str, Any]:
        """Stop delivering ``topic`` (at once, even if the request then fails)."""
        self._cursors.pop(topic, None)
        self._resubscribing.discard(topic)
        self._stale.discard(topic)
        return self.request("unsubscribe", {"topic": topic}, timeout)

    def position(self, topic: str) -> dict[str, Any] | None:
        """The last ``{"offset", "epoch"}`` delivered on ``topic`` (None: none yet)."""
        cursor = self._cursors.get(topic)
        return None if cursor is None else cursor.since()

    def _resubscribe(self, topic: str, deadline: float | None) -> None:
        """Send ``subscribe`` with ``since``; its answer is handled when it comes.

        If it cannot be sent (the deadline passed while a server error was being
        dispatched, say), the topic is left stale: the next :meth:`recv` sends it.
        """
        cursor = self._cursors[topic]
        data: dict[str, Any] = {"topic": topic}
        since = cursor.since()
        if since is not None:
            data["since"] = since

        def answered(msg: dict[str, Any]) -> None:
            self._resubscribing.discard(topic)
            if self._cursors.get(topic) is not cursor:
                return
            if msg["type"] == "error":
                error = PubSubError.from_data(msg["data"])
                if error.temporary:
                    self._stale.add(topic)  # the next recv tries again
                else:
                    del self._cursors[topic]
                self._inbox.append(error)
                return
            try:
                lost = cursor.on_ack(msg["data"])
            except PubSubError as exc:
                self._inbox.append(exc)
                return
            if lost:
                self._inbox.append(ResyncNeeded(topic, msg["data"]))

        self._resubscribing.add(topic)
        try:
            self._send("subscribe", data, answered,
                       deadline if deadline is not None else self._deadline(None),
                       reconnect=False)
        except BaseException:
            # Not sent: never answered, so it must not stay "resubscribing" (that would
            # stall the topic for good, its messages being ignored meanwhile).
            self._resubscribing.discard(topic)
            self._stale.add(topic)
            raise

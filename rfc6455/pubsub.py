"""Pub/sub on one process: topics, history and recovery, presence (docs/protocol.md).

Strategy: :class:`PubSubApp` is an :class:`~rfc6455.envelope.EnvelopeApp` whose routes
talk to a :class:`~rfc6455.broker.Broker` (the in-process one by default). The process
holds **one** broker subscription per topic with local subscribers, whatever their
number; each publication is encoded and framed **once** (the payload's JSON text is
spliced in, never decoded) and the same bytes are queued to every live subscriber
with :meth:`~rfc6455.WebSocket.queue_frame`, so a slow subscriber costs only its own
write buffer (the server's slow-consumer policy closes it) and never delays others.

A subscription goes through :class:`~rfc6455.broker.CatchUp` until its history read
is in: subscribe to the broker (or join the live subscription), read the history
(since the client's position, or just the epoch and newest offset), send the ack,
then the replayed publications, then the live ones, each offset once and in order.
After that the subscriber is on the fast path. A gap (the broker lost publications)
is never silent: the client gets an ``unavailable`` error naming the topic and is
unsubscribed, so it resubscribes with ``since``.

Authentication (:mod:`rfc6455.auth`): with an :class:`~rfc6455.auth.Auth`, the handshake's
token is checked twice, by :meth:`PubSubApp.check_request` (a bad one is a 401 before the
101) and again in ``on_open`` (the request is not kept between the two: nothing to leak
when the handshake fails later, for a 503 say); a ``connect`` envelope may bring it later.
Every topic request checks the identity's patterns, then ``authorize``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Hashable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from ._endpoint import WebSocket
from ._errors import HandshakeError
from ._frames import frame_header
from ._handshake import UpgradeRequest
from .auth import Auth, AuthError, Credentials, Identity
from .broker import (
    Broker,
    BrokerError,
    CatchUp,
    ClientInfo,
    HistoryResult,
    Listener,
    Position,
    PresenceChange,
    PresenceResult,
    Publication,
)
from .envelope import LATER, EnvelopeApp, EnvelopeError, Request, encode
from .permessage_deflate import compress_message

__all__ = ["TOPIC_PATTERN", "Authorizer", "PubSubApp", "message_text"]

#: docs/protocol.md: 1-128 characters of letters, digits and ``_ - . : / @ #``.
TOPIC_PATTERN = re.compile(r"[A-Za-z0-9_\-.:/@#]{1,128}")

#: ``authorize(ws, action, topic)``: may this connection ``subscribe``, ``publish`` or
#: read ``presence``/``history`` of ``topic``? Return False (or raise EnvelopeError) to refuse.
Authorizer = Callable[[WebSocket, str, str], bool]


def message_text(pub: Publication) -> str:
    """The ``message`` envelope of ``pub``: the payload spliced in as published."""
    return (
        f'{{"v":1,"type":"message","ts":{pub.ts},"data":{{"topic":{json.dumps(pub.topic)},'
        f'"payload":{pub.payload_json},"offset":{pub.offset},"epoch":"{pub.epoch}"}}}}'
    )


def _frame(text: str) -> bytes:
    payload = text.encode("utf-8")
    return frame_header(0x81, len(payload)) + payload


class _Client:
    """What the app knows of one connection."""

    __slots__ = ("id", "identity", "topics", "user")

    def __init__(self, identity: Identity | None) -> None:
        self.id = secrets.token_hex(8)
        self.identity = identity
        self.user = identity.user if identity is not None else None
        #: topic -> the CatchUp while catching up, None once live.
        self.topics: dict[str, CatchUp | None] = {}

    def info(self) -> ClientInfo:
        return ClientInfo(self.id, self.user)


class _Topic:
    """The local subscribers of one topic and the broker subscription that feeds them."""

    __slots__ = ("active", "listener", "live", "name", "starting", "waiting")

    def __init__(self, name: str, listener: Listener) -> None:
        self.name = name
        self.listener = listener
        #: Subscribers on the fast path (caught up), with their ``compression_key``.
        self.live: dict[WebSocket, Hashable | None] = {}
        #: Subscribers still catching up, each with its CatchUp.
        self.waiting: dict[WebSocket, CatchUp] = {}
        #: False until the broker confirms the subscription.
        self.active = False
        #: Subscribe requests waiting for that confirmation.
        self.starting: list[tuple[Request, CatchUp, Position | None]] = []

    def empty(self) -> bool:
        return not self.live and not self.waiting


class PubSubApp(EnvelopeApp):
    """Topics, publications with history and recovery, presence, join/leave.

    Args:
        broker: where publications go and come from (e.g. ``InProcessBroker(loop)``).
        join_leave: topic patterns (``fnmatch``) whose subscribers get ``join`` and
            ``leave`` messages.
        authorize: called for ``subscribe``, ``publish``, ``history`` and
            ``presence``; False refuses with ``forbidden``.
        auth: how clients authenticate (tokens, identities, topic patterns); None:
            everyone is anonymous. Give :meth:`check_request` to the server's
            ``Config.check_request`` so that a bad token is refused at the handshake.
        max_size: the envelope limit (``too_large`` above it).
    """

    __slots__ = ("_authorize", "_clients", "_join_leave", "_topics", "auth", "broker", "stats")

    def __init__(
        self,
        broker: Broker,
        *,
        join_leave: Sequence[str] = (),
        authorize: Authorizer | None = None,
        auth: Auth | None = None,
        max_size: int = 64 * 1024,
    ) -> None:
        super().__init__(max_size=max_size)
        self.broker = broker
        self._join_leave = tuple(join_leave)
        self._authorize = authorize
        self.auth = auth
        self._clients: dict[WebSocket, _Client] = {}
        self._topics: dict[str, _Topic] = {}
        #: Counters for /metrics (:meth:`metrics_text`).
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "publishes",
                "deliveries",
                "recovered",
                "not_recovered",
                "gaps",
                "unauthorized",
                "forbidden",
                "shared_compressions",
            ),
            0,
        )
        for kind, route in (
            ("connect", self._connect),
            ("subscribe", self._subscribe),
            ("unsubscribe", self._unsubscribe),
            ("publish", self._publish),
            ("history", self._history),
            ("presence", self._presence),
        ):
            self.add_route(kind, route)

    # -- connections ---------------------------------------------------------------

    def check_request(self, request: UpgradeRequest) -> None:
        """For ``Config.check_request``: refuse a handshake whose token is not valid
        (401 with ``WWW-Authenticate: Bearer``); without ``auth`` it accepts all."""
        if self.auth is not None:
            try:
                self.auth.check_handshake(request)
            except HandshakeError:
                self.stats["unauthorized"] += 1
                raise

    def on_open(self, ws: WebSocket) -> None:
        identity = None
        auth, request = self.auth, ws.request
        if auth is not None and isinstance(request, UpgradeRequest):
            credentials = auth.credentials(request)
            if credentials is not None:
                try:
                    identity = auth.identify(credentials)
                except AuthError:
                    pass  # expired since check_request: anonymous, it may send connect
        self._clients[ws] = _Client(identity)

    def identity(self, ws: WebSocket) -> Identity | None:
        """The identity ``ws`` authenticated as, None if anonymous (for ``authorize``)."""
        client = self._clients.get(ws)
        return client.identity if client is not None else None

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        client = self._clients.pop(ws, None)
        if client is not None:
            for topic in list(client.topics):
                self._leave(ws, client, topic)

    @property
    def topics(self) -> int:
        """Topics with local subscribers."""
        return len(self._topics)

    @property
    def subscriptions(self) -> int:
        """Subscriptions of local connections, all topics together."""
        return sum(len(t.live) + len(t.waiting) for t in self._topics.values())

    def metrics_text(self, incidents: Mapping[str, int] | None = None) -> str:
        """The app's counters in the Prometheus text format, for ``Server(extra_metrics=)``.

        ``incidents`` (``Server.incidents()``) gives the slow consumers dropped: on a
        pub/sub server, the subscribers that could not keep up with their topics.
        """
        stats = self.stats
        slow = (incidents or {}).get("slow_consumer", 0)
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, values: Mapping[str, int]) -> None:
            lines.append(f"# HELP rfc6455_pubsub_{name} {help_}")
            lines.append(f"# TYPE rfc6455_pubsub_{name} {kind}")
            for labels, value in values.items():
                lines.append(f"rfc6455_pubsub_{name}{labels} {value}")

        metric("topics", "gauge", "Topics with local subscribers.", {"": self.topics})
        metric("subscriptions", "gauge", "Subscriptions of local connections.",
               {"": self.subscriptions})
        metric("publishes_total", "counter", "Publications accepted by the broker.",
               {"": stats["publishes"]})
        metric("deliveries_total", "counter", "Messages queued to subscribers.",
               {"": stats["deliveries"]})
        metric("slow_subscribers_dropped_total", "counter",
               "Connections closed as slow consumers (1008).", {"": slow})
        metric("recoveries_total", "counter", "Subscriptions with since, by result.", {
            '{result="recovered"}': stats["recovered"],
            '{result="not_recovered"}': stats["not_recovered"],
        })
        metric("shared_compressions_total", "counter",
               "Publications compressed once for a group of subscribers.",
               {"": stats["shared_compressions"]})
        metric("gaps_total", "counter", "Subscriptions interrupted by lost publications.",
               {"": stats["gaps"]})
        metric("auth_refusals_total", "counter", "Requests and handshakes refused, by code.", {
            '{code="unauthorized"}': stats["unauthorized"],
            '{code="forbidden"}': stats["forbidden"],
        })
        return "\n".join(lines) + "\n"

    # -- routes --------------------------------------------------------------------

    def _client(self, request: Request) -> _Client:
        client = self._clients.get(request.ws)
        if client is None:
            raise EnvelopeError("unavailable", "the connection is closing")
        return client

    def _topic_of(self, request: Request, action: str) -> str:
        topic: str = request.field("topic", str)
        if not TOPIC_PATTERN.fullmatch(topic):
            raise EnvelopeError("bad_envelope", "data.topic is not a valid topic name")
        if self.auth is not None:
            identity = self._client(request).identity
            if identity is None and self.auth.required:
                self.stats["unauthorized"] += 1
                raise EnvelopeError(
                    "unauthorized", "authenticate first: a token in the handshake or in connect"
                )
            if identity is not None and not identity.allows(action, topic):
                self.stats["forbidden"] += 1
                raise EnvelopeError("forbidden", f"not allowed to {action} {topic}")
        if self._authorize is not None and not self._authorize(request.ws, action, topic):
            self.stats["forbidden"] += 1
            raise EnvelopeError("forbidden", f"not allowed to {action} {topic}")
        return topic

    @staticmethod
    def _since(request: Request) -> Position | None:
        since = request.field("since", dict, required=False)
        if since is None:
            return None
        offset, epoch = since.get("offset"), since.get("epoch")
        if type(offset) is not int or offset < 0 or not isinstance(epoch, str):
            raise EnvelopeError(
                "bad_envelope", "data.since must be {offset: integer >= 0, epoch: string}"
            )
        return Position(offset, epoch)

    def _connect(self, request: Request) -> dict[str, Any]:
        client = self._client(request)
        token = request.field("token", str, required=False)
        auth = self.auth
        if auth is not None:
            if token is not None:
                try:
                    identity = auth.identify(Credentials(token, "connect"))
                except AuthError as exc:
                    self.stats["unauthorized"] += 1
                    raise EnvelopeError("unauthorized", str(exc)) from None
                if client.user is not None and identity.user != client.user:
                    self.stats["forbidden"] += 1
                    raise EnvelopeError(
                        "forbidden", "this connection is authenticated as another user"
                    )
                client.identity, client.user = identity, identity.user  # or a fresh token
            elif client.identity is None and auth.required:
                self.stats["unauthorized"] += 1
                raise EnvelopeError("unauthorized", "a token is required")
        data: dict[str, Any] = {"client": client.id}
        if client.user is not None:
            data["user"] = client.user
        return data

    def _subscribe(self, request: Request) -> Any:
        client = self._client(request)
        topic = self._topic_of(request, "subscribe")
        since = self._since(request)
        ws = request.ws
        if topic in client.topics:
            self._leave(ws, client, topic)  # resubscribing starts over from `since`
        t = self._topics.get(topic)
        if t is None:
            t = self._topics[topic] = _Topic(topic, self._listener(topic))
            self.broker.subscribe(topic, t.listener, lambda result: self._activated(t, result))
        catch_up = CatchUp(
            since,
            lambda pub: self._emit(ws, pub),
            lambda reason: self._gap(ws, topic, reason),
        )
        t.waiting[ws] = catch_up
        client.topics[topic] = catch_up
        if t.active:
            self._read_history(request, t, catch_up, since)
        else:
            t.starting.append((request, catch_up, since))
        return LATER

    def _activated(self, t: _Topic, result: None | BrokerError) -> None:
        starting, t.starting = t.starting, []
        if isinstance(result, BrokerError):
            for request, _, _ in starting:
                client = self._clients.get(request.ws)
                if client is not None:
                    self._leave(request.ws, client, t.name)
                request.fail(EnvelopeError("unavailable", result.message))
            return
        t.active = True
        for request, catch_up, since in starting:
            if t.waiting.get(request.ws) is catch_up:
                self._read_history(request, t, catch_up, since)

    def _read_history(
        self, request: Request, t: _Topic, catch_up: CatchUp, since: Position | None
    ) -> None:
        ws = request.ws

        def done(result: HistoryResult | BrokerError) -> None:
            if t.waiting.get(ws) is not catch_up:
                return  # unsubscribed or closed meanwhile
            if isinstance(result, BrokerError):
                client = self._clients.get(ws)
                if client is not None:
                    self._leave(ws, client, t.name)
                request.fail(EnvelopeError("unavailable", result.message))
                return
            ack: dict[str, Any] = {"topic": t.name, "offset": result.offset, "epoch": result.epoch}
            if since is not None:
                ack["recovered"] = result.recovered
                ack["replayed"] = len(result.publications) if result.recovered else 0
                self.stats["recovered" if result.recovered else "not_recovered"] += 1
            request.ack(ack)
            catch_up.history(result)
            if t.waiting.get(ws) is catch_up:  # no gap: on to the fast path
                del t.waiting[ws]
                t.live[ws] = ws.compression_key
                client = self._clients.get(ws)
                if client is not None:
                    client.topics[t.name] = None
                    self._joined(ws, client, t.name)

        self.broker.history(t.name, since, None if since is not None else 0, done)

    def _unsubscribe(self, request: Request) -> dict[str, Any]:
        client = self._client(request)
        topic = request.field("topic", str)
        if topic in client.topics:
            self._leave(request.ws, client, topic)
        return {"topic": topic}

    def _publish(self, request: Request) -> Any:
        topic = self._topic_of(request, "publish")
        if "payload" not in request.data:
            raise EnvelopeError("bad_envelope", "data.payload is required")
        payload_json = json.dumps(request.data["payload"], separators=(",", ":"),
                                  ensure_ascii=False)
        try:
            payload_json.encode("utf-8")  # JSON lets "\ud800" through; UTF-8 does not
        except UnicodeEncodeError:
            raise EnvelopeError("bad_envelope", "data.payload has a lone surrogate") from None

        def done(result: Publication | BrokerError) -> None:
            if isinstance(result, BrokerError):
                request.fail(EnvelopeError("unavailable", result.message))
            else:
                self.stats["publishes"] += 1
                request.ack({"topic": topic, "offset": result.offset, "epoch": result.epoch})

        self.broker.publish(topic, payload_json, done)
        return LATER

    def _history(self, request: Request) -> Any:
        topic = self._topic_of(request, "history")
        since = self._since(request)
        limit = request.field("limit", int, required=False)
        if limit is not None and limit < 0:
            raise EnvelopeError("bad_envelope", "data.limit must be >= 0")

        def done(result: HistoryResult | BrokerError) -> None:
            if isinstance(result, BrokerError):
                request.fail(EnvelopeError("unavailable", result.message))
                return
            request.ack({
                "topic": topic,
                "offset": result.offset,
                "epoch": result.epoch,
                "messages": [
                    {"offset": p.offset, "payload": json.loads(p.payload_json), "ts": p.ts}
                    for p in result.publications
                ],
                "complete": result.complete,
            })

        self.broker.history(topic, since, limit, done)
        return LATER

    def _presence(self, request: Request) -> Any:
        topic = self._topic_of(request, "presence")

        def done(result: PresenceResult | BrokerError) -> None:
            if isinstance(result, BrokerError):
                request.fail(EnvelopeError("unavailable", result.message))
                return
            clients = [
                {"client": c.client, **({"user": c.user} if c.user is not None else {})}
                for c in result.clients
            ]
            request.ack({"topic": topic, "count": result.count, "clients": clients})

        self.broker.presence(topic, done)
        return LATER

    # -- delivery ------------------------------------------------------------------

    def _listener(self, topic: str) -> Listener:
        def listener(item: Publication | PresenceChange | BrokerError) -> None:
            t = self._topics.get(topic)
            if t is None:
                return
            if isinstance(item, PresenceChange):
                self._announce(item)
                return
            if isinstance(item, BrokerError):
                # Publications may be lost: every subscriber must resynchronize.
                for ws in list(t.live):
                    self._gap(ws, topic, item.message)
                for catch_up in list(t.waiting.values()):
                    catch_up.live(item)
                return
            if t.live:
                self._fan_out(t, message_text(item))
            for catch_up in list(t.waiting.values()):
                catch_up.live(item)

        return listener

    def _fan_out(self, t: _Topic, text: str) -> None:
        """Queue one publication to every live subscriber: encoded and framed once, and
        compressed once per group of subscribers that compress alike without context
        takeover (the others get the uncompressed frame, valid by RFC 7692 §6)."""
        payload = text.encode("utf-8")
        plain = frame_header(0x81, len(payload)) + payload
        frames: dict[Hashable, bytes] = {}
        sent = 0
        for ws, key in t.live.items():
            if key is None:
                frame = plain
            else:
                frame = frames.get(key, b"")
                if not frame:
                    rsv, data = compress_message(payload, key)  # type: ignore[arg-type]
                    frame = frames[key] = frame_header(0x81 | rsv, len(data)) + data
                    self.stats["shared_compressions"] += 1
            if ws.queue_frame(frame):
                sent += 1
        self.stats["deliveries"] += sent

    def _emit(self, ws: WebSocket, pub: Publication) -> None:
        if ws.open:
            self.stats["deliveries"] += 1
            ws.send(message_text(pub))

    def _gap(self, ws: WebSocket, topic: str, reason: str) -> None:
        self.stats["gaps"] += 1
        if ws.open:
            ws.send(encode("error", {
                "code": "unavailable",
                "message": f"subscription interrupted: {reason}",
                "temporary": True,
                "topic": topic,
            }))
        client = self._clients.get(ws)
        if client is not None and topic in client.topics:
            self._leave(ws, client, topic)

    # -- presence --------------------------------------------------------------------

    def _announces(self, topic: str) -> bool:
        return any(fnmatchcase(topic, pattern) for pattern in self._join_leave)

    def _joined(self, ws: WebSocket, client: _Client, topic: str) -> None:
        # The broker announces the join to the topic's listeners, in every process that
        # shares it (workers over Redis): see _announce.
        self.broker.presence_join(topic, client.info(), announce=self._announces(topic))

    def _leave(self, ws: WebSocket, client: _Client, topic: str) -> None:
        if topic not in client.topics:
            return
        was_live = client.topics.pop(topic) is None  # only live subscribers joined presence
        t = self._topics.get(topic)
        if t is None:
            return
        t.live.pop(ws, None)
        t.waiting.pop(ws, None)
        if was_live:
            self.broker.presence_leave(topic, client.id, announce=self._announces(topic))
        if t.empty() and not t.starting:
            del self._topics[topic]
            self.broker.unsubscribe(topic, t.listener)

    def _announce(self, change: PresenceChange) -> None:
        """A ``join`` or ``leave`` (from the broker: this process's clients or another's)
        to the topic's live subscribers here, but the client it is about."""
        t = self._topics.get(change.topic)
        if t is None or not t.live:
            return
        info = change.info
        who: dict[str, Any] = {"client": info.client}
        if info.user is not None:
            who["user"] = info.user
        frame = _frame(encode(change.kind, {"topic": change.topic, "client": who}))
        clients = self._clients
        for ws in t.live:
            client = clients.get(ws)
            if client is None or client.id != info.client:
                ws.queue_frame(frame)

"""Tests for rfc6455.pubsub_client (loop) and rfc6455.pubsub_sync_client (blocking), over
real sockets against PubSubApp, through a TCP proxy that can cut every connection."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest

from rfc6455 import Config, ConnectionClosed, Loop, Server, WebSocket, WebSocketError
from rfc6455.broker import BrokerError, Callback, HistoryPolicy, InProcessBroker, Listener
from rfc6455.envelope import SUBPROTOCOL
from rfc6455.pubsub import PubSubApp
from rfc6455.pubsub_client import (
    Cursor,
    Meta,
    PubSubClient,
    PubSubError,
    Reply,
    ResyncNeeded,
    SyncPubSubClient,
    Verdict,
)
from rfc6455.sync_client import SyncWebSocket

FAST = {"initial_delay": 0.05, "max_delay": 0.2}


@contextmanager
def pubsub_server(history: int = 1000, broker_class: type[InProcessBroker] = InProcessBroker,
                  **options: Any) -> Iterator[Server]:
    loop = Loop()
    broker = broker_class(loop, default_policy=HistoryPolicy(history, None))
    app = PubSubApp(broker, **options)
    config = Config(port=0, subprotocols=(SUBPROTOCOL,), shutdown_timeout=2.0)
    server = Server(config, handler=app, loop=loop)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()
        loop.close()


class Proxy:
    """A TCP proxy on 127.0.0.1, one thread: ``cut()`` resets every connection,
    ``hold()`` refuses new ones, ``stall()`` stops forwarding client -> server."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.peers: dict[socket.socket, socket.socket] = {}
        self.wake_r, self.wake_w = socket.socketpair()
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.commands: list[str] = []
        self.lock = threading.Lock()
        self.held = False
        self.stalled = False
        self.accepted = 0
        self.cuts = 0
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def command(self, name: str) -> None:
        with self.lock:
            self.commands.append(name)
        self.wake_w.send(b"x")

    def cut(self) -> None:
        self.command("cut")

    def hold(self, on: bool = True) -> None:
        self.command("hold" if on else "release")

    def stall(self, on: bool = True) -> None:
        self.command("stall" if on else "unstall")

    def close(self) -> None:
        self.command("quit")
        self.thread.join(10)
        assert not self.thread.is_alive()

    def _drop(self, sock: socket.socket) -> None:
        other = self.peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self.peers.pop(s, None)
            try:
                self.selector.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
            s.close()

    def _apply(self, name: str) -> None:
        if name == "cut":
            self.cuts += 1
            for sock in list(self.peers):
                self._drop(sock)
        elif name in ("hold", "release"):
            self.held = name == "hold"
        elif name in ("stall", "unstall"):
            self.stalled = name == "stall"
            for client in [s for s in self.peers if s.getsockname()[1] == self.port]:
                events = 0 if self.stalled else selectors.EVENT_READ
                if events:
                    self.selector.register(client, events)
                else:
                    self.selector.unregister(client)
        elif name == "quit":
            self.running = False

    def run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.wake_r:
                    sock.recv(4096)
                    with self.lock:
                        commands, self.commands = self.commands, []
                    for name in commands:
                        self._apply(name)
                elif sock is self.listener:
                    try:
                        client, _ = self.listener.accept()
                    except BlockingIOError:
                        continue
                    if self.held:
                        client.close()
                        continue
                    self.accepted += 1
                    server = socket.create_connection(self.upstream, timeout=5)
                    client.setblocking(True)
                    self.peers[client] = server
                    self.peers[server] = client
                    if not self.stalled:
                        self.selector.register(client, selectors.EVENT_READ)
                    self.selector.register(server, selectors.EVENT_READ)
                elif sock in self.peers:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(sock)
                        continue
                    try:
                        self.peers[sock].sendall(data)  # blocking: small test volumes
                    except OSError:
                        self._drop(sock)
        for sock in list(self.peers):
            self._drop(sock)
        self.selector.close()
        self.listener.close()
        self.wake_r.close()
        self.wake_w.close()


@contextmanager
def proxied(server: Server) -> Iterator[Proxy]:
    proxy = Proxy(server.port)
    try:
        yield proxy
    finally:
        proxy.close()


def direct(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def run_until(loop: Loop, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    assert loop.run_until(predicate, timeout=timeout), "timed out"


# -- Cursor: the no-gap, no-duplicate rule, without sockets --------------------------


def test_cursor_delivers_each_offset_once_and_flags_gaps() -> None:
    cursor = Cursor()
    assert cursor.since() is None
    assert cursor.check("e", 1) is Verdict.DUPLICATE  # no ack yet: not ours
    assert cursor.on_ack({"topic": "t", "offset": 4, "epoch": "e"}) is False
    assert cursor.check("e", 4) is Verdict.DUPLICATE
    assert cursor.check("e", 5) is Verdict.DELIVER
    assert cursor.check("e", 5) is Verdict.DUPLICATE
    assert cursor.check("e", 7) is Verdict.GAP
    assert cursor.check("f", 6) is Verdict.GAP  # another epoch: never compared
    assert cursor.since() == {"offset": 5, "epoch": "e"}
    assert cursor.on_ack({"offset": 9, "epoch": "e", "recovered": True}) is False
    assert cursor.since() == {"offset": 5, "epoch": "e"}  # the replay comes next
    assert cursor.on_ack({"offset": 9, "epoch": "e", "recovered": False}) is True
    assert cursor.since() == {"offset": 9, "epoch": "e"}
    assert cursor.on_ack({"offset": 0, "epoch": "g", "recovered": True}) is True
    with pytest.raises(PubSubError):
        cursor.on_ack({"topic": "t"})


# -- the loop client -----------------------------------------------------------------


def publish_in_thread(url: str, topic: str, count: int,
                      at: dict[int, Callable[[], None]] | None = None) -> threading.Thread:
    """Publish ``count`` messages from another connection; ``at[i]()`` after the i-th."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with SyncPubSubClient(url, timeout=10) as pub:
                for i in range(1, count + 1):
                    assert pub.publish(topic, {"n": i})["offset"] == i
                    if at and i in at:
                        at[i]()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_loop_client_sees_every_offset_once_across_two_cuts() -> None:
    with pubsub_server() as server, proxied(server) as proxy, Loop() as loop:
        seen: list[int] = []
        payloads: list[Any] = []
        resyncs: list[Any] = []
        connects: list[WebSocket] = []

        def on_message(payload: Any, meta: Meta) -> None:
            assert meta.topic == "feed" and isinstance(meta.epoch, str)
            seen.append(meta.offset)
            payloads.append(payload)

        client = PubSubClient(loop, proxy.url, on_resync=lambda t, a: resyncs.append(a),
                              on_connect=connects.append, **FAST)
        client.start()
        first = client.subscribe("feed", on_message)
        run_until(loop, lambda: first.done)
        assert first.result()["offset"] == 0
        # cut at 100 and 200; at 150 and 250 wait until the client is back (so that
        # the two cuts hit two connections), while the publications keep coming
        thread = publish_in_thread(direct(server), "feed", 300, {
            100: proxy.cut, 150: lambda: wait_for(lambda: len(connects) >= 2),
            200: proxy.cut, 250: lambda: wait_for(lambda: len(connects) >= 3)})
        run_until(loop, lambda: len(seen) >= 300 and not thread.is_alive(), timeout=60)
        thread.join(10)
        assert not thread.errors  # type: ignore[attr-defined]
        assert seen == list(range(1, 301))
        assert payloads == [{"n": i} for i in range(1, 301)]
        assert proxy.cuts == 2 and len(connects) >= 3 and client.reconnecting.connections >= 3
        assert resyncs == []
        assert client.position("feed") == {"offset": 300, "epoch": first.result()["epoch"]}
        client.stop()
        run_until(loop, lambda: not client.connected)


def test_loop_client_resyncs_when_the_history_no_longer_reaches_back() -> None:
    with pubsub_server(history=5) as server, proxied(server) as proxy, Loop() as loop:
        seen: list[int] = []
        resyncs: list[tuple[str, dict[str, Any]]] = []
        client = PubSubClient(loop, proxy.url, on_resync=lambda t, a: resyncs.append((t, a)),
                              **FAST)
        client.start()
        first = client.subscribe("room", lambda p, m: seen.append(m.offset))
        run_until(loop, lambda: first.done)
        with SyncPubSubClient(direct(server)) as pub:
            for _ in range(3):
                pub.publish("room", "x")
            run_until(loop, lambda: len(seen) == 3)
            proxy.hold()
            proxy.cut()
            run_until(loop, lambda: not client.connected)
            for _ in range(20):  # offsets 4..23; the history keeps 19..23
                pub.publish("room", "y")
            proxy.hold(False)
            run_until(loop, lambda: bool(resyncs))
            topic, ack = resyncs[0]
            assert topic == "room" and ack["recovered"] is False and ack["offset"] == 23
            pub.publish("room", "live")
            run_until(loop, lambda: len(seen) == 4)
        assert seen == [1, 2, 3, 24]  # never a silent skip: the resync came between
        client.stop()


def test_loop_client_without_on_resync_reports_to_on_error() -> None:
    with pubsub_server(history=2) as server, Loop() as loop:
        errors: list[BaseException] = []
        with SyncPubSubClient(direct(server)) as pub:
            epoch = pub.publish("t", 1)["epoch"]
            for _ in range(5):
                pub.publish("t", 2)
        client = PubSubClient(loop, direct(server), **FAST)
        client.start()
        reply = client.subscribe("t", lambda p, m: None, on_error=errors.append,
                                 since={"offset": 1, "epoch": epoch})
        run_until(loop, lambda: bool(errors))
        assert isinstance(errors[0], ResyncNeeded) and errors[0].topic == "t"
        assert reply.result()["recovered"] is False
        client.stop()


def test_loop_client_correlates_replies_with_interleaved_messages() -> None:
    with pubsub_server() as server, Loop() as loop:
        seen: list[tuple[int, Any]] = []
        client = PubSubClient(loop, direct(server), **FAST)
        client.start()  # requests made before the connection opens wait for it
        sub = client.subscribe("mix", lambda p, m: seen.append((m.offset, p)))
        run_until(loop, lambda: sub.done)
        replies: list[Reply] = []
        for i in range(50):
            replies.append(client.publish("mix", i))
            if i % 10 == 0:
                replies.append(client.history("mix", limit=2))
                replies.append(client.presence("mix"))
        called: list[Reply] = []
        last = client.publish("mix", "end", callback=called.append)
        run_until(loop, lambda: last.done and len(seen) == 51)
        publishes = [r for r in replies if r.kind == "publish"]
        assert [r.result()["offset"] for r in publishes] == list(range(1, 51))
        assert called == [last] and last.result()["offset"] == 51
        for r in replies:
            if r.kind == "presence":
                assert r.result()["count"] == 1
            elif r.kind == "history":
                assert len(r.result()["messages"]) <= 2
        assert seen == [(i + 1, i) for i in range(50)] + [(51, "end")]
        assert client.client_id is not None
        client.stop()


def test_loop_client_request_timeout_and_connection_loss() -> None:
    with pubsub_server() as server, proxied(server) as proxy, Loop() as loop:
        client = PubSubClient(loop, proxy.url, **FAST)
        client.start()
        run_until(loop, lambda: client.connected)
        proxy.stall()
        time.sleep(0.2)
        late = client.publish("t", "late", timeout=0.3)
        run_until(loop, lambda: late.done)
        assert isinstance(late.error, TimeoutError)
        with pytest.raises(TimeoutError):
            late.result()
        lost = client.publish("t", "lost", timeout=10)
        proxy.cut()
        run_until(loop, lambda: lost.done)
        assert isinstance(lost.error, ConnectionClosed)  # in flight: failed, not resent
        proxy.stall(False)
        run_until(loop, lambda: client.connected)
        after = client.publish("t", "after")
        run_until(loop, lambda: after.done)
        # "late" and "lost" were stalled in the proxy: they never reached the server,
        # and the client did not resend them behind the application's back.
        assert after.result()["offset"] == 1
        history = client.history("t")
        run_until(loop, lambda: history.done)
        assert [m["payload"] for m in history.result()["messages"]] == ["after"]
        client.stop()


def test_loop_client_maps_errors_and_drops_refused_subscriptions() -> None:
    def authorize(ws: WebSocket, action: str, topic: str) -> bool:
        return topic != "secret"

    with pubsub_server(authorize=authorize) as server, Loop() as loop:
        client = PubSubClient(loop, direct(server), **FAST)
        client.start()
        errors: list[BaseException] = []
        sub = client.subscribe("secret", lambda p, m: None, on_error=errors.append)
        bad = client.publish("has space", 1)
        forbidden = client.publish("secret", 1)
        unknown = client.request("nope", {})
        run_until(loop, lambda: sub.done and bad.done and forbidden.done and unknown.done
                  and bool(errors))
        for reply, code in ((sub, "forbidden"), (bad, "bad_envelope"),
                            (forbidden, "forbidden"), (unknown, "unknown_type")):
            assert isinstance(reply.error, PubSubError) and reply.error.code == code
            assert isinstance(reply.error, WebSocketError) and reply.error.temporary is False
        assert isinstance(errors[0], PubSubError) and errors[0].code == "forbidden"
        assert client.position("secret") is None  # a permanent refusal ends it
        client.stop()


def test_loop_client_unsubscribe_stops_delivery() -> None:
    with pubsub_server() as server, Loop() as loop:
        seen: list[int] = []
        client = PubSubClient(loop, direct(server), **FAST)
        client.start()
        sub = client.subscribe("u", lambda p, m: seen.append(m.offset))
        run_until(loop, lambda: sub.done)
        one = client.publish("u", 1)
        run_until(loop, lambda: one.done and len(seen) == 1)
        off = client.unsubscribe("u")
        two = client.publish("u", 2)
        run_until(loop, lambda: off.done and two.done)
        assert off.result() == {"topic": "u"} and seen == [1]
        client.stop()


# -- the blocking client -------------------------------------------------------------


def test_sync_client_basics_and_errors() -> None:
    def authorize(ws: WebSocket, action: str, topic: str) -> bool:
        return topic != "secret"

    with pubsub_server(authorize=authorize) as server, \
            SyncPubSubClient(direct(server), timeout=5) as c:
        ack = c.subscribe("s")
        assert ack["offset"] == 0
        for i in range(3):
            assert c.publish("s", {"i": i})["offset"] == i + 1  # messages interleave
        got = [c.recv(timeout=5) for _ in range(3)]
        assert [(p.topic, p.offset, p.payload) for p in got] == [
            ("s", i + 1, {"i": i}) for i in range(3)]
        assert got[0].epoch == ack["epoch"] and got[0].meta.offset == 1
        assert [m["offset"] for m in c.history("s", limit=2)["messages"]] == [2, 3]
        assert c.presence("s")["count"] == 1
        with pytest.raises(TimeoutError):
            c.recv(timeout=0.2)
        for call, code in ((lambda: c.publish("secret", 1), "forbidden"),
                           (lambda: c.subscribe("bad topic"), "bad_envelope"),
                           (lambda: c.request("nope", {}), "unknown_type")):
            with pytest.raises(PubSubError) as info:
                call()
            assert info.value.code == code and info.value.temporary is False
        assert c.position("bad topic") is None
        assert c.unsubscribe("s") == {"topic": "s"}


def test_sync_client_recv_reconnects_without_gap_or_duplicate() -> None:
    with pubsub_server() as server, proxied(server) as proxy:
        sub = SyncPubSubClient(proxy.url, timeout=10, **FAST)
        sub.subscribe("feed")
        thread = publish_in_thread(direct(server), "feed", 150, {50: proxy.cut, 100: proxy.cut})
        got = [sub.recv(timeout=30) for _ in range(150)]
        assert proxy.cuts == 2
        thread.join(10)
        assert [p.offset for p in got] == list(range(1, 151))
        assert [p.payload for p in got] == [{"n": i} for i in range(1, 151)]
        assert sub.connections >= 2
        with pytest.raises(TimeoutError):
            sub.recv(timeout=0.3)
        sub.close()


def test_sync_client_timeout_then_lost_request_then_resync() -> None:
    with pubsub_server(history=5) as server, proxied(server) as proxy:
        c = SyncPubSubClient(proxy.url, timeout=10, **FAST)
        c.subscribe("r")
        proxy.stall()
        time.sleep(0.2)
        with pytest.raises(TimeoutError):
            c.publish("r", "late", timeout=0.3)
        proxy.cut()
        with pytest.raises(ConnectionClosed):
            c.publish("r", "lost", timeout=5)  # sent into a dead connection: not resent
        proxy.stall(False)
        with SyncPubSubClient(direct(server)) as pub:
            for _ in range(10):
                pub.publish("r", "missed")
            resyncs: list[dict[str, Any]] = []
            c.on_resync = lambda topic, ack: resyncs.append(ack)
            c.reconnect()  # resubscribes with since: offset 0, history starts at 6
            assert resyncs == []  # queued in stream order, handed out by recv
            pub.publish("r", "live")
            got = c.recv(timeout=5)
        assert resyncs and resyncs[0]["recovered"] is False
        assert (got.offset, got.payload) == (11, "live")
        c.close()


def test_sync_client_resync_raises_without_callback() -> None:
    with pubsub_server(history=2) as server, SyncPubSubClient(direct(server)) as pub:
        epoch = pub.publish("q", 0)["epoch"]
        for i in range(5):
            pub.publish("q", i)
        c = SyncPubSubClient(direct(server), auto_reconnect=False)
        ack = c.subscribe("q", since={"offset": 1, "epoch": epoch})
        assert ack["recovered"] is False
        with pytest.raises(ResyncNeeded) as info:
            c.recv(timeout=5)
        assert info.value.topic == "q" and info.value.ack["offset"] == 6
        pub.publish("q", "next")
        assert c.recv(timeout=5).offset == 7
        c.close()
        with pytest.raises(ConnectionClosed):
            c.recv(timeout=1)


class LossyBroker(InProcessBroker):
    """Remembers its listeners (in ``last``), so that a test can tell them that
    publications were lost, as the Redis broker does after a restart without data."""

    last: ClassVar[dict[str, tuple[Loop, Listener]]] = {}

    def subscribe(self, topic: str, listener: Listener,
                  callback: Callback[None] | None = None) -> None:
        LossyBroker.last[topic] = (self._loop, listener)
        super().subscribe(topic, listener, callback)

    @staticmethod
    def lose(topic: str) -> None:
        """(From any thread.) The topic's listener hears that publications were lost."""
        loop, listener = LossyBroker.last[topic]
        loop.call_soon_threadsafe(listener, BrokerError("Redis restarted without its data"))


def test_sync_client_renews_an_interrupted_subscription_after_a_late_dispatch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server interrupts a subscription (``error unavailable`` naming the topic) and
    the client dispatches it only after the deadline of its ``recv`` (a busy machine):
    the resubscription it could not send then is sent by the next ``recv``."""
    with pubsub_server(broker_class=LossyBroker) as server, \
            SyncPubSubClient(direct(server), timeout=5) as pub, \
            SyncPubSubClient(direct(server), timeout=5) as c:
        c.subscribe("g")
        pub.publish("g", 1)
        assert c.recv(timeout=5).offset == 1
        recv = SyncWebSocket.recv
        late: list[bool] = [True]

        def late_recv(ws: SyncWebSocket, timeout: float | None = None) -> Any:
            start = time.monotonic()
            text = recv(ws, timeout=timeout)
            if late and timeout is not None and "unavailable" in str(text):
                late.clear()
                time.sleep(max(0.0, start + timeout - time.monotonic()) + 0.05)
            return text

        monkeypatch.setattr(SyncWebSocket, "recv", late_recv)
        LossyBroker.lose("g")
        with pytest.raises(TimeoutError):
            c.recv(timeout=5)  # dispatched after its deadline
        assert not late
        pub.publish("g", 2)
        got = c.recv(timeout=5)  # resubscribed with since: the replay
        assert (got.offset, got.payload) == (2, 2)
        assert c.position("g") == {"offset": 2, "epoch": got.epoch}


def test_sync_client_connect_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:  # accepts, never answers
        port = held.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            SyncPubSubClient(f"ws://127.0.0.1:{port}/", timeout=0.5, max_delay=0.1)
        assert time.monotonic() - started < 5


def test_both_clients_survive_cuts_in_quick_succession() -> None:
    """Cuts every 20 publications, some landing while a client is resubscribing; the loop
    client runs on its loop in another thread meanwhile."""
    with pubsub_server() as server, proxied(server) as proxy, Loop() as loop:
        seen: list[int] = []
        client = PubSubClient(loop, proxy.url, **FAST)
        subscribed = threading.Event()

        def setup() -> None:
            client.start()
            client.subscribe("storm", lambda p, m: seen.append(m.offset)).add_callback(
                lambda reply: subscribed.set())

        loop.call_soon_threadsafe(setup)
        runner = threading.Thread(target=loop.run_forever, daemon=True)
        runner.start()
        try:
            assert subscribed.wait(30)
            sync = SyncPubSubClient(proxy.url, timeout=10, **FAST)
            sync.subscribe("storm")
            thread = publish_in_thread(direct(server), "storm", 200,
                                       {i: proxy.cut for i in range(20, 200, 20)})
            got = [sync.recv(timeout=30).offset for _ in range(200)]
            wait_for(lambda: len(seen) >= 200 and not thread.is_alive(), timeout=60)
        finally:
            loop.call_soon_threadsafe(client.stop)
            loop.call_soon_threadsafe(loop.stop)
            runner.join(10)
        assert not thread.errors  # type: ignore[attr-defined]
        assert got == list(range(1, 201))
        assert seen == list(range(1, 201))
        wait_for(lambda: proxy.cuts == 9)
        assert client.reconnecting.connections >= 2 and sync.connections >= 2
        sync.close()

"""Tests for rfc6455.pubsub over real sockets (docs/protocol.md): topics, offsets and
epochs, recovery with no gap and no duplicate, presence, join/leave, history, errors."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rfc6455 import Config, Loop, Server, SyncWebSocket, WebSocket, connect
from rfc6455.broker import InProcessBroker
from rfc6455.envelope import SUBPROTOCOL
from rfc6455.pubsub import PubSubApp, message_text

_ids = itertools.count(1)


@contextmanager
def pubsub_server(**options: Any) -> Iterator[tuple[Server, PubSubApp]]:
    loop = Loop()
    app = PubSubApp(InProcessBroker(loop), **options)
    config = Config(port=0, subprotocols=(SUBPROTOCOL,), shutdown_timeout=2.0)
    server = Server(config, handler=app, loop=loop)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, app
    finally:
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()
        loop.close()


class Client:
    """A blocking envelope client: requests with ids, and the messages in between."""

    def __init__(self, server: Server) -> None:
        self.ws: SyncWebSocket = connect(
            f"ws://127.0.0.1:{server.port}/", subprotocols=[SUBPROTOCOL]
        )
        assert self.ws.subprotocol == SUBPROTOCOL
        self.inbox: list[dict[str, Any]] = []

    def send(self, kind: str, data: dict[str, Any] | None = None, *, rid: str | None = None
             ) -> None:
        obj: dict[str, Any] = {"v": 1, "type": kind, "data": data or {}}
        if rid is not None:
            obj["id"] = rid
        self.ws.send(json.dumps(obj))

    def request(self, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = f"r{next(_ids)}"
        self.send(kind, data, rid=rid)
        while True:
            msg = json.loads(self.ws.recv(timeout=5))
            if msg.get("re") == rid:
                return msg
            self.inbox.append(msg)

    def messages(self, n: int, topic: str | None = None) -> list[dict[str, Any]]:
        """The next ``n`` ``message``s (of ``topic``), those already received first."""
        got = [m for m in self.inbox if m["type"] == "message"]
        self.inbox = [m for m in self.inbox if m["type"] != "message"]
        while len(got) < n:
            msg = json.loads(self.ws.recv(timeout=5))
            if msg["type"] == "message":
                got.append(msg)
            else:
                self.inbox.append(msg)
        if topic is not None:
            assert {m["data"]["topic"] for m in got} == {topic}
        return got

    def nothing_more(self) -> None:
        with pytest.raises(TimeoutError):
            msg = self.ws.recv(timeout=0.3)
            pytest.fail(f"unexpected {msg}")

    def close(self) -> None:
        self.ws.close()


def offsets(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["offset"] for m in messages]


def test_subscribe_publish_receive() -> None:
    with pubsub_server() as (server, _):
        sub, pub = Client(server), Client(server)
        ack = sub.request("subscribe", {"topic": "news"})
        assert ack["type"] == "ack" and ack["data"]["topic"] == "news"
        assert ack["data"]["offset"] == 0 and isinstance(ack["data"]["epoch"], str)
        epoch = ack["data"]["epoch"]
        for i in range(3):
            got = pub.request("publish", {"topic": "news", "payload": {"n": i, "s": "é"}})
            assert got["type"] == "ack"
            assert got["data"] == {"topic": "news", "offset": i + 1, "epoch": epoch}
        msgs = sub.messages(3, "news")
        assert [m["data"]["payload"] for m in msgs] == [{"n": i, "s": "é"} for i in range(3)]
        assert offsets(msgs) == [1, 2, 3]
        assert {m["data"]["epoch"] for m in msgs} == {epoch}
        assert all(isinstance(m["ts"], int) for m in msgs)
        sub.close()
        pub.close()


def test_subscribers_get_exactly_their_topics_in_order() -> None:
    with pubsub_server() as (server, app):
        topics = [f"t{i}" for i in range(5)]
        subs = [(Client(server), topics[i % 5]) for i in range(200)]
        for client, topic in subs:
            assert client.request("subscribe", {"topic": topic})["type"] == "ack"
        assert app.subscriptions == 200 and app.topics == 5
        publisher = Client(server)
        for round_ in range(10):
            for topic in topics:
                publisher.send("publish", {"topic": topic, "payload": [topic, round_]})
        publisher.request("ping")
        for client, topic in subs:
            msgs = client.messages(10, topic)
            assert offsets(msgs) == list(range(1, 11))
            assert [m["data"]["payload"] for m in msgs] == [[topic, r] for r in range(10)]
        for client, _ in subs[:5]:  # one per topic: nothing of the other topics came
            client.nothing_more()
        for client, _ in subs:
            client.close()
        publisher.close()


def test_recovery_replays_each_missed_message_once_then_live() -> None:
    with pubsub_server() as (server, app):
        sub, pub = Client(server), Client(server)
        epoch = sub.request("subscribe", {"topic": "feed"})["data"]["epoch"]
        for i in range(3):
            pub.send("publish", {"topic": "feed", "payload": i})
        seen = sub.messages(3, "feed")
        sub.close()
        for i in range(3, 53):  # missed while away
            pub.send("publish", {"topic": "feed", "payload": i})
        pub.request("ping")
        back = Client(server)
        ack = back.request("subscribe", {"topic": "feed", "since": {"offset": 3, "epoch": epoch}})
        assert ack["data"]["recovered"] is True and ack["data"]["replayed"] == 50
        assert ack["data"]["offset"] == 53
        pub.send("publish", {"topic": "feed", "payload": 53})
        got = back.messages(51, "feed")
        assert offsets(seen + got) == list(range(1, 55))
        assert [m["data"]["payload"] for m in got] == list(range(3, 54))
        back.nothing_more()
        assert app.stats["recovered"] == 1
        back.close()
        pub.close()


def test_recovery_while_publishes_race_the_replay() -> None:
    with pubsub_server() as (server, _):
        pub = Client(server)
        first = Client(server)
        epoch = first.request("subscribe", {"topic": "race"})["data"]["epoch"]
        first.close()
        for i in range(40):
            pub.send("publish", {"topic": "race", "payload": i})
        stop = threading.Event()

        def publish_more() -> None:
            other = Client(server)
            for i in range(40, 90):
                other.send("publish", {"topic": "race", "payload": i})
            other.request("ping")
            other.close()
            stop.set()

        thread = threading.Thread(target=publish_more)
        thread.start()
        back = Client(server)
        ack = back.request("subscribe", {"topic": "race", "since": {"offset": 0, "epoch": epoch}})
        assert ack["data"]["recovered"] is True
        thread.join(10)
        assert stop.is_set()
        got = back.messages(90, "race")
        assert offsets(got) == list(range(1, 91))  # no gap, no duplicate
        assert [m["data"]["payload"] for m in got] == list(range(90))
        back.nothing_more()
        back.close()
        pub.close()


@pytest.mark.parametrize("since", [{"offset": 1, "epoch": "another"}, {"offset": 99}])
def test_unrecoverable_since_says_so(since: dict[str, Any]) -> None:
    with pubsub_server() as (server, _):
        pub = Client(server)
        for i in range(3):
            pub.send("publish", {"topic": "x", "payload": i})
        epoch = pub.request("history", {"topic": "x"})["data"]["epoch"]
        since = {"epoch": epoch, **since}
        sub = Client(server)
        ack = sub.request("subscribe", {"topic": "x", "since": since})
        assert ack["data"]["recovered"] is False and ack["data"]["replayed"] == 0
        pub.send("publish", {"topic": "x", "payload": "live"})
        msgs = sub.messages(1, "x")
        assert offsets(msgs) == [4]
        sub.close()
        pub.close()


def test_unsubscribe_stops_delivery() -> None:
    with pubsub_server() as (server, app):
        sub, pub = Client(server), Client(server)
        sub.request("subscribe", {"topic": "a"})
        assert sub.request("unsubscribe", {"topic": "a"})["data"] == {"topic": "a"}
        pub.request("publish", {"topic": "a", "payload": 1})
        sub.nothing_more()
        assert app.topics == 0
        sub.close()
        pub.close()


def test_presence_and_join_leave() -> None:
    with pubsub_server(join_leave=["room:*"]) as (server, _):
        alice, bob = Client(server), Client(server)
        alice_id = alice.request("connect")["data"]["client"]
        bob_id = bob.request("connect")["data"]["client"]
        alice.request("subscribe", {"topic": "room:1"})
        bob.request("subscribe", {"topic": "room:1"})
        joined = [m for m in alice.inbox if m["type"] == "join"]
        if not joined:
            joined = [json.loads(alice.ws.recv(timeout=5))]
        assert joined[0]["data"] == {"topic": "room:1", "client": {"client": bob_id}}
        presence = bob.request("presence", {"topic": "room:1"})["data"]
        assert presence["count"] == 2
        assert {c["client"] for c in presence["clients"]} == {alice_id, bob_id}
        bob.close()
        left = json.loads(alice.ws.recv(timeout=5))
        assert (left["type"], left["data"]["client"]["client"]) == ("leave", bob_id)
        assert alice.request("presence", {"topic": "room:1"})["data"]["count"] == 1
        alice.close()


def test_history() -> None:
    with pubsub_server() as (server, _):
        c = Client(server)
        for i in range(5):
            c.send("publish", {"topic": "h", "payload": {"i": i}})
        full = c.request("history", {"topic": "h"})["data"]
        assert [m["offset"] for m in full["messages"]] == [1, 2, 3, 4, 5]
        assert full["messages"][0]["payload"] == {"i": 0} and full["complete"] is True
        since = c.request(
            "history", {"topic": "h", "since": {"offset": 3, "epoch": full["epoch"]}}
        )["data"]
        assert [m["offset"] for m in since["messages"]] == [4, 5]
        c.close()


@pytest.mark.parametrize(
    ("kind", "data", "code"),
    [
        ("subscribe", {}, "bad_envelope"),
        ("subscribe", {"topic": "has space"}, "bad_envelope"),
        ("subscribe", {"topic": "x" * 129}, "bad_envelope"),
        ("subscribe", {"topic": "ok", "since": {"offset": -1, "epoch": "e"}}, "bad_envelope"),
        ("subscribe", {"topic": "ok", "since": {"offset": 1}}, "bad_envelope"),
        ("publish", {"topic": "ok"}, "bad_envelope"),
        ("history", {"topic": "ok", "limit": -1}, "bad_envelope"),
        ("subscribe", {"topic": "secret"}, "forbidden"),
        ("publish", {"topic": "secret", "payload": 1}, "forbidden"),
        ("nope", {}, "unknown_type"),
    ],
)
def test_errors(kind: str, data: dict[str, Any], code: str) -> None:
    def authorize(ws: WebSocket, action: str, topic: str) -> bool:
        return topic != "secret"

    with pubsub_server(authorize=authorize) as (server, _):
        c = Client(server)
        reply = c.request(kind, data)
        assert reply["type"] == "error" and reply["data"]["code"] == code
        assert c.request("ping")["type"] == "pong"  # still connected
        c.close()


def test_message_text_splices_the_payload() -> None:
    from rfc6455.broker import Publication

    text = message_text(Publication("t\"q", 7, "ab", '{"k":[1,2]}', 123))
    assert json.loads(text) == {
        "v": 1, "type": "message", "ts": 123,
        "data": {"topic": 't"q', "payload": {"k": [1, 2]}, "offset": 7, "epoch": "ab"},
    }


def test_serve_app_pubsub_from_the_command_line() -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    refused = subprocess.run(
        [sys.executable, "-m", "rfc6455", "serve", "--app", "pubsub", "--workers", "2"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert refused.returncode != 0 and "--redis" in refused.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfc6455", "serve", "--port", "0", "--app", "pubsub",
         "--history-size", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        port = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not port:
            match = re.search(r"listening on ws://[\d.]+:(\d+)", proc.stdout.readline())
            if match:
                port = int(match.group(1))
        assert port
        ws = connect(f"ws://127.0.0.1:{port}/", subprotocols=[SUBPROTOCOL])
        for i in range(8):
            ws.send(json.dumps({"v": 1, "type": "publish", "data": {"topic": "t", "payload": i}}))
        ws.send(json.dumps({"v": 1, "type": "history", "id": "h", "data": {"topic": "t"}}))
        reply = json.loads(ws.recv(timeout=10))
        assert [m["payload"] for m in reply["data"]["messages"]] == [3, 4, 5, 6, 7]
        ws.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_slow_subscriber_is_closed_by_policy_and_the_others_keep_up() -> None:
    import socket
    import time

    from rfc6455 import ClientHandshake

    loop = Loop()
    app = PubSubApp(InProcessBroker(loop))
    config = Config(
        port=0, subprotocols=(SUBPROTOCOL,), shutdown_timeout=2.0, compression=False,
        write_buffer_limit=256 * 1024, write_buffer_timeout=0.5, close_timeout=1.0,
    )
    server = Server(config, handler=app, loop=loop)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The slow one: subscribes, then never reads again (small receive buffer).
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        hs = ClientHandshake(f"127.0.0.1:{server.port}", "/", subprotocols=[SUBPROTOCOL])
        slow.sendall(hs.request_bytes())
        conn = None
        while conn is None:
            hs.receive_data(slow.recv(4096))
            if hs.next_event().__class__.__name__ == "HandshakeAccepted":
                conn = hs.connection
        slow.sendall(conn.send_text(json.dumps(
            {"v": 1, "type": "subscribe", "id": "s", "data": {"topic": "big"}})))
        # The slow subscription must be in before the flood: wait for its ack (a sleep is
        # not enough on a loaded machine), then never read again.
        slow.settimeout(10)
        acked = b""
        while b'"type":"ack"' not in acked:
            chunk = slow.recv(4096)
            assert chunk, "the server closed the slow subscriber before its ack"
            acked += chunk
        fast, publisher = Client(server), Client(server)
        fast.request("subscribe", {"topic": "big"})
        payload = "x" * 16_000
        # The kernel's send buffer toward the slow one grows with TCP autotuning (up to
        # tcp_wmem's maximum, several MiB) before the server's own buffer fills: publish in
        # rounds of 3.2 MB until the policy has closed it (at most 20 rounds, 64 MB).
        got: list[dict[str, Any]] = []
        for round_ in range(20):
            started = time.monotonic()
            for i in range(200):
                publisher.send("publish", {"topic": "big", "payload": [i, payload]})
            got += fast.messages(200, "big")
            assert time.monotonic() - started < 30  # the fast one keeps up meanwhile
            deadline = time.monotonic() + 2
            while server.incidents()["slow_consumer"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            if server.incidents()["slow_consumer"]:
                break
        # The fast one got everything, in order.
        assert offsets(got) == list(range(1, len(got) + 1))
        assert server.incidents()["slow_consumer"] >= 1
        fast.close()
        publisher.close()
        slow.close()
    finally:
        server.shutdown()
        thread.join(10)
        loop.close()


def test_subscribers_without_context_takeover_share_one_compressed_frame() -> None:
    from rfc6455.permessage_deflate import ClientPerMessageDeflate

    with pubsub_server() as (server, app):
        url = f"ws://127.0.0.1:{server.port}/"
        shared = [
            connect(url, subprotocols=[SUBPROTOCOL],
                    extensions=[ClientPerMessageDeflate(server_no_context_takeover=True)])
            for _ in range(3)
        ]
        plain = connect(url, subprotocols=[SUBPROTOCOL], compression=False)
        takeover = connect(url, subprotocols=[SUBPROTOCOL])  # context takeover: not shared
        everyone = [*shared, plain, takeover]
        for i, ws in enumerate(everyone):
            ws.send(json.dumps({"v": 1, "type": "subscribe", "id": f"s{i}",
                                "data": {"topic": "z"}}))
            assert json.loads(ws.recv(timeout=5))["type"] == "ack"
        text = "compressible " * 200
        publisher = Client(server)
        for n in range(3):
            publisher.request("publish", {"topic": "z", "payload": [n, text]})
        for ws in everyone:
            got = [json.loads(ws.recv(timeout=5)) for _ in range(3)]
            assert [m["data"]["payload"] for m in got] == [[n, text] for n in range(3)]
            assert [m["data"]["offset"] for m in got] == [1, 2, 3]
            ws.close()
        assert app.stats["shared_compressions"] == 3  # once per publication, for the three
        publisher.close()


def test_a_payload_with_a_lone_surrogate_is_refused_not_lost() -> None:
    with pubsub_server() as (server, _):
        sub, pub = Client(server), Client(server)
        sub.request("subscribe", {"topic": "s"})
        pub.ws.send('{"v":1,"type":"publish","id":"x","data":{"topic":"s","payload":"\\ud800"}}')
        reply = json.loads(pub.ws.recv(timeout=5))
        assert (reply["type"], reply["data"]["code"]) == ("error", "bad_envelope")
        pub.request("publish", {"topic": "s", "payload": "fine"})
        assert offsets(sub.messages(1, "s")) == [1]
        sub.close()
        pub.close()

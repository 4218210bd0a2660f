"""``serve --app pubsub`` scaled out over a real Redis: N workers on one port
(``--workers 2 --redis URL``), and two servers on different loopback addresses sharing one
Redis, behave as one service: every subscriber gets every publication once, in order, with the
same offsets and epoch wherever it is connected, and recovers on the other server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_servers import RedisServer
from test_workers import Service, _env, _wait_gone

from rfc6455.pubsub_sync_client import SyncPubSubClient

LISTENING = re.compile(r"listening on ws://([\d.]+):(\d+)")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc to find which worker holds a connection")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def _connections_per_worker(pids: list[int], port: int) -> dict[int, int]:
    """How many established connections to ``port`` each process holds (from /proc)."""
    inodes: set[str] = set()
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    counts = {}
    for pid in pids:
        held = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[pid] = held
    return counts


def _check_stream(subscribers: list[SyncPubSubClient], topic: str, count: int) -> None:
    """Each got publications 1..count of ``topic``, once, in order, with one epoch."""
    epochs = set()
    for client in subscribers:
        got = [client.recv(timeout=30) for _ in range(count)]
        assert [p.payload for p in got] == [{"n": i} for i in range(count)]
        assert [p.offset for p in got] == [got[0].offset + i for i in range(count)]
        epochs.update(p.epoch for p in got)
        with pytest.raises(TimeoutError):
            client.recv(timeout=0.3)  # nothing twice
    assert len(epochs) == 1


def test_pubsub_workers_share_topics_through_redis(redis_server: RedisServer) -> None:
    service = Service("--workers", "2", "--app", "pubsub", "--redis", redis_server.url)
    clients: list[SyncPubSubClient] = []
    try:
        url, pids = service.ready()
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        # subscribers until both workers hold some (the kernel spreads them by hash)
        for _ in range(60):
            client = SyncPubSubClient(url, timeout=10)
            clients.append(client)
            client.subscribe("news")
            counts = _connections_per_worker(pids, port)
            if len(clients) >= 6 and min(counts.values()) >= 2:
                break
        assert min(_connections_per_worker(pids, port).values()) >= 2
        publisher = SyncPubSubClient(url, timeout=10)
        for i in range(40):
            publisher.publish("news", {"n": i})
        _check_stream(clients, "news", 40)
        publisher.close()
    finally:
        for client in clients:
            client.close()
        service.proc.send_signal(signal.SIGTERM)
        try:
            assert service.proc.wait(timeout=60) == 0
        finally:
            service.stop()
    assert _wait_gone(service.seen_pids) == set()


class _Host:
    """``serve --app pubsub --redis URL`` on one loopback address."""

    def __init__(self, host: str, redis_url: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rfc6455", "serve", "--app", "pubsub", "--host", host,
             "--port", "0", "--redis", redis_url, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        self.url = ""
        while not self.url and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            match = LISTENING.search(line)
            if match:
                self.url = f"ws://{match.group(1)}:{match.group(2)}/"
        assert self.url.startswith(f"ws://{host}:"), "the server did not start"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_two_hosts_sharing_one_redis_are_one_service(redis_server: RedisServer) -> None:
    hosts: list[_Host] = []
    clients: list[SyncPubSubClient] = []
    try:
        hosts = [_Host("127.0.0.2", redis_server.url), _Host("127.0.0.3", redis_server.url)]
        a, b = hosts
        on_a = SyncPubSubClient(a.url, timeout=10)
        on_b = SyncPubSubClient(b.url, timeout=10)
        clients += [on_a, on_b]
        on_a.subscribe("room")
        on_b.subscribe("room")
        publisher = SyncPubSubClient(a.url, timeout=10)
        clients.append(publisher)
        for i in range(20):
            publisher.publish("room", {"n": i})
        _check_stream([on_a, on_b], "room", 20)

        # A subscriber of host A leaves, publications go on, it comes back on host B with
        # ``since``: it gets exactly what it missed.
        position = on_a.position("room")
        assert position is not None
        on_a.close()
        for i in range(20, 30):
            publisher.publish("room", {"n": i})
        back = SyncPubSubClient(b.url, timeout=10)
        clients.append(back)
        ack = back.subscribe("room", since=position)
        assert ack.get("recovered") is True, ack
        got = [back.recv(timeout=30) for _ in range(10)]
        assert [p.payload for p in got] == [{"n": i} for i in range(20, 30)]
        assert got[0].offset == position["offset"] + 1
        with pytest.raises(TimeoutError):
            back.recv(timeout=0.3)
        assert [on_b.recv(timeout=30).payload for _ in range(10)] == [
            {"n": i} for i in range(20, 30)
        ]
    finally:
        for client in clients:
            client.close()
        for host in hosts:
            host.stop()
    for host in hosts:
        assert host.proc.returncode == 0


def test_join_and_leave_reach_subscribers_on_the_other_host(redis_server: RedisServer) -> None:
    """``--join-leave``: a client that subscribes on host B is announced to a subscriber
    on host A (through Redis), and so is its leave when it disconnects."""
    import json

    import rfc6455
    from rfc6455.envelope import SUBPROTOCOL

    def request(ws: rfc6455.SyncWebSocket, kind: str, data: dict[str, object]) -> None:
        ws.send(json.dumps({"v": 1, "type": kind, "id": kind, "data": data}))

    def next_of(ws: rfc6455.SyncWebSocket, kind: str) -> dict[str, object]:
        deadline = time.monotonic() + 20
        while True:
            msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg["type"] == kind:
                data: dict[str, object] = msg["data"]
                return data

    hosts: list[_Host] = []
    try:
        hosts = [_Host("127.0.0.2", redis_server.url, "--join-leave", "room*"),
                 _Host("127.0.0.3", redis_server.url, "--join-leave", "room*")]
        a, b = hosts
        with rfc6455.connect(a.url, subprotocols=[SUBPROTOCOL], timeout=10) as on_a:
            request(on_a, "subscribe", {"topic": "room"})
            assert next_of(on_a, "ack")
            with rfc6455.connect(b.url, subprotocols=[SUBPROTOCOL], timeout=10) as on_b:
                request(on_b, "connect", {})
                me = next_of(on_b, "ack")["client"]
                request(on_b, "subscribe", {"topic": "room"})
                assert next_of(on_b, "ack")
                assert next_of(on_a, "join") == {"topic": "room", "client": {"client": me}}
            assert next_of(on_a, "leave") == {"topic": "room", "client": {"client": me}}
    finally:
        for host in hosts:
            host.stop()

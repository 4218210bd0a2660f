"""Pub/sub across server processes through a real Redis (one node and a 3-master cluster).

Two ``python -m rfc6455 serve --app pubsub --redis URL`` processes on two ports: a
publisher on one, subscribers on the other, with the library's own sync client. Redis is
SIGKILLed mid-stream and restarted with persistence (nothing acknowledged is lost or
duplicated, WebSocket connections stay up) and without it (``recovered: false``), and a
slow Redis behind a delaying proxy must not stall the loop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_servers import RedisCluster, RedisServer, need_redis

from rfc6455.envelope import SUBPROTOCOL
from rfc6455.pubsub_client import PubSubError
from rfc6455.pubsub_sync_client import SyncPubSubClient
from rfc6455.sync_client import connect

ROOT = Path(__file__).resolve().parent.parent


class Serve:
    """One ``rfc6455 serve --app pubsub`` process on a free port; stopped by its PID."""

    def __init__(self, *flags: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rfc6455", "serve", "--app", "pubsub", "--port", "0",
             "--log-level", "INFO", "--ping-interval", "0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.output: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            match = re.search(r"listening on ws://[\d.]+:(\d+)", line)
            if match:
                self.url = f"ws://127.0.0.1:{match.group(1)}/"
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.stop()
        raise AssertionError("the server did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self) -> int:
        """SIGTERM (SIGKILL after 20 s); the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def metrics(self) -> dict[str, float]:
        """``/metrics``, as ``{name: value}`` (unlabelled samples)."""
        with urllib.request.urlopen(self.url.replace("ws:", "http:") + "metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        return {name: float(value)
                for name, value in re.findall(r"^(\w+) (\S+)$", text, re.MULTILINE)}


@pytest.fixture
def serve() -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*flags: str) -> Serve:
        server = Serve(*flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Backend:
    """A single Redis or a cluster, with what the tests need to kill and restart it."""

    def __init__(self, tmp: Path, kind: str, persistent: bool) -> None:
        need_redis()
        self.kind = kind
        self.persistent = persistent
        self.cluster = RedisCluster(tmp, persistent=persistent) if kind == "cluster" else None
        self.single = RedisServer(tmp / "single", persistent=persistent) if kind == "single" \
            else None

    @property
    def flags(self) -> list[str]:
        if self.cluster is not None:
            return ["--redis", self.cluster.urls[0], "--redis-cluster"]
        assert self.single is not None
        return ["--redis", self.single.url]

    def node_of(self, topic: str) -> RedisServer:
        if self.cluster is not None:
            return self.cluster.node_of("{" + topic + "}")
        assert self.single is not None
        return self.single

    def topics(self) -> list[str]:
        """One topic per master (one topic on a single node)."""
        if self.cluster is None:
            return ["news"]
        chosen: dict[int, str] = {}
        for i in range(100):
            name = f"room-{i}"
            chosen.setdefault(self.node_of(name).port, name)
            if len(chosen) == 3:
                return list(chosen.values())
        raise AssertionError("no topic for some master")

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.single is not None:
            self.single.stop()


@pytest.fixture(params=["single", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(tmp_path: Path, kind: str) -> Iterator[Backend]:
    b = Backend(tmp_path, kind, persistent=True)
    yield b
    b.stop()


def recv_all(client: SyncPubSubClient, n: int, timeout: float = 20.0,
             errors: list[BaseException] | None = None) -> list[Any]:
    """``n`` publications; temporary errors (while Redis is away) are collected."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(got)} of {n}")
        try:
            got.append(client.recv(timeout=left))
        except PubSubError as exc:
            if errors is None or not exc.temporary:
                raise
            errors.append(exc)
    return got


# -- two servers, one Redis --------------------------------------------------------------


def test_two_servers_behave_as_one(serve: Callable[..., Serve], backend: Backend) -> None:
    a, b = serve(*backend.flags), serve(*backend.flags)
    topics = backend.topics()
    per_topic = 200 // len(topics)
    subscribers: list[tuple[str, SyncPubSubClient]] = []
    try:
        for i in range(per_topic * len(topics)):
            client = SyncPubSubClient(b.url, timeout=10)
            t = topics[i % len(topics)]
            client.subscribe(t)
            subscribers.append((t, client))
        publisher = SyncPubSubClient(a.url, timeout=10)
        acks: dict[str, list[tuple[int, str, int]]] = {t: [] for t in topics}
        for n in range(30):
            for t in topics:
                ack = publisher.publish(t, {"n": n})
                acks[t].append((ack["offset"], ack["epoch"], n))
        for t, client in subscribers:
            got = recv_all(client, 30)
            assert [(p.offset, p.epoch, p.payload["n"]) for p in got] == acks[t]
            assert client.connections == 1
        for t in topics:
            assert [o for o, _, _ in acks[t]] == list(range(1, 31))
        # A subscriber of b leaves after 10, reconnects to a with `since`: exactly 11..30.
        t = topics[0]
        early = SyncPubSubClient(b.url, timeout=10)
        early.subscribe(t, since={"offset": 0, "epoch": acks[t][0][1]})
        first = recv_all(early, 10)
        position = early.position(t)
        assert position == {"offset": 10, "epoch": acks[t][0][1]}
        early.close()
        late = SyncPubSubClient(a.url, timeout=10)
        ack = late.subscribe(t, since=position)
        assert ack["recovered"] is True and ack["replayed"] == 20
        rest = recv_all(late, 20)
        assert [p.offset for p in first + rest] == list(range(1, 31))
        with pytest.raises(TimeoutError):
            late.recv(timeout=0.3)
        late.close()
        publisher.close()
        metrics = b.metrics()
        assert metrics["rfc6455_broker_redis_errors_total"] == 0
        assert metrics["rfc6455_broker_redis_shards"] == (3 if backend.cluster else 1)
        assert a.stop() == 0 and b.stop() == 0  # SIGTERM: the Redis threads let it exit
    finally:
        for _, client in subscribers:
            client.close()


# -- Redis killed mid-stream -------------------------------------------------------------


class Publisher(threading.Thread):
    """Publishes 0, 1, 2, ... on every topic until told to stop; records what was acked."""

    def __init__(self, url: str, topics: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = SyncPubSubClient(url, timeout=10)
        self.topics = topics
        self.acked: dict[str, list[tuple[str, int, int]]] = {t: [] for t in topics}
        self.refused: list[PubSubError] = []
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            for t in self.topics:
                try:
                    ack = self.client.publish(t, {"n": n}, timeout=10)
                    self.acked[t].append((ack["epoch"], ack["offset"], n))
                except PubSubError as exc:
                    self.refused.append(exc)
                    time.sleep(0.02)
            n += 1
            self.sent = n
            time.sleep(0.005)
        self.client.close()

    def wait_sent(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < n:
            assert time.monotonic() < deadline, "the publisher is stuck"
            time.sleep(0.01)


def _run_kill(serve: Callable[..., Serve], backend: Backend, *, persistent: bool,
              subscribers_per_topic: int = 10) -> None:
    a, b = serve(*backend.flags), serve(*backend.flags)
    topics = backend.topics()
    victim = backend.node_of(topics[0])
    resyncs: list[tuple[str, dict[str, Any]]] = []
    subs: list[tuple[str, SyncPubSubClient]] = []
    for t in topics:
        for i in range(subscribers_per_topic):
            client = SyncPubSubClient((a if i % 2 else b).url, timeout=10,
                                      on_resync=lambda topic, ack: resyncs.append((topic, ack)))
            client.subscribe(t)
            subs.append((t, client))
    publisher = Publisher(a.url, topics)
    publisher.start()
    try:
        publisher.wait_sent(20)
        victim.kill()
        time.sleep(0.3)
        publisher.wait_sent(publisher.sent + 3)  # refused meanwhile
        victim.start(persistent=persistent, wipe=not persistent)
        if backend.cluster is not None:
            backend.cluster.wait_ok()
        publisher.wait_sent(publisher.sent + 20)
    finally:
        publisher.stopping.set()
        publisher.join(15)
    assert publisher.refused, "no publish was refused while Redis was down"
    assert all(e.code == "unavailable" and e.temporary for e in publisher.refused)
    errors: list[BaseException] = []
    try:
        for t, client in subs:
            acks = publisher.acked[t]
            final_epoch, newest = acks[-1][0], acks[-1][1]
            got: list[Any] = []
            deadline = time.monotonic() + 20
            target = {"offset": newest, "epoch": final_epoch}
            while client.position(t) != target:  # after a resync it may start past newest
                left = deadline - time.monotonic()
                assert left > 0, (t, client.position(t), target)
                try:
                    got += recv_all(client, 1, timeout=min(left, 0.2), errors=errors)
                except (TimeoutError, AssertionError):
                    pass  # nothing within 0.2 s: look at the position again
            assert client.connections == 1, "the WebSocket connection was not kept"
            by_epoch: dict[str, list[int]] = {}
            for p in got:
                by_epoch.setdefault(p.epoch, []).append(p.offset)
            for offsets in by_epoch.values():  # no duplicate, no gap within an epoch
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
            if persistent or t != topics[0]:  # this topic's Redis kept its data
                assert list(by_epoch) == [final_epoch] and got[0].offset == 1
                delivered = {p.offset: p.payload["n"] for p in got}
                for epoch, offset, n in acks:  # every acknowledged one, with its payload
                    assert epoch == final_epoch and delivered.get(offset) == n, (t, offset)
                assert len({p.payload["n"] for p in got}) == len(got)  # published once each
    finally:
        for _, client in subs:
            client.close()
    for server in (a, b):
        metrics = server.metrics()
        assert metrics["rfc6455_broker_redis_disconnects_total"] >= 1
        assert metrics["rfc6455_broker_redis_reconnects_total"] >= 1
    assert a.metrics()["rfc6455_broker_redis_errors_total"] >= len(publisher.refused)
    if persistent:
        assert not resyncs and not errors, (resyncs, errors)
    else:
        lost = [topic for topic, ack in resyncs if ack["recovered"] is False]
        assert lost.count(topics[0]) == subscribers_per_topic, resyncs
        assert set(lost) == {topics[0]}


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "volatile"])
def test_redis_killed_mid_stream(serve: Callable[..., Serve], tmp_path: Path, kind: str,
                                 persistent: bool) -> None:
    backend = Backend(tmp_path, kind, persistent=persistent)
    try:
        _run_kill(serve, backend, persistent=persistent)
    finally:
        backend.stop()


# -- a slow Redis --------------------------------------------------------------------------


class DelayProxy:
    """TCP proxy to Redis that holds every reply chunk ``delay`` seconds."""

    def __init__(self, port: int, delay: float) -> None:
        self.upstream = port
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.delay),
                             daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while data := src.recv(65536):
                time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def _echo_latencies(client: SyncPubSubClient, n: int = 15) -> list[float]:
    """Round trips of ``connect`` requests: answered by the loop, no broker involved."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.request("connect", {})
        times.append(time.perf_counter() - start)
    return times


def test_slow_redis_does_not_stall_the_loop(serve: Callable[..., Serve],
                                            tmp_path: Path) -> None:
    need_redis()
    redis = RedisServer(tmp_path / "slow")
    proxy = DelayProxy(redis.port, 0.3)
    try:
        server = serve("--redis", f"redis://127.0.0.1:{proxy.port}/0")
        probe = SyncPubSubClient(server.url, timeout=10)
        baseline = statistics.median(_echo_latencies(probe))
        publisher = SyncPubSubClient(server.url, timeout=30)
        start = time.monotonic()
        ack = publisher.publish("slow", 1)
        assert time.monotonic() - start >= 0.3 and ack["offset"] == 1  # the proxy delays
        flood = connect(server.url, subprotocols=[SUBPROTOCOL])
        for i in range(100):  # keep the broker busy: many publishes in flight
            flood.send(json.dumps({"v": 1, "type": "publish", "id": str(i),
                                   "data": {"topic": "slow", "payload": i}}))
        loaded = _echo_latencies(probe)
        # A loop blocked on Redis would take >= 0.3 s per echo; it stays near the baseline.
        assert statistics.median(loaded) < baseline + 0.1, (baseline, loaded)
        assert sum(t >= 0.3 for t in loaded) <= 2, loaded  # blocked: every one would be
        flood.close()
        publisher.close()
        probe.close()
        server.stop()
    finally:
        proxy.close()
        redis.stop()

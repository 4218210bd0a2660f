"""The Redis broker against real ``redis-server``s (tests/redis_servers.py), one node and a
3-master cluster: every Broker method (offsets, epochs, history windows by count and age,
recovery, presence with expiry), and its faults: Redis killed and restarted with and
without persistence, a slow Redis behind a delaying proxy."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from redis_servers import RedisCluster, RedisServer, free_port, need_redis

from rfc6455._loop import Loop
from rfc6455.broker import (
    BrokerError,
    ClientInfo,
    HistoryPolicy,
    HistoryResult,
    Position,
    PresenceChange,
    PresenceResult,
    Publication,
)
from rfc6455.redis_broker import RedisBroker

TIMEOUT = 10.0


class Results:
    """A callback that records what it got."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def __call__(self, value: Any) -> None:
        self.got.append(value)


def wait(loop: Loop, results: Results, n: int = 1, timeout: float = TIMEOUT) -> list[Any]:
    assert loop.run_until(lambda: len(results.got) >= n, timeout), results.got
    return results.got


def call(loop: Loop, method: Any, *args: Any) -> Any:
    """Call a broker method with a callback; run the loop until it answers."""
    got = Results()
    method(*args, got)
    assert not got.got, "a callback ran inside the call"
    return wait(loop, got)[0]


def ok(value: Any) -> Any:
    assert not isinstance(value, BrokerError), value
    return value


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    need_redis()
    c = RedisCluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture(params=["single", "cluster"])
def urls(request: pytest.FixtureRequest) -> tuple[list[str], bool]:
    if request.param == "single":
        return [request.getfixturevalue("single").url], False
    return request.getfixturevalue("cluster").urls, True


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def make(loop: Loop, urls: tuple[list[str], bool], **kwargs: Any) -> RedisBroker:
    return RedisBroker(loop, urls[0], cluster=urls[1], **kwargs)


@pytest.fixture
def broker(loop: Loop, urls: tuple[list[str], bool]) -> Iterator[RedisBroker]:
    b = make(loop, urls)
    yield b
    b.close()


def topic() -> str:
    return "t-" + secrets.token_hex(6)


def publish(loop: Loop, broker: RedisBroker, name: str, payload: str = '"x"') -> Publication:
    pub = ok(call(loop, broker.publish, name, payload))
    assert isinstance(pub, Publication)
    return pub


def history(loop: Loop, broker: RedisBroker, name: str, since: Position | None = None,
            limit: int | None = None) -> HistoryResult:
    result = ok(call(loop, broker.history, name, since, limit))
    assert isinstance(result, HistoryResult)
    return result


# -- offsets, epochs, history ------------------------------------------------------------


def test_offsets_are_consecutive_in_one_epoch(loop: Loop, broker: RedisBroker) -> None:
    name = topic()
    state = history(loop, broker, name, None, 0)  # a read fixes the epoch
    assert state.offset == 0 and len(state.epoch) == 16 and state.publications == ()
    pubs = [publish(loop, broker, name, f'{{"n":{i}}}') for i in range(5)]
    assert [p.offset for p in pubs] == [1, 2, 3, 4, 5]
    assert {p.epoch for p in pubs} == {state.epoch}
    assert pubs[2].payload_json == '{"n":2}' and pubs[0].ts > 1_600_000_000_000
    got = history(loop, broker, name)
    assert [p.payload_json for p in got.publications] == [p.payload_json for p in pubs]
    assert got.complete and got.offset == 5 and not got.recovered


def test_payload_with_colons_and_unicode_survives(loop: Loop, broker: RedisBroker) -> None:
    name = topic()
    listener = Results()
    assert call(loop, broker.subscribe, name, listener) is None
    payload = '{"a:b":"c:d:e","é":"€ 😀"}'
    publish(loop, broker, name, payload)
    [pub] = wait(loop, listener)
    assert pub.payload_json == payload and pub.offset == 1
    assert history(loop, broker, name).publications[0].payload_json == payload


def test_history_window_by_count_and_recovery_boundaries(loop: Loop,
                                                         urls: tuple[list[str], bool]) -> None:
    b = make(loop, urls, default_policy=HistoryPolicy(3, None))
    try:
        name = topic()
        pubs = [publish(loop, b, name) for _ in range(5)]  # kept: 3, 4, 5
        e = pubs[0].epoch
        got = history(loop, b, name)
        assert [p.offset for p in got.publications] == [3, 4, 5] and got.complete
        exact = history(loop, b, name, Position(2, e))
        assert exact.recovered and exact.complete
        assert [p.offset for p in exact.publications] == [3, 4, 5]
        nothing = history(loop, b, name, Position(5, e))
        assert nothing.recovered and nothing.publications == ()
        for since in (Position(1, e), Position(6, e), Position(4, "0" * 16)):
            lost = history(loop, b, name, since)
            assert not lost.recovered and not lost.complete and lost.publications == ()
        cut = history(loop, b, name, Position(2, e), 2)
        assert cut.recovered and not cut.complete
        assert [p.offset for p in cut.publications] == [3, 4]
        newest = history(loop, b, name, None, 2)
        assert [p.offset for p in newest.publications] == [4, 5] and not newest.complete
        assert history(loop, b, name, None, 0).publications == ()
    finally:
        b.close()


def test_history_window_by_age(loop: Loop, urls: tuple[list[str], bool]) -> None:
    b = make(loop, urls, policies=[("aging-*", HistoryPolicy(100, 0.8))])
    try:
        name = "aging-" + secrets.token_hex(4)
        first = publish(loop, b, name)
        time.sleep(0.9)
        publish(loop, b, name)
        got = history(loop, b, name)
        assert [p.offset for p in got.publications] == [2]  # 1 is 0.8 s old: gone
        assert not history(loop, b, name, Position(0, first.epoch)).recovered
        assert history(loop, b, name, Position(1, first.epoch)).recovered
        time.sleep(0.9)
        empty = history(loop, b, name, Position(2, first.epoch))
        assert empty.recovered and empty.publications == () and empty.offset == 2
        assert history(loop, b, name).publications == ()
    finally:
        b.close()


def test_size_zero_keeps_no_history(loop: Loop, urls: tuple[list[str], bool]) -> None:
    b = make(loop, urls, default_policy=HistoryPolicy(0, None))
    try:
        name = topic()
        pub = publish(loop, b, name)
        publish(loop, b, name)
        assert history(loop, b, name).publications == ()
        assert history(loop, b, name, Position(2, pub.epoch)).recovered
        assert not history(loop, b, name, Position(1, pub.epoch)).recovered
    finally:
        b.close()


def test_two_brokers_share_offsets_and_epoch(loop: Loop, urls: tuple[list[str], bool]) -> None:
    """Two workers: one publishes, the other's listener gets it with the same offset."""
    a, b = make(loop, urls), make(loop, urls)
    try:
        name = topic()
        listener = Results()
        assert call(loop, b.subscribe, name, listener) is None
        pubs = [publish(loop, a, name, str(i)) for i in range(20)]
        got = wait(loop, listener, 20)
        assert [(p.offset, p.epoch, p.payload_json) for p in got] == \
            [(p.offset, p.epoch, p.payload_json) for p in pubs]
        assert history(loop, b, name).offset == 20
    finally:
        a.close()
        b.close()


def test_announced_presence_changes_reach_the_other_workers(
    loop: Loop, urls: tuple[list[str], bool]
) -> None:
    """A join or leave made with ``announce`` reaches the listeners of another broker on
    the same Redis as a PresenceChange (with the user); a refresh, an unannounced join and
    a leave of a client not present do not."""
    a, b = make(loop, urls), make(loop, urls)
    try:
        name = topic()
        listener = Results()
        assert call(loop, b.subscribe, name, listener) is None
        alice = ClientInfo("c1", "alice")
        a.presence_join(name, alice, announce=True)
        [change] = wait(loop, listener)
        assert change == PresenceChange(name, "join", alice)
        assert ok(call(loop, a.presence_join, name, alice)) is False  # a refresh
        a.presence_join(name, ClientInfo("c2", None))  # not announced
        a.presence_leave(name, "nobody", announce=True)  # not present: nothing to tell
        a.presence_leave(name, "c1", announce=True)
        got = wait(loop, listener, 2)
        assert got[1] == PresenceChange(name, "leave", alice)
        publish(loop, a, name)  # presence changes do not disturb the offsets
        got = wait(loop, listener, 3)
        assert isinstance(got[2], Publication) and got[2].offset == 1
        assert len(listener.got) == 3
    finally:
        a.close()
        b.close()


def test_unsubscribe_stops_deliveries_at_once(loop: Loop, broker: RedisBroker) -> None:
    name = topic()
    one, two = Results(), Results()
    assert call(loop, broker.subscribe, name, one) is None
    assert call(loop, broker.subscribe, name, two) is None
    publish(loop, broker, name)
    wait(loop, two)
    broker.unsubscribe(name, one)
    publish(loop, broker, name)
    wait(loop, two, 2)
    assert [p.offset for p in one.got] == [1]


def test_topics_spread_over_every_master(loop: Loop, cluster: RedisCluster) -> None:
    b = RedisBroker(loop, cluster.urls, cluster=True)
    try:
        names = [f"spread-{i}" for i in range(12)]
        shards = {b.shard_name(n) for n in names}
        assert len(shards) == 3
        for n in names:
            assert b.shard_name(n).endswith(f":{cluster.node_of('{' + n + '}').port}")
            publish(loop, b, n)
    finally:
        b.close()


def test_a_moved_slot_is_followed_without_loss(loop: Loop, cluster: RedisCluster) -> None:
    """Resharding while subscribed: Redis drops the subscription and refuses the old node's
    publishes (MOVED); both brokers read the slot map again, subscribe where the slot went
    and recover from the migrated stream: every offset once, no BrokerError."""
    listening, publishing = (RedisBroker(loop, cluster.urls, cluster=True) for _ in range(2))
    try:
        name = "moving-" + secrets.token_hex(4)
        listener = Results()
        assert call(loop, listening.subscribe, name, listener) is None
        for _ in range(5):
            publish(loop, publishing, name)
        wait(loop, listener, 5)
        slot = key_slot(name.encode())
        dst = next(n for n in cluster.nodes if n is not cluster.owner(slot))
        cluster.move_slot(slot, dst)
        refused = 0
        deadline = time.monotonic() + TIMEOUT
        published = 5
        while published < 10:
            assert time.monotonic() < deadline
            result = call(loop, publishing.publish, name, '"after"')
            if isinstance(result, BrokerError):
                assert result.code == "unavailable"
                refused += 1
                loop.run_until(lambda: False, 0.05)
            else:
                published += 1
                assert result.offset == published
        got = wait(loop, listener, 10)
        assert [p.offset for p in got] == list(range(1, 11)), got
        assert len({p.epoch for p in got}) == 1
        loop.run_until(lambda: False, 0.3)
        assert len(listener.got) == 10  # nothing twice
        for b in (listening, publishing):
            assert b.shard_name(name) == f"127.0.0.1:{dst.port}"
            assert b.stats["slot_maps"] >= 1
        assert refused <= 3
    finally:
        listening.close()
        publishing.close()


# -- presence ----------------------------------------------------------------------------


def test_presence_join_leave_and_order(loop: Loop, broker: RedisBroker) -> None:
    name = topic()
    assert ok(call(loop, broker.presence_join, name, ClientInfo("c1", "ann"))) is True
    assert ok(call(loop, broker.presence_join, name, ClientInfo("c1", "ann"))) is False
    time.sleep(0.002)
    assert ok(call(loop, broker.presence_join, name, ClientInfo("c2", None))) is True
    time.sleep(0.002)
    assert ok(call(loop, broker.presence_join, name, ClientInfo("c3", "ann"))) is True
    result = ok(call(loop, broker.presence, name))
    assert isinstance(result, PresenceResult)
    assert [c.client for c in result.clients] == ["c1", "c2", "c3"]
    assert result.count == 3 and result.users == 1
    assert ok(call(loop, broker.presence_leave, name, "c2")) is True
    assert ok(call(loop, broker.presence_leave, name, "c2")) is False
    assert ok(call(loop, broker.presence, name)).count == 2


def test_presence_entries_expire_unless_refreshed(loop: Loop,
                                                  urls: tuple[list[str], bool]) -> None:
    """A worker that dies stops refreshing: its entries expire; a live one keeps its own."""
    live = make(loop, urls, presence_ttl=1.5)
    dead = make(loop, urls, presence_ttl=1.5)
    try:
        name = topic()
        ok(call(loop, live.presence_join, name, ClientInfo("alive", None)))
        ok(call(loop, dead.presence_join, name, ClientInfo("dying", None)))
        dead.close()  # its refresh timer stops
        loop.run_until(lambda: False, 2.0)  # live refreshes every 0.5 s
        result = ok(call(loop, live.presence, name))
        assert [c.client for c in result.clients] == ["alive"]
    finally:
        live.close()
        dead.close()


# -- callbacks, errors, close ------------------------------------------------------------


def test_closed_broker_refuses_and_unreachable_redis_is_unavailable(loop: Loop) -> None:
    dead = RedisBroker(loop, ["redis://127.0.0.1:1/0"])
    try:
        error = call(loop, dead.publish, "t", "1")
        assert isinstance(error, BrokerError) and error.code == "unavailable"
        assert 'rfc6455_broker_redis_errors_total 1' in dead.metrics_text()
    finally:
        dead.close()
    error = call(loop, dead.history, "t", None, None)
    assert isinstance(error, BrokerError) and "closed" in error.message


def test_no_thread_left_after_close(loop: Loop, urls: tuple[list[str], bool]) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    b = make(loop, urls)
    assert call(loop, b.subscribe, topic(), Results()) is None
    b.close()
    after = {t.name for t in threading.enumerate() if t.name.startswith("rfc6455-redis")}
    assert not after - before


# -- TLS -----------------------------------------------------------------------------------


def test_rediss_url_speaks_tls(loop: Loop, tmp_path: Path) -> None:
    """``rediss://``: the broker (command and subscription threads) against a TLS-only
    redis-server whose certificate comes from a throwaway CA, named in the URL
    (``ssl_ca_certs``, redis-py's URL option)."""
    import trustme  # the dev extra (uvicorn's suite needs it too)

    server_bin, _ = need_redis()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    proc = subprocess.Popen(
        [server_bin, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file),
         "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
         "--logfile", str(tmp_path / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}"
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=1) as probe:
                    if probe.ping():
                        break
            except (redis.RedisError, OSError):
                assert time.monotonic() < deadline, "the TLS redis-server did not start"
                time.sleep(0.05)
        # A plain connection to the TLS port gets nowhere: TLS is really in use.
        with pytest.raises((redis.RedisError, OSError)), redis.Redis(
            port=port, socket_timeout=1
        ) as plain:
            plain.ping()
        broker = RedisBroker(loop, [url])
        try:
            name = topic()
            listener = Results()
            assert call(loop, broker.subscribe, name, listener) is None
            pubs = [publish(loop, broker, name, f'{{"n":{i}}}') for i in range(3)]
            assert [p.offset for p in pubs] == [1, 2, 3]
            assert [p.offset for p in wait(loop, listener, 3)] == [1, 2, 3]
            assert [p.payload_json for p in history(loop, broker, name).publications] == [
                '{"n":0}', '{"n":1}', '{"n":2}'
            ]
        finally:
            broker.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

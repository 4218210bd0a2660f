"""The Redis broker: offsets, epochs, history and presence in Redis, shared by every worker.

Strategy: the loop thread owns all the state (topics, listeners, recovery); Redis I/O
runs on two threads per Redis server (``_redis_io``: a command thread that pipelines
the queued script calls, a subscriber thread for the server's one pub/sub
connection), whose results come back with ``loop.call_soon_threadsafe``. Each
operation is one Lua script (``_redis_scripts``): a publish assigns the next offset,
appends to the topic's stream, trims it and ``PUBLISH``\\ es (``SPUBLISH`` on a cluster)
in one atomic step. A worker holds one Redis subscription per topic and checks the
offsets it receives: a hole, another epoch or a lost pub/sub connection makes it read
the topic's stream since the last offset it delivered (through a
:class:`~rfc6455.broker.CatchUp`, so each offset reaches the listeners once, in
order); only what history no longer holds reaches them as a :class:`BrokerError`.
Topics go to shards by their hash slot: the cluster's slot map with
``cluster=True``, else ``slot % len(urls)`` (every worker must list the same URLs
in the same order). docs/broker.md has the mapping, the threads and the faults.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from enum import Enum
from functools import partial
from typing import Any

import redis
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.crc import key_slot

from . import _redis_scripts as scripts
from ._broker_types import (
    DEFAULT_HISTORY_POLICY,
    Broker,
    BrokerError,
    Callback,
    ClientInfo,
    HistoryPolicy,
    HistoryResult,
    Listener,
    PolicyTable,
    Position,
    PresenceChange,
    PresenceResult,
    Publication,
    refuse_closed,
)
from ._loop import Loop, TimerHandle
from ._redis_io import Op, Shard, client_options
from .broker import CatchUp

__all__ = ["RedisBroker"]

logger = logging.getLogger("rfc6455.broker.redis")


class _State(Enum):
    SUBSCRIBING = "subscribing"  # waiting for Redis to confirm the subscription
    SYNCING = "syncing"  # reading history: the base offset, or what was missed
    READY = "ready"  # live: publications go straight to the listeners
    DOWN = "down"  # the pub/sub connection is lost: waiting for it to come back


class _Topic:
    __slots__ = ("generation", "last", "listeners", "name", "orphan", "shard", "state", "sync",
                 "timer", "waiting")

    def __init__(self, name: str, shard: Shard) -> None:
        self.name = name
        self.shard = shard
        self.state = _State.SUBSCRIBING
        self.listeners: dict[Listener, None] = {}
        #: Subscribe callbacks waiting for READY, with their listeners.
        self.waiting: list[tuple[Listener, Callback[None] | None]] = []
        #: The last publication delivered to the listeners (None before the base read).
        self.last: Position | None = None
        self.sync: CatchUp | None = None
        #: Bumped whenever a history read in flight stops being wanted.
        self.generation = 0
        self.timer: TimerHandle | None = None
        #: Redis dropped the subscription (its slot moved): subscribe again where it is now.
        self.orphan = False


class RedisBroker(Broker):
    """A :class:`~rfc6455.broker.Broker` on Redis (one server, several, or a Cluster).

    Call it from the loop thread; results come back on it, always later. The
    constructor does no I/O on a single server (Redis may come up later: operations
    fail with ``unavailable`` meanwhile); with ``cluster=True`` it reads the slot map
    from the first seed that answers, blocking (at startup, before serving).

    Args:
        loop: the loop that runs the callbacks.
        urls: ``redis://[user:password@]host:port/db`` or ``rediss://`` (TLS); several:
            topics are spread over them by hash slot. With ``cluster``: seed nodes.
        cluster: the URLs are Redis Cluster nodes: one shard per master, sharded pub/sub.
        policies: ``(pattern, policy)`` pairs as for the in-process broker.
        default_policy: the history policy of a topic that matches no pattern.
        topic_ttl: Redis forgets a topic's offset and epoch this long after its last
            publish or read (refreshed while a worker is subscribed).
        presence_ttl: a presence entry expires this long after its last refresh; the
            broker refreshes the entries of its own clients every third of it.
        subscribe_timeout: a subscription not confirmed by Redis within this many
            seconds fails with ``unavailable``.
    """

    def __init__(
        self,
        loop: Loop,
        urls: Sequence[str],
        *,
        cluster: bool = False,
        policies: Sequence[tuple[str, HistoryPolicy]] = (),
        default_policy: HistoryPolicy = DEFAULT_HISTORY_POLICY,
        topic_ttl: float = 24 * 3600.0,
        presence_ttl: float = 60.0,
        subscribe_timeout: float = 5.0,
    ) -> None:
        if not urls:
            raise ValueError("at least one Redis URL is needed")
        if not topic_ttl > 0 or not presence_ttl > 0 or not subscribe_timeout > 0:
            raise ValueError("topic_ttl, presence_ttl and subscribe_timeout must be > 0")
        self._loop = loop
        self._policies = PolicyTable(policies, default_policy)
        self._topic_ttl = topic_ttl
        self._presence_ttl = presence_ttl
        self._subscribe_timeout = subscribe_timeout
        self._sharded = cluster
        self._topics: dict[str, _Topic] = {}
        self._present: dict[str, dict[str, ClientInfo]] = {}
        self._closed = False
        #: Counters for /metrics (:meth:`metrics_text`).
        self.stats: dict[str, int] = dict.fromkeys(
            ("errors", "recoveries", "gaps", "disconnects", "slot_maps"), 0)
        post = loop.call_soon_threadsafe
        self._slots: list[int] | None = None
        self._seeds = [client_options(_parse_url(url)) for url in urls]
        self._reading_slots: threading.Thread | None = None
        self._retiring: list[threading.Thread] = []
        self._down: set[Shard] = set()
        if cluster:
            nodes, self._slots = _cluster_nodes(self._seeds)
            self._shards = [Shard(name, options, self, post, sharded=True)
                            for name, options in nodes]
        else:
            self._shards = []
            for url in urls:
                options = client_options(_parse_url(url))
                name = f"{options.get('host', '?')}:{options.get('port', 6379)}"
                self._shards.append(Shard(name, options, self, post))
        self._refresh_every = presence_ttl / 3
        self._touched = loop.time()
        self._timer: TimerHandle | None = loop.call_later(self._refresh_every, self._refresh)

    # -- introspection -------------------------------------------------------------------

    def policy_for(self, topic: str) -> HistoryPolicy:
        """The history policy ``topic`` gets."""
        return self._policies.policy_for(topic)

    def shard_name(self, topic: str) -> str:
        """``host:port`` of the Redis server that holds ``topic``."""
        return self._shard(topic).name

    def metrics_text(self) -> str:
        """The broker's counters in the Prometheus text format (for ``/metrics``)."""
        stats = self.stats
        rows = (
            ("errors_total", "counter", "Redis operations that failed.", stats["errors"]),
            ("disconnects_total", "counter", "Pub/sub connections to Redis lost.",
             stats["disconnects"]),
            ("reconnects_total", "counter", "Pub/sub connections to Redis re-established.",
             sum(s.reconnects for s in self._shards)),
            ("recoveries_total", "counter", "Topics re-synchronized from Redis history.",
             stats["recoveries"]),
            ("gaps_total", "counter",
             "Topics whose lost publications history could not restore.", stats["gaps"]),
            ("round_trips_total", "counter",
             "Pipelines sent to Redis (one per batch of operations).",
             sum(s.batches for s in self._shards)),
            ("slot_maps_total", "counter", "Redis Cluster slot maps read after a change.",
             stats["slot_maps"]),
            ("shards", "gauge", "Redis servers in use.", len(self._shards)),
        )
        lines: list[str] = []
        for name, kind, help_, value in rows:
            lines += [f"# HELP rfc6455_broker_redis_{name} {help_}",
                      f"# TYPE rfc6455_broker_redis_{name} {kind}",
                      f"rfc6455_broker_redis_{name} {value}"]
        return "\n".join(lines) + "\n"

    # -- the interface -------------------------------------------------------------------

    def publish(
        self, topic: str, payload_json: str, callback: Callback[Publication] | None = None
    ) -> None:
        if self._refuse(callback):
            return
        args = scripts.publish_args(secrets.token_hex(8), self.policy_for(topic),
                                    self._topic_ttl, payload_json, topic, self._sharded)
        self._submit(topic, scripts.PUBLISH, scripts.topic_keys(topic), args,
                     partial(scripts.parse_publish, topic, payload_json), callback)

    def history(
        self,
        topic: str,
        since: Position | None,
        limit: int | None,
        callback: Callback[HistoryResult],
    ) -> None:
        if self._refuse(callback):
            return
        args = scripts.history_args(secrets.token_hex(8), self.policy_for(topic),
                                    self._topic_ttl, since, limit)
        self._submit(topic, scripts.HISTORY, scripts.topic_keys(topic), args,
                     partial(scripts.parse_history, topic, since), callback)

    def presence_join(
        self,
        topic: str,
        info: ClientInfo,
        callback: Callback[bool] | None = None,
        *,
        announce: bool = False,
    ) -> None:
        if self._refuse(callback):
            return
        self._present.setdefault(topic, {})[info.client] = info
        self._join(topic, info, callback, announce)

    def presence_leave(
        self,
        topic: str,
        client: str,
        callback: Callback[bool] | None = None,
        *,
        announce: bool = False,
    ) -> None:
        if self._refuse(callback):
            return
        present = self._present.get(topic)
        if present is not None:
            present.pop(client, None)
            if not present:
                del self._present[topic]
        args = [client, *self._announce_args(topic, announce)]
        self._submit(topic, scripts.PRESENCE_LEAVE, scripts.presence_keys(topic), args,
                     bool, callback)

    def presence(self, topic: str, callback: Callback[PresenceResult]) -> None:
        if self._refuse(callback):
            return
        self._submit(topic, scripts.PRESENCE, scripts.presence_keys(topic), [],
                     partial(scripts.parse_presence, topic), callback)

    def subscribe(
        self, topic: str, listener: Listener, callback: Callback[None] | None = None
    ) -> None:
        if self._refuse(callback):
            return
        t = self._topics.get(topic)
        if t is None:
            t = self._topics[topic] = _Topic(topic, self._shard(topic))
            t.shard.want(scripts.channel(topic), True)
        t.listeners[listener] = None
        if t.state is _State.READY:
            if callback is not None:
                self._loop.call_soon(callback, None)
            return
        t.waiting.append((listener, callback))
        if t.timer is None:
            t.timer = self._loop.call_later(self._subscribe_timeout, self._timed_out, t)

    def unsubscribe(self, topic: str, listener: Listener) -> None:
        t = self._topics.get(topic)
        if t is None or listener not in t.listeners:
            return
        del t.listeners[listener]
        t.waiting = [(lst, cb) for lst, cb in t.waiting if lst is not listener]
        if not t.listeners:
            self._drop(t)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in list(self._topics.values()):
            if t.timer is not None:
                t.timer.cancel()
        self._topics.clear()
        self._present.clear()
        closed = BrokerError("the broker is closed")
        for shard in self._shards:
            for op in shard.close():
                if op.callback is not None:
                    self._loop.call_soon(op.callback, closed)
        for thread in [*self._retiring, self._reading_slots]:
            if thread is not None:
                thread.join(10.0)

    # -- events from the shards (posted to the loop thread) ------------------------------

    def shard_results(self, batch: list[Op], results: list[Any]) -> None:
        """(From a shard.) The results of a batch of operations: run their callbacks."""
        for op, result in zip(batch, results, strict=True):
            if isinstance(result, BrokerError):
                self.stats["errors"] += 1
                if self._slots is not None and ("MOVED " in result.message
                                                or "ASK " in result.message):
                    self._read_slots()
            callback = op.callback
            if callback is not None:
                try:
                    callback(result)
                except Exception:
                    logger.exception("a broker callback raised")

    def shard_messages(self, shard: Shard, messages: list[tuple[str, bytes]]) -> None:
        """(From a shard.) Publications received on its pub/sub connection."""
        topics = self._topics
        for name, data in messages:
            t = topics.get(scripts.topic_of_channel(name))
            if t is None or t.shard is not shard:
                continue
            try:
                item = scripts.parse_message(t.name, data)
            except (ValueError, UnicodeDecodeError):
                logger.warning("Redis %s: a message on %s that is not ours", shard.name, name)
                continue
            if isinstance(item, PresenceChange):
                self._deliver(t, item)  # not in the offset sequence: no gap check
            else:
                self._live(t, item)

    def shard_subscribed(self, shard: Shard, channel: str) -> None:
        """(From a shard.) Redis confirmed a subscription: sync the topic from history."""
        # The first confirmation, or one after a reconnection: whatever the state, read
        # what may have been missed (a sync in flight may have started before the loss).
        self._down.discard(shard)
        t = self._topics.get(scripts.topic_of_channel(channel))
        if t is not None and t.shard is shard:
            self._sync(t)

    def shard_down(self, shard: Shard, channel: str | None, reason: str) -> None:
        """(From a shard.) Its pub/sub connection (or one channel) was lost."""
        self.stats["disconnects"] += 1
        if channel is None:
            self._down.add(shard)
        for t in self._topics.values():
            if t.shard is not shard or (channel is not None and scripts.channel(t.name) != channel):
                continue
            if t.state in (_State.READY, _State.SYNCING):
                t.state = _State.DOWN
                t.sync = None
                t.generation += 1
            if channel is not None:  # Redis dropped this subscription: its slot moved
                if self._slots is None:
                    shard.want(channel, True)
                else:
                    t.orphan = True
        if self._slots is not None:
            self._read_slots()  # a failover or a moved slot: where are the slots now?

    # -- delivery and recovery -----------------------------------------------------------

    def _live(self, t: _Topic, pub: Publication) -> None:
        if t.state is not _State.READY:
            if t.sync is not None:
                t.sync.live(pub)
            return  # else: down or not subscribed yet: history has it
        last = t.last
        if last is not None and pub.epoch == last.epoch:
            if pub.offset == last.offset + 1:
                t.last = Position(pub.offset, pub.epoch)
                self._deliver(t, pub)
                return
            if pub.offset <= last.offset:
                return  # already delivered
        self._sync(t, pub)  # a hole or another epoch: read what was missed

    def _deliver(self, t: _Topic, item: Publication | PresenceChange | BrokerError) -> None:
        listeners = t.listeners
        for listener in tuple(listeners):
            if listener in listeners:
                try:
                    listener(item)
                except Exception:
                    logger.exception("a listener of %r raised", t.name)

    def _sync(self, t: _Topic, first: Publication | None = None) -> None:
        """Read history since ``t.last`` (or just the base offset) while buffering live."""
        t.state = _State.SYNCING
        t.generation += 1
        generation, since = t.generation, t.last
        sync = t.sync = CatchUp(since, partial(self._emit, t),
                                partial(self._sync_gap, t, generation))
        if first is not None:
            sync.live(first)

        def done(result: HistoryResult | BrokerError) -> None:
            if t.generation != generation or self._topics.get(t.name) is not t:
                return  # stopped meanwhile (down, unsubscribed, another sync)
            if isinstance(result, BrokerError):
                self._sync_failed(t, result)
                return
            if since is not None:
                if result.recovered:
                    self.stats["recoveries"] += 1
                else:
                    self._lost(t, f"history of {t.name} does not reach back to "
                                  f"{since.offset} in epoch {since.epoch}")
            sync.history(result)
            if t.generation != generation:
                return  # a gap during the replay: a new sync is on its way
            t.last, t.sync, t.state = sync.position, None, _State.READY
            self._ready(t)

        self.history(t.name, since, None if since is not None else 0, done)

    def _emit(self, t: _Topic, pub: Publication) -> None:
        t.last = Position(pub.offset, pub.epoch)
        self._deliver(t, pub)

    def _sync_gap(self, t: _Topic, generation: int, reason: str) -> None:
        """The live stream broke during a sync: tell the listeners, start over from the base."""
        if t.generation != generation:
            return
        self._lost(t, reason)
        t.last = None
        t.generation += 1
        self._loop.call_soon(self._resync, t, t.generation)

    def _resync(self, t: _Topic, generation: int) -> None:
        if t.generation == generation and self._topics.get(t.name) is t:
            self._sync(t)

    def _lost(self, t: _Topic, reason: str) -> None:
        self.stats["gaps"] += 1
        logger.warning("publications of %r lost: %s", t.name, reason)
        self._deliver(t, BrokerError(f"publications lost: {reason}"))

    def _sync_failed(self, t: _Topic, error: BrokerError) -> None:
        """A history read failed: fail waiting subscribers, try again shortly."""
        t.state, t.sync = _State.DOWN, None
        t.generation += 1
        self._fail_waiting(t, error)
        if self._topics.get(t.name) is t:
            self._loop.call_later(0.5, self._retry_sync, t, t.generation)

    def _retry_sync(self, t: _Topic, generation: int) -> None:
        if t.generation == generation and t.state is _State.DOWN and self._topics.get(t.name) is t:
            self._sync(t)

    def _ready(self, t: _Topic) -> None:
        if t.timer is not None:
            t.timer.cancel()
            t.timer = None
        waiting, t.waiting = t.waiting, []
        for _, callback in waiting:
            if callback is not None:
                try:
                    callback(None)
                except Exception:
                    logger.exception("a broker callback raised")

    def _timed_out(self, t: _Topic) -> None:
        t.timer = None
        self._fail_waiting(t, BrokerError(f"Redis did not confirm the subscription to "
                                          f"{t.name} in time"))

    def _fail_waiting(self, t: _Topic, error: BrokerError) -> None:
        if t.timer is not None:
            t.timer.cancel()
            t.timer = None
        waiting, t.waiting = t.waiting, []
        for listener, _ in waiting:
            t.listeners.pop(listener, None)
        if not t.listeners:
            self._drop(t)
        for _, callback in waiting:
            if callback is not None:
                try:
                    callback(error)
                except Exception:
                    logger.exception("a broker callback raised")

    def _drop(self, t: _Topic) -> None:
        if self._topics.get(t.name) is t:
            del self._topics[t.name]
            t.generation += 1
            t.sync = None
            if t.timer is not None:
                t.timer.cancel()
                t.timer = None
            t.shard.want(scripts.channel(t.name), False)

    # -- the cluster's slot map ----------------------------------------------------------

    def _read_slots(self) -> None:
        """Read the cluster's slot map again, on a thread of its own (once at a time);
        :meth:`_slot_map` applies it on the loop thread."""
        if self._closed or self._reading_slots is not None:
            return
        seeds = [shard.options for shard in self._shards] + self._seeds
        post = self._loop.call_soon_threadsafe

        def run() -> None:
            nodes: list[tuple[str, dict[str, Any]]] = []
            slots: list[int] = []
            try:
                nodes, slots = _cluster_nodes(seeds)
            except BrokerError as exc:
                logger.warning("could not read the Redis Cluster slot map: %s", exc.message)
            try:
                post(self._slot_map, nodes, slots)
            except Exception:  # the loop is closed
                logger.debug("slot map not delivered", exc_info=True)

        self._reading_slots = threading.Thread(target=run, name="rfc6455-redis-slots",
                                               daemon=True)
        self._reading_slots.start()

    def _slot_map(self, nodes: list[tuple[str, dict[str, Any]]], slots: list[int]) -> None:
        """Move the topics whose slot changed node: unsubscribe there, subscribe where the
        slot is now; the confirmation syncs them from history (no gap, no duplicate)."""
        if self._reading_slots is not None:
            self._reading_slots.join()
            self._reading_slots = None
        if self._closed:
            return
        if nodes:
            self.stats["slot_maps"] += 1
            old = {shard.name: shard for shard in self._shards}
            post = self._loop.call_soon_threadsafe
            self._shards = [old.pop(name) if name in old
                            else Shard(name, options, self, post, sharded=True)
                            for name, options in nodes]
            self._slots = slots
            for t in self._topics.values():
                shard = self._shard(t.name)
                if shard is t.shard and not t.orphan:
                    continue
                channel = scripts.channel(t.name)
                if shard is not t.shard:
                    t.shard.want(channel, False)
                    t.shard = shard
                shard.want(channel, True)
                t.orphan = False
                if t.state in (_State.READY, _State.SYNCING):
                    t.state, t.sync = _State.DOWN, None
                    t.generation += 1
            for shard in old.values():
                self._retire(shard)
        if self._down or any(t.orphan for t in self._topics.values()):
            # A master is unreachable: its replica may take over soon; look again.
            self._loop.call_later(1.0, self._read_slots)

    def _retire(self, shard: Shard) -> None:
        """Close a shard that left the slot map without blocking the loop; operations it
        never sent fail with ``unavailable``."""
        self._down.discard(shard)
        post = self._loop.call_soon_threadsafe

        def run() -> None:
            error = BrokerError(f"Redis {shard.name} left the cluster")
            for op in shard.close():
                if op.callback is not None:
                    try:
                        post(op.callback, error)
                    except (OSError, RuntimeError):  # the loop is closed
                        return

        thread = threading.Thread(target=run, name=f"rfc6455-redis-retire-{shard.name}",
                                  daemon=True)
        self._retiring = [t for t in self._retiring if t.is_alive()] + [thread]
        thread.start()

    # -- helpers -------------------------------------------------------------------------

    def _shard(self, topic: str) -> Shard:
        slot = key_slot(topic.encode())
        if self._slots is not None:
            return self._shards[self._slots[slot]]
        return self._shards[slot % len(self._shards)]

    def _submit(self, topic: str, script: scripts.Script, keys: list[str], args: list[Any],
                parse: Callable[[Any], Any], callback: Callable[[Any], None] | None) -> None:
        self._shard(topic).submit(Op(script, keys, args, parse, callback))

    def _join(self, topic: str, info: ClientInfo, callback: Callback[bool] | None,
              announce: bool = False) -> None:
        args = [info.client, scripts.user_json(info), int(self._presence_ttl * 1000),
                *self._announce_args(topic, announce)]
        self._submit(topic, scripts.PRESENCE_JOIN, scripts.presence_keys(topic), args, bool,
                     callback)

    def _announce_args(self, topic: str, announce: bool) -> list[str]:
        """The presence scripts' channel, publish command and announce flag."""
        command = "SPUBLISH" if self._sharded else "PUBLISH"
        return [scripts.channel(topic), command, "1" if announce else "0"]

    def _refuse(self, callback: Callable[[BrokerError], None] | None) -> bool:
        if not self._closed:
            return False
        refuse_closed(self._loop.call_soon, callback)
        return True

    def _refresh(self) -> None:
        """Refresh this worker's presence entries, and (now and then) the topics in use."""
        self._timer = self._loop.call_later(self._refresh_every, self._refresh)
        for topic, present in self._present.items():
            for info in present.values():
                self._join(topic, info, None)
        now = self._loop.time()
        if now - self._touched >= min(self._topic_ttl / 4, 3600.0):
            self._touched = now
            ttl = int(self._topic_ttl * 1000)
            for topic in self._topics:
                self._submit(topic, scripts.TOUCH, [scripts.meta_key(topic)], [ttl], int, None)


def _parse_url(url: str) -> dict[str, Any]:
    """``redis.Redis`` keyword arguments for ``url`` (redis://, rediss://, unix://).

    redis-py's ``parse_url`` names a connection class for rediss:// and unix://, which
    only its connection pools take; ``redis.Redis`` wants ``ssl=True`` or
    ``unix_socket_path`` instead (the ``ssl_*`` query options pass through).
    """
    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    connection_class = options.pop("connection_class", None)
    if connection_class is not None and issubclass(connection_class, SSLConnection):
        options["ssl"] = True
    elif connection_class is not None and issubclass(connection_class,
                                                     UnixDomainSocketConnection):
        options["unix_socket_path"] = options.pop("path")
    return options


def _cluster_nodes(
    seeds: Sequence[dict[str, Any]],
) -> tuple[list[tuple[str, dict[str, Any]]], list[int]]:
    """The masters of a Redis Cluster and its slot map, from the first seed that answers
    (blocking: at startup, or on a thread of its own)."""
    errors: list[str] = []
    for options in seeds:
        seed = dict(options)
        seed.pop("db", None)
        url = f"{seed.get('host', '?')}:{seed.get('port', 6379)}"
        try:
            client = redis.Redis(**seed)
            try:
                rows = client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            finally:
                client.close()
        except (redis.RedisError, OSError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        names: dict[str, int] = {}
        nodes: list[tuple[str, dict[str, Any]]] = []
        slots = [-1] * 16384
        for row in rows:
            start, end, master = int(row[0]), int(row[1]), row[2]
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            host = host or str(seed.get("host", "127.0.0.1"))
            name = f"{host}:{int(master[1])}"
            if name not in names:
                names[name] = len(nodes)
                nodes.append((name, {**seed, "host": host, "port": int(master[1])}))
            slots[start:end + 1] = [names[name]] * (end - start + 1)
        if -1 in slots:
            raise BrokerError(f"the Redis Cluster at {url} does not cover every slot")
        return nodes, slots
    raise BrokerError("no Redis Cluster seed answered: " + "; ".join(errors))

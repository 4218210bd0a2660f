"""The Redis broker's I/O: one shard = one Redis server, driven by two threads of its own.

Strategy: redis-py (with hiredis) is blocking, so no Redis call ever runs on the loop
thread. Per shard:

* the **command thread** takes the operations the loop queued (a script call each), as
  many as are waiting (up to :data:`MAX_BATCH`), sends them in one pipeline (one round trip
  for the batch), parses the replies and hands the results back to the loop with ONE
  ``post`` (the loop's ``call_soon_threadsafe``);
* the **subscriber thread** owns the shard's one pub/sub connection: it (un)subscribes
  the channels the loop asks for, reads messages (``get_message`` with a short timeout,
  so that requests from the loop are seen within :data:`POLL_S`) and posts them in batches;
  when the connection drops it posts ``down``, then reconnects with capped backoff and
  subscribes every wanted channel again (each confirmation is posted: the broker then
  recovers what was published meanwhile from history).

Errors never escape a thread: a failed batch answers every operation in it with a
:class:`BrokerError`; the threads stop on :meth:`Shard.close` and are joined.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from ._broker_types import BrokerError
from ._redis_scripts import Script

__all__ = ["MAX_BATCH", "POLL_S", "Events", "Op", "Shard", "client_options"]

logger = logging.getLogger("rfc6455.broker.redis")

#: Most operations sent in one pipeline.
MAX_BATCH = 512
#: How often the subscriber thread looks at requests from the loop while idle.
POLL_S = 0.05
#: Reconnection backoff of the subscriber thread: first and largest pause.
BACKOFF_S = (0.05, 1.0)


class Events(Protocol):
    """What a shard reports to the broker, always through ``post`` (on the loop thread)."""

    def shard_messages(self, shard: Shard, messages: list[tuple[str, bytes]]) -> None: ...

    def shard_subscribed(self, shard: Shard, channel: str) -> None: ...

    def shard_down(self, shard: Shard, channel: str | None, reason: str) -> None: ...

    def shard_results(self, batch: list[Op], results: list[Any]) -> None: ...


class Op:
    """One script call: its keys and arguments, how to parse the reply, whom to tell."""

    __slots__ = ("args", "callback", "keys", "parse", "script")

    def __init__(self, script: Script, keys: list[str], args: list[Any],
                 parse: Callable[[Any], Any], callback: Callable[[Any], None] | None) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.parse = parse
        self.callback = callback


def client_options(options: dict[str, Any]) -> dict[str, Any]:
    """redis-py options for a broker connection: no retries (a publish retried after a
    lost reply could be stored twice), short connect timeout, TCP keepalive."""
    return {
        **options,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 10,
        "decode_responses": False,
        "protocol": 2,
    }


class Shard:
    """One Redis server: a command thread and a subscriber thread (see the module doc).

    Args:
        name: for thread names and logs (``host:port``).
        options: redis-py connection options (from :func:`client_options`).
        events: the broker; called through ``post`` only.
        post: the loop's ``call_soon_threadsafe``.
        sharded: use ``SSUBSCRIBE`` (Redis Cluster's sharded pub/sub).
    """

    def __init__(self, name: str, options: dict[str, Any], events: Events,
                 post: Callable[..., object], *, sharded: bool = False) -> None:
        self.name = name
        self.sharded = sharded
        self._events = events
        self._post = post
        self._client = redis.Redis(**options)
        self._sub_client = redis.Redis(**options)
        self._ops: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._control: queue.SimpleQueue[tuple[bool, str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        #: Counters read by the broker's metrics (written by the threads).
        self.reconnects = 0
        self.batches = 0
        self._threads = [
            threading.Thread(target=self._run_commands, name=f"rfc6455-redis-cmd-{name}",
                             daemon=True),
            threading.Thread(target=self._run_subscriber, name=f"rfc6455-redis-sub-{name}",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- from the loop thread ----------------------------------------------------------

    def submit(self, op: Op) -> None:
        """Queue one script call; its result comes back through ``shard_results``."""
        self._ops.put(op)

    def want(self, channel: str, subscribed: bool) -> None:
        """Subscribe to ``channel`` (confirmed by ``shard_subscribed``) or unsubscribe."""
        self._control.put((subscribed, channel))

    def close(self, timeout: float = 10.0) -> list[Op]:
        """Stop and join the threads; returns the operations never sent."""
        self._stop.set()
        self._ops.put(None)
        for thread in self._threads:
            thread.join(timeout)
        left: list[Op] = []
        while True:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is not None:
                left.append(op)
        self._client.close()
        self._sub_client.close()
        return left

    # -- the command thread ------------------------------------------------------------

    def _run_commands(self) -> None:
        ops = self._ops
        while True:
            op = ops.get()
            if op is None:
                return
            batch = [op]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = ops.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            results = self._execute(batch)
            self.batches += 1
            self._send(self._events.shard_results, batch, results)
            if stop:
                return

    def _execute(self, batch: list[Op]) -> list[Any]:
        try:
            pipe = self._client.pipeline(transaction=False)
            for op in batch:
                pipe.evalsha(op.script.sha, len(op.keys), *op.keys, *op.args)
            replies: list[Any] = pipe.execute(raise_on_error=False)
            again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if again:  # a (re)started Redis without the script: send its source once
                pipe = self._client.pipeline(transaction=False)
                for i in again:
                    op = batch[i]
                    pipe.eval(op.script.source, len(op.keys), *op.keys, *op.args)
                for i, reply in zip(again, pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
        except (RedisError, OSError) as exc:
            error = BrokerError(f"Redis {self.name}: {exc}")
            return [error] * len(batch)
        results: list[Any] = []
        for op, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                results.append(BrokerError(f"Redis {self.name}: {reply}"))
                continue
            try:
                results.append(op.parse(reply))
            except Exception as exc:  # noqa: BLE001 (a reply we do not understand)
                results.append(BrokerError(f"Redis {self.name}: bad reply: {exc!r}"))
        return results

    def _send(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            self._post(callback, *args)
        except Exception:  # the loop is closed: nobody is waiting
            logger.debug("could not hand a result to the loop", exc_info=True)

    # -- the subscriber thread ---------------------------------------------------------

    def _run_subscriber(self) -> None:
        wanted: set[str] = set()
        pubsub: Any = None
        pause = BACKOFF_S[0]
        down = False
        stop = self._stop
        while not stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._sub_client.pubsub()  # type: ignore[no-untyped-call]
                    if wanted:
                        self._subscribe(pubsub, sorted(wanted))
                        if down:
                            self.reconnects += 1
                    down = False
                self._apply_control(pubsub, wanted)
                if not wanted and not pubsub.subscribed:
                    stop.wait(POLL_S)
                    continue
                self._read(pubsub, wanted)
                pause = BACKOFF_S[0]
            except (RedisError, OSError, ValueError) as exc:
                if pubsub is not None:
                    _close_quietly(pubsub)
                    pubsub = None
                if not down:
                    down = True
                    self._send(self._events.shard_down, self, None, str(exc))
                    logger.warning("Redis %s: subscriptions lost: %s", self.name, exc)
                stop.wait(pause)
                pause = min(pause * 2, BACKOFF_S[1])
        if pubsub is not None:
            _close_quietly(pubsub)

    def _subscribe(self, pubsub: Any, channels: list[str]) -> None:
        if self.sharded:
            pubsub.ssubscribe(*channels)
        else:
            pubsub.subscribe(*channels)

    def _apply_control(self, pubsub: Any, wanted: set[str]) -> None:
        control = self._control
        while True:
            try:
                subscribed, channel = control.get_nowait()
            except queue.Empty:
                return
            if subscribed and channel not in wanted:
                wanted.add(channel)
                self._subscribe(pubsub, [channel])
            elif not subscribed and channel in wanted:
                wanted.discard(channel)
                if self.sharded:
                    pubsub.sunsubscribe(channel)
                else:
                    pubsub.unsubscribe(channel)

    def _read(self, pubsub: Any, wanted: set[str]) -> None:
        """Wait up to POLL_S for a message, then take all that are ready; post them."""
        get = pubsub.get_sharded_message if self.sharded else pubsub.get_message
        messages: list[tuple[str, bytes]] = []
        message = get(timeout=POLL_S)
        while message is not None:
            kind, name = message["type"], message["channel"]
            channel = name.decode() if isinstance(name, bytes) else str(name)
            if kind in ("message", "smessage"):
                messages.append((channel, message["data"]))
            elif kind in ("subscribe", "ssubscribe"):
                if messages:
                    self._send(self._events.shard_messages, self, messages)
                    messages = []
                if channel in wanted:
                    self._send(self._events.shard_subscribed, self, channel)
            elif kind in ("unsubscribe", "sunsubscribe") and channel in wanted:
                # The server dropped it (a slot moved): subscribe again; the broker
                # recovers from history once it is confirmed.
                if messages:
                    self._send(self._events.shard_messages, self, messages)
                    messages = []
                self._send(self._events.shard_down, self, channel, "unsubscribed by Redis")
                self._subscribe(pubsub, [channel])
            if len(messages) >= MAX_BATCH:
                break
            message = get(timeout=0.0)
        if messages:
            self._send(self._events.shard_messages, self, messages)


def _close_quietly(pubsub: Any) -> None:
    try:
        pubsub.close()
    except (RedisError, OSError):
        pass

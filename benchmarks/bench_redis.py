"""Pub/sub through Redis: publish → last subscriber latency and deliveries per second, with
the subscribers spread over 1 or 2 server processes sharing one ``redis-server``, next to one
process on the in-process broker.

Run it from a checkout, on Linux, with ``redis-server`` installed::

    python3 benchmarks/bench_redis.py                       # the table of the Redis issue
    python3 benchmarks/bench_redis.py --latency-subscribers 200 --burst-subscribers 1000 \\
        --publishes 50 --rounds 1                           # a quick look

Setups (fresh processes per round; one ``redis-server`` for the whole run, ``appendonly no``):

* ``memory x1``: ``rfc6455 serve --app pubsub`` (the in-process broker);
* ``redis x1`` / ``redis x2``: 1 or 2 ``serve --app pubsub --redis URL`` processes; the
  subscribers are spread evenly over them, the publisher is on the first.

Two measurements, with the pieces of ``bench_pubsub.py`` (raw non-blocking sockets on one
``epoll``, a 64 B JSON string payload carrying a sequence number and the send time):

* **latency**: one publication at a time; the time until the LAST subscriber received it
  (p50/p99), then the next;
* **throughput**: a burst of ``--burst`` publications sent at once; deliveries per second =
  burst × subscribers / time until every subscriber received all of them.

Also printed: Redis round trips per publish (the broker's pipelines / its publishes, from
``/metrics``), the servers' CPU per delivery, and the Redis server's time per script call
(``INFO commandstats``: ``EVALSHA``, the publish script with its ``XADD`` and ``PUBLISH``). Nothing is pinned:
with two server processes, the machine's cores are the limit (the load generator needs one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

_HERE: Final = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import loadgen  # the sibling scripts, found through the path above
from bench_pubsub import STALL_S, TOPIC, _Fanout, _payload, _text_frame

__all__ = ["main"]

SETUPS: Final = {"memory x1": (1, False), "redis x1": (1, True), "redis x2": (2, True)}
TOKEN: Final = b'"type":"message"'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisProcess:
    """A throwaway ``redis-server`` on a free port (no persistence)."""

    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory, "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """One command, its raw reply (enough for INFO and CONFIG RESETSTAT)."""
        request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(request.encode())
            reply = s.recv(65536)
            if reply.startswith(b"$"):
                length = int(reply[1:reply.index(b"\r\n")])
                while len(reply) < length + len(str(length)) + 5:
                    reply += s.recv(65536)
            return reply

    def script_usec(self) -> tuple[int, float]:
        """Calls and server time of the broker's scripts (EVALSHA + EVAL) since RESETSTAT."""
        text = self.command("INFO", "commandstats").decode()
        calls, usec = 0, 0.0
        for match in re.finditer(r"cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)", text):
            calls += int(match.group(1))
            usec += float(match.group(2))
        return calls, usec

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class _Spread(_Fanout):
    """Subscribers spread evenly over several server ports, the publisher on the first."""

    def __init__(self, ports: Sequence[int], subscribers: int) -> None:
        self.n = subscribers
        clients: list[loadgen.Client] = []
        for i, port in enumerate(ports):
            count = subscribers // len(ports) + (1 if i < subscribers % len(ports) else 0)
            clients += loadgen.open_connections(port, count, batch=500, timeout=120.0)
        self.publisher = loadgen.open_connections(ports[0], 1)[0]
        self.subs = clients
        self.by_fd = {c.fd: c for c in clients}
        self.ep = select.epoll()
        for c in clients:
            self.ep.register(c.fd, select.EPOLLIN)
        self.seq = 0

    def burst(self, count: int, size: int) -> float:
        """Send ``count`` publications at once; seconds until every subscriber has them all."""
        frames = []
        start = time.perf_counter_ns()
        for _ in range(count):
            self.seq += 1
            frames.append(_text_frame({"v": 1, "type": "publish", "data": {
                "topic": TOPIC, "payload": _payload(self.seq, start, size)}}))
        self.publisher.sock.sendall(b"".join(frames))
        need = {c.fd: count for c in self.subs}
        tails = dict.fromkeys(need, b"")
        left = len(need)
        keep = len(TOKEN) - 1
        deadline = time.monotonic() + STALL_S
        while left:
            events = self.ep.poll(1.0)
            if not events and time.monotonic() > deadline:
                raise loadgen.BenchError(f"stall: {left} subscribers still waiting")
            for fd, _ in events:
                try:
                    data = self.by_fd[fd].sock.recv(262144)
                except BlockingIOError:
                    continue
                if not data:
                    raise loadgen.BenchError("server closed a subscriber connection")
                chunk = tails[fd] + data
                got = chunk.count(TOKEN)
                tails[fd] = chunk[-keep:]
                if got and need[fd] > 0:
                    need[fd] -= got
                    if need[fd] <= 0:
                        left -= 1
        return (time.perf_counter_ns() - start) / 1e9


def _serve_command(redis_url: str | None, subscribers: int) -> str:
    """The server's command template (``{port}``: ``loadgen.ServerProcess`` picks it)."""
    py = shlex.quote(sys.executable)
    command = (
        f"{py} -m rfc6455 serve --app pubsub --port {{port}} --no-compression"
        f" --max-connections-per-ip 0 --max-connections {subscribers * 2 + 100}"
        " --ping-interval 0 --idle-timeout 0 --rate-limit 0 --handshake-timeout 60"
        " --log-level WARNING --write-buffer-limit 0"
    )
    return command + (f" --redis {redis_url}" if redis_url else "")


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else math.nan


def run_setup(setup: str, redis: RedisProcess, log_dir: str, *, subscribers: int,
              mode: str, publishes: int, warmup: int, burst: int, size: int) -> dict[str, Any]:
    """One round of one setup: fresh servers, ``mode`` ``latency`` or ``throughput``."""
    processes, use_redis = SETUPS[setup]
    servers = [
        loadgen.ServerProcess(f"{setup.replace(' ', '')}-{i}",
                              _serve_command(redis.url if use_redis else None, subscribers),
                              "pubsub", None, log_dir)
        for i in range(processes)
    ]
    try:
        for server in servers:
            server.wait_ready()
        fan = _Spread([s.port for s in servers], subscribers)
        try:
            fan.subscribe()
            for _ in range(warmup):
                fan.publish(size)
            cpu0 = [loadgen.proc_cpu_seconds(s.pid) for s in servers]
            redis.command("CONFIG", "RESETSTAT")
            trips0 = _metric(servers[0].port, "rfc6455_broker_redis_round_trips_total")
            pubs0 = _metric(servers[0].port, "rfc6455_pubsub_publishes_total")
            result: dict[str, Any] = {"setup": setup, "subscribers": subscribers, "mode": mode}
            if mode == "latency":
                lasts = sorted(fan.publish(size)[1] for _ in range(publishes))
                result["last_p50_ms"] = loadgen.percentile(lasts, 50)
                result["last_p99_ms"] = loadgen.percentile(lasts, 99)
                delivered = publishes * subscribers
            else:
                times = [fan.burst(burst, size) for _ in range(publishes)]
                result["deliveries_per_s"] = burst * subscribers / statistics.median(times)
                delivered = publishes * burst * subscribers
            cpu = sum(loadgen.proc_cpu_seconds(s.pid) for s in servers) - sum(cpu0)
            result["server_us_per_delivery"] = cpu / delivered * 1e6
            calls, usec = redis.script_usec()
            # Scripts of this run's publishes (and the subscriptions' history reads: few).
            result["redis_us_per_publish"] = usec / calls if use_redis and calls else math.nan
            trips = _metric(servers[0].port, "rfc6455_broker_redis_round_trips_total") - trips0
            pubs = _metric(servers[0].port, "rfc6455_pubsub_publishes_total") - pubs0
            result["round_trips_per_publish"] = trips / pubs if use_redis and pubs else math.nan
        finally:
            fan.close()
    except loadgen.BenchError as exc:
        raise SystemExit(f"{setup}, {subscribers} subscribers: {exc}\n"
                         + "\n".join(s.tail() for s in servers)) from exc
    finally:
        for server in servers:
            server.stop()
    return result


def run_broker_only(redis: RedisProcess, publishes: int, window: int = 500) -> dict[str, Any]:
    """``RedisBroker`` alone, in this process: ``publishes`` with up to ``window`` in flight.

    The ceiling of one worker's publish path and of one Redis for this script, without
    WebSocket work: publishes/s, round trips per publish, Redis µs per script call.
    """
    from rfc6455._loop import Loop
    from rfc6455.redis_broker import RedisBroker

    loop = Loop()
    broker = RedisBroker(loop, [redis.url])
    done = [0]

    def ack(result: Any) -> None:
        if not hasattr(result, "offset"):
            raise loadgen.BenchError(f"publish failed: {result}")
        done[0] += 1

    try:
        sent = 0
        for _ in range(200):  # warm up: connections, script cache
            broker.publish("bench-broker", '"x"', ack)
        loop.run_until(lambda: done[0] >= 200, 30)
        done[0] = 0
        redis.command("CONFIG", "RESETSTAT")
        trips0 = int(re.findall(r"round_trips_total (\d+)", broker.metrics_text())[0])
        start = time.perf_counter()
        payload = json.dumps("x" * 62)
        while done[0] < publishes:
            while sent < publishes and sent - done[0] < window:
                broker.publish("bench-broker", payload, ack)
                sent += 1
            before = done[0]
            deadline = time.monotonic() + STALL_S
            while done[0] == before:
                loop.run_once(timeout=0.5)
                if time.monotonic() > deadline:
                    raise loadgen.BenchError("stall: no publish acknowledged")
        elapsed = time.perf_counter() - start
        trips = int(re.findall(r"round_trips_total (\d+)", broker.metrics_text())[0]) - trips0
        calls, usec = redis.script_usec()
    finally:
        broker.close()
        loop.close()
    return {"setup": "RedisBroker alone", "subscribers": 0, "mode": "broker",
            "publishes_per_s": publishes / elapsed, "round_trips_per_publish": trips / publishes,
            "redis_us_per_publish": usec / calls if calls else math.nan}


def _fmt(value: float, digits: int = 2) -> str:
    return "—" if isinstance(value, float) and math.isnan(value) else f"{value:,.{digits}f}"


def markdown_tables(rows: Sequence[dict[str, Any]]) -> str:
    lines = [("| setup | subscribers | last-subscriber p50 ms | p99 ms | server CPU µs/delivery"
              " | Redis round trips/publish | Redis µs per script call |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["mode"] == "latency":
            lines.append(f"| {r['setup']} | {r['subscribers']:,} | {_fmt(r['last_p50_ms'])} | "
                         f"{_fmt(r['last_p99_ms'])} | {_fmt(r['server_us_per_delivery'])} | "
                         f"{_fmt(r['round_trips_per_publish'])} | "
                         f"{_fmt(r['redis_us_per_publish'], 1)} |")
    lines += ["", ("| setup | subscribers | deliveries/s | server CPU µs/delivery"
                   " | Redis round trips/publish | Redis µs per script call |"),
              "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["mode"] == "throughput":
            lines.append(f"| {r['setup']} | {r['subscribers']:,} | "
                         f"{_fmt(r['deliveries_per_s'], 0)} | "
                         f"{_fmt(r['server_us_per_delivery'])} | "
                         f"{_fmt(r['round_trips_per_publish'])} | "
                         f"{_fmt(r['redis_us_per_publish'], 1)} |")
    broker = [r for r in rows if r["mode"] == "broker"]
    if broker:
        lines += ["", ("| publish path | publishes/s | Redis round trips/publish"
                       " | Redis µs per script call |"), "|---|---:|---:|---:|"]
        for r in broker:
            lines.append(f"| {r['setup']} (one process, no WebSocket) | "
                         f"{_fmt(r['publishes_per_s'], 0)} | "
                         f"{_fmt(r['round_trips_per_publish'], 3)} | "
                         f"{_fmt(r['redis_us_per_publish'], 1)} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--latency-subscribers", type=int, default=1000)
    parser.add_argument("--latency-setups", nargs="+", choices=SETUPS,
                        default=["memory x1", "redis x1", "redis x2"])
    parser.add_argument("--burst-subscribers", type=int, default=10_000)
    parser.add_argument("--burst-setups", nargs="+", choices=SETUPS,
                        default=["memory x1", "redis x1", "redis x2"])
    parser.add_argument("--publishes", type=int, default=200,
                        help="latency: measured publishes; throughput: bursts (/ 20)")
    parser.add_argument("--burst", type=int, default=20, help="publications per burst")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="payload bytes (a JSON string)")
    parser.add_argument("--broker-publishes", type=int, default=20_000,
                        help="RedisBroker alone, in this process (0: skip)")
    parser.add_argument("--json", metavar="PATH", help="also write the per-round results")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        raise SystemExit("redis-server is not installed (Debian: apt install redis-server)")
    loadgen._raise_nofile(max(args.latency_subscribers, args.burst_subscribers) + 200)
    bursts = max(1, args.publishes // 20)
    plan = [(s, args.latency_subscribers, "latency") for s in args.latency_setups]
    plan += [(s, args.burst_subscribers, "throughput") for s in args.burst_setups]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_redis-") as tmp:
        redis = RedisProcess(tmp)
        try:
            for round_no in range(args.rounds):
                for setup, n, mode in plan:
                    r = run_setup(setup, redis, tmp, subscribers=n, mode=mode,
                                  publishes=args.publishes if mode == "latency" else bursts,
                                  warmup=args.warmup, burst=args.burst, size=args.size)
                    r["round"] = round_no
                    runs.append(r)
                    print(f"# round {round_no + 1}/{args.rounds} {setup} n={n} {mode}: "
                          + ", ".join(f"{k} {_fmt(v)}" for k, v in r.items()
                                      if isinstance(v, float)), file=sys.stderr, flush=True)
            for round_no in range(args.rounds if args.broker_publishes else 0):
                r = run_broker_only(redis, args.broker_publishes)
                r["round"] = round_no
                runs.append(r)
        finally:
            redis.stop()
    if args.broker_publishes:
        plan.append(("RedisBroker alone", 0, "broker"))
    rows = []
    for setup, n, mode in plan:
        mine = [r for r in runs if (r["setup"], r["subscribers"], r["mode"]) == (setup, n, mode)]
        row: dict[str, Any] = {"setup": setup, "subscribers": n, "mode": mode}
        for key in mine[0]:
            if isinstance(mine[0][key], float):
                values = [r[key] for r in mine if not math.isnan(r[key])]
                row[key] = statistics.median(values) if values else math.nan
        rows.append(row)
    print(f"{args.size} B payloads, bursts of {args.burst}, medians of {args.rounds} round(s);"
          f" {os.cpu_count()} CPUs, nothing pinned\n")
    print(markdown_tables(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

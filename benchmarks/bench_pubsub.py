"""Pub/sub fan-out benchmark: publish → first/last subscriber latency and server CPU per delivery.

Run it from a checkout, on Linux (``epoll``, ``/proc``, CPU affinity)::

    python3 benchmarks/bench_pubsub.py --subscribers 1000 10000 --publishes 200 --rounds 3

Servers, each a fresh subprocess per round, pinned to CPU 0:

* ``rfc6455``: ``python3 -m rfc6455 serve --app pubsub`` (compression off, no heartbeats);
* ``websockets``: a small ``websockets`` asyncio server speaking the same JSON envelope v1
  (``_peer-server`` subcommand of this script) that fans a publication out with
  ``websockets.broadcast()`` as the same ``message`` envelope bytes (same keys, same order,
  a 16-hex-digit epoch), so both servers write frames of the same size.

The client (this process, pinned to CPU 1) opens N subscriber connections and one publisher on
raw non-blocking sockets driven by one ``epoll`` (the frame and handshake helpers of
``loadgen.py``), subscribes all to one topic, waits for every ``ack``, then publishes one
message at a time: the payload is a 64 B JSON string carrying a sequence number and the send
timestamp. For each publish it records the time until the first and until the LAST subscriber
received it, and waits for all N before the next one. Server CPU per delivery is the server's
``utime + stime`` delta over the measured publishes / (publishes × N). Warm-up publishes come
first; rounds interleave the servers; the table shows medians over rounds. ``foreign CPU`` is
the machine's busy time not accounted to the server or the client (other tenants), as in
``loadgen.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import select
import shlex
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

_HERE: Final = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import loadgen  # the sibling script, found through the path above

__all__ = ["main"]

OP_TEXT: Final = 0x1
TOPIC: Final = "bench"
SERVERS: Final = ("rfc6455", "websockets")
MAX_SUBSCRIBERS: Final = 20_000
MAX_PUBLISHES: Final = 10_000
STALL_S: Final = 30.0


# ----------------------------------------------------------------------------- peer server
def _message_text(ts: int, topic: str, payload_json: str, offset: int, epoch: str) -> str:
    """The ``message`` envelope, byte for byte as ``rfc6455.pubsub.message_text`` builds it."""
    return (
        f'{{"v":1,"type":"message","ts":{ts},"data":{{"topic":{json.dumps(topic)},'
        f'"payload":{payload_json},"offset":{offset},"epoch":"{epoch}"}}}}'
    )


async def _peer_main(host: str, port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.exceptions import ConnectionClosed

    topics: dict[str, set[ServerConnection]] = {}
    offsets: dict[str, int] = {}
    epoch = os.urandom(8).hex()

    def ack(request: dict[str, Any], data: dict[str, Any]) -> str:
        reply = {"v": 1, "type": "ack", "re": request["id"], "ts": int(time.time() * 1000)}
        reply["data"] = data
        return json.dumps(reply, separators=(",", ":"))

    async def handler(ws: ServerConnection) -> None:
        mine: list[str] = []
        try:
            async for raw in ws:
                request = json.loads(raw)
                kind = request.get("type")
                data = request.get("data") or {}
                topic = str(data.get("topic"))
                if kind == "subscribe":
                    topics.setdefault(topic, set()).add(ws)
                    mine.append(topic)
                    if "id" in request:
                        result = {"topic": topic, "offset": offsets.get(topic, 0), "epoch": epoch}
                        await ws.send(ack(request, result))
                elif kind == "publish":
                    offset = offsets[topic] = offsets.get(topic, 0) + 1
                    payload = json.dumps(data["payload"], separators=(",", ":"), ensure_ascii=False)
                    text = _message_text(int(time.time() * 1000), topic, payload, offset, epoch)
                    broadcast(topics.get(topic, ()), text)
                    if "id" in request:
                        await ws.send(
                            ack(request, {"topic": topic, "offset": offset, "epoch": epoch})
                        )
        except ConnectionClosed:
            pass
        finally:
            for topic in mine:
                topics.get(topic, set()).discard(ws)

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        host,
        port,
        compression=None,
        ping_interval=None,
        max_size=1 << 20,
        max_queue=None,
        backlog=4096,
    ):
        print(f"listening on ws://{host}:{port}", flush=True)
        await stop


# ---------------------------------------------------------------------------------- client
def _text_frame(obj: dict[str, Any]) -> bytes:
    return loadgen.client_frame(json.dumps(obj, separators=(",", ":")).encode(), OP_TEXT)


def _payload(seq: int, sent_ns: int, size: int) -> str:
    """A JSON string payload of ``size`` bytes (quotes included): ``#seq#send-time-ns…``."""
    head = f"#{seq:08d}#{sent_ns:019d}"
    return head + "x" * max(0, size - 2 - len(head))


class _Fanout:
    """N subscribers and one publisher on one epoll."""

    def __init__(self, port: int, subscribers: int) -> None:
        self.n = subscribers
        clients = loadgen.open_connections(port, subscribers + 1, batch=500, timeout=120.0)
        self.publisher = clients.pop()
        self.subs = clients
        self.by_fd = {c.fd: c for c in clients}
        self.ep = select.epoll()
        for c in clients:
            self.ep.register(c.fd, select.EPOLLIN)
        self.seq = 0

    def close(self) -> None:
        self.ep.close()
        loadgen.close_connections([*self.subs, self.publisher], linger=0.2)

    def subscribe(self) -> None:
        for i, c in enumerate(self.subs):
            c.sock.send(
                _text_frame({"v": 1, "type": "subscribe", "id": str(i), "data": {"topic": TOPIC}})
            )
        self._collect(b'"type":"ack"', time.perf_counter_ns())

    def publish(self, size: int) -> tuple[float, float]:
        """One publication; ``(first, last)`` subscriber latency in ms."""
        self.seq += 1
        sent_ns = time.perf_counter_ns()
        frame = _text_frame(
            {
                "v": 1,
                "type": "publish",
                "data": {"topic": TOPIC, "payload": _payload(self.seq, sent_ns, size)},
            }
        )
        self.publisher.sock.send(frame)
        first_ns, last_ns = self._collect(f"#{self.seq:08d}#".encode(), sent_ns)
        return (first_ns - sent_ns) / 1e6, (last_ns - sent_ns) / 1e6

    def _collect(self, token: bytes, start_ns: int) -> tuple[int, int]:
        """Wait until every subscriber received one message containing ``token``."""
        got = 0
        first_ns = 0
        n = self.n
        by_fd = self.by_fd
        deadline = time.monotonic() + STALL_S
        while got < n:
            events = self.ep.poll(1.0)
            if not events:
                if time.monotonic() > deadline:
                    raise loadgen.BenchError(f"stall: {got} of {n} subscribers got {token!r}")
                continue
            if not first_ns:
                first_ns = time.perf_counter_ns()
            for fd, _ in events:
                c = by_fd[fd]
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise loadgen.BenchError("server closed a subscriber connection")
                # Fast path: exactly one unfragmented text frame carrying the token.
                if c.pending is None and data[0] == 0x81:
                    length = data[1]
                    head = 2
                    if length == 126:
                        length = int.from_bytes(data[2:4], "big")
                        head = 4
                    if len(data) == head + length and token in data:
                        got += 1
                        continue
                got += c.slow_path(data, None)
        return first_ns, time.perf_counter_ns()


def run_pubsub(
    port: int, pid: int, *, subscribers: int, publishes: int, warmup: int, size: int
) -> dict[str, float]:
    """One measured run against a listening pub/sub server (process ``pid``)."""
    fan = _Fanout(port, subscribers)
    try:
        fan.subscribe()
        for _ in range(warmup):
            fan.publish(size)
        window = loadgen.Window(pid)
        firsts: list[float] = []
        lasts: list[float] = []
        for _ in range(publishes):
            first, last = fan.publish(size)
            firsts.append(first)
            lasts.append(last)
        cpu = window.close()
    finally:
        fan.close()
    firsts.sort()
    lasts.sort()
    return {
        "last_p50_ms": loadgen.percentile(lasts, 50),
        "last_p99_ms": loadgen.percentile(lasts, 99),
        "first_p50_ms": loadgen.percentile(firsts, 50),
        "cpu_us_per_delivery": cpu["server_cpu_s"] / (publishes * subscribers) * 1e6,
        "foreign_cpu_util": cpu["foreign_cpu_util"],
        "wall_s": cpu["wall_s"],
    }


# ---------------------------------------------------------------------------------- runner
def _command(name: str, subscribers: int) -> str:
    py = shlex.quote(sys.executable)
    if name == "rfc6455":
        return (
            f"{py} -m rfc6455 serve --app pubsub --port {{port}} --no-compression"
            f" --max-connections-per-ip 0 --max-connections {subscribers * 2 + 100}"
            " --ping-interval 0 --idle-timeout 0 --rate-limit 0 --handshake-timeout 60"
            " --log-level WARNING"
        )
    return f"{py} {shlex.quote(str(Path(__file__).resolve()))} _peer-server --port {{port}}"


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results table, then one our/peer ratio line per subscriber count."""
    lines = [
        (
            "| server | subscribers | publishes | last-subscriber p50 ms | last-subscriber p99 ms"
            " | first p50 ms | server CPU µs/delivery | foreign CPU |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['subscribers']} | {r['publishes']} | {_fmt(r['last_p50_ms'])}"
            f" | {_fmt(r['last_p99_ms'])} | {_fmt(r['first_p50_ms'])}"
            f" | {_fmt(r['cpu_us_per_delivery'])} | {r['foreign_cpu_util'] * 100:.0f}% |"
        )
    by_key = {(r["server"], r["subscribers"]): r for r in rows}
    ratios = []
    for n in sorted({int(r["subscribers"]) for r in rows}):
        ours, peer = by_key.get(("rfc6455", n)), by_key.get(("websockets", n))
        if ours is None or peer is None:
            continue
        parts = [
            f"{label} {ours[key] / peer[key]:.2f}"
            for label, key in (
                ("last p50", "last_p50_ms"),
                ("last p99", "last_p99_ms"),
                ("CPU/delivery", "cpu_us_per_delivery"),
            )
            if peer[key] > 0
        ]
        ratios.append(f"- {n} subscribers, rfc6455/websockets: " + ", ".join(parts))
    return "\n".join(lines + ([""] + ratios if ratios else [])) + "\n"


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000])
    parser.add_argument("--publishes", type=int, default=200, help="measured, per round")
    parser.add_argument("--warmup", type=int, default=20, help="publishes before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="payload bytes (a JSON string)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--server-cpu", type=int, default=0, help="-1: do not pin")
    parser.add_argument("--client-cpu", type=int, default=1, help="-1: do not pin")
    parser.add_argument("--json", metavar="PATH", help="also write the per-round results")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_peer-server"]:
        peer = argparse.ArgumentParser(prog="bench_pubsub.py _peer-server")
        peer.add_argument("--host", default=loadgen.HOST)
        peer.add_argument("--port", type=int, required=True)
        peer_args = peer.parse_args(argv[1:])
        asyncio.run(_peer_main(peer_args.host, peer_args.port))
        return 0
    args = build_parser().parse_args(argv)
    if not all(1 <= n <= MAX_SUBSCRIBERS for n in args.subscribers):
        raise SystemExit(f"--subscribers: 1..{MAX_SUBSCRIBERS}")
    if not 1 <= args.publishes <= MAX_PUBLISHES or not 0 <= args.warmup <= MAX_PUBLISHES:
        raise SystemExit(f"--publishes / --warmup: at most {MAX_PUBLISHES}")
    if args.size < 40:
        raise SystemExit("--size: at least 40 (the sequence number and timestamp)")
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    can_pin = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2 and ncpu >= 2
    server_cpu = args.server_cpu if can_pin and args.server_cpu >= 0 else None
    client_cpu = args.client_cpu if can_pin and args.client_cpu >= 0 else None
    loadgen._raise_nofile(max(args.subscribers) + 100)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_pubsub-") as log_dir, loadgen.pinned(client_cpu):
        for n in args.subscribers:
            for round_no in range(args.rounds):
                for name in args.servers:
                    server = loadgen.ServerProcess(
                        name, _command(name, n), "pubsub", server_cpu, log_dir
                    )
                    try:
                        server.wait_ready()
                        result = run_pubsub(
                            server.port,
                            server.pid,
                            subscribers=n,
                            publishes=args.publishes,
                            warmup=args.warmup,
                            size=args.size,
                        )
                    except loadgen.BenchError as exc:
                        raise SystemExit(
                            f"{name}, {n} subscribers: {exc}\n{server.tail()}"
                        ) from exc
                    finally:
                        server.stop()
                    result.update(
                        server=name, subscribers=n, publishes=args.publishes, round=round_no
                    )
                    runs.append(result)
                    print(
                        f"# {name} n={n} round {round_no + 1}/{args.rounds}:"
                        f" last p50 {_fmt(result['last_p50_ms'])} ms"
                        f" p99 {_fmt(result['last_p99_ms'])} ms,"
                        f" {_fmt(result['cpu_us_per_delivery'])} µs/delivery,"
                        f" foreign {result['foreign_cpu_util'] * 100:.0f}%",
                        file=sys.stderr,
                        flush=True,
                    )
    rows: list[dict[str, Any]] = []
    for n in args.subscribers:
        for name in args.servers:
            mine = [r for r in runs if r["server"] == name and r["subscribers"] == n]
            row: dict[str, Any] = {"server": name, "subscribers": n, "publishes": args.publishes}
            for key in (
                "last_p50_ms",
                "last_p99_ms",
                "first_p50_ms",
                "cpu_us_per_delivery",
                "foreign_cpu_util",
            ):
                row[key] = _median([float(r[key]) for r in mine])
            rows.append(row)
    pins = f"server CPU {server_cpu}, client CPU {client_cpu}" if can_pin else "not pinned"
    print(
        f"{args.size} B payloads, {args.warmup} warm-up publishes, medians of {args.rounds}"
        f" round(s); {pins}\n"
    )
    print(markdown_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

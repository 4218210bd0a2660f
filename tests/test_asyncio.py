"""rfc6455.asyncio: serve and connect, on the standard loop and on uvloop.

Every test runs its coroutine under ``asyncio.timeout`` so that a hang fails instead of
holding the suite. Peers that misbehave (never read, never answer pings, stay silent)
are raw sockets speaking bytes built by ``helpers.frame``, not our own client.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from helpers import OP_PING, OP_TEXT, frame

from rfc6455 import ClientHandshake, HandshakeAccepted, HandshakeRejected, LocalProtocolError
from rfc6455.asyncio import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    Phase,
    ServerConnection,
    broadcast,
    connect,
    serve,
)

try:
    import uvloop
except ImportError:  # pragma: no cover - a dev dependency
    uvloop = None

LOOPS = ["asyncio", "uvloop"]


def run(loop_kind: str, coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    """Run ``coro`` on a fresh loop of ``loop_kind``, failing after ``timeout`` seconds."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await coro

    if loop_kind == "uvloop":
        if uvloop is None:
            if os.environ.get("CI") == "true":
                pytest.fail("uvloop is not installed (pip install '.[dev]')")
            pytest.skip("uvloop is not installed")
        return uvloop.run(bounded())
    return asyncio.run(bounded())


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def url(server: Any, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def raw_client(port: int, rcvbuf: int | None = None) -> socket.socket:
    """A blocking socket that did the opening handshake by hand (no compression)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    hs = ClientHandshake(f"127.0.0.1:{port}", "/")
    await loop.sock_sendall(sock, hs.request_bytes())
    while True:
        data = await loop.sock_recv(sock, 4096)
        assert data, "server closed during the handshake"
        hs.receive_data(data)
        if isinstance(hs.next_event(), HandshakeAccepted):
            return sock


async def closed_by_peer(sock: socket.socket, limit: float = 10.0) -> float:
    """Read and discard until the peer closes; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    async with asyncio.timeout(limit):
        while True:
            try:
                if not await loop.sock_recv(sock, 65536):
                    break
            except ConnectionResetError:
                break
    return time.monotonic() - start


# -- messages ---------------------------------------------------------------------------


def test_echo_text_binary_fragments_and_compression(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            assert server.port != 0 and server.sockets
            async with connect(url(server)) as ws:
                assert ws.state is Phase.OPEN
                extensions = dict(ws.response_headers).get("sec-websocket-extensions", "")
                assert extensions.startswith("permessage-deflate")
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00\xff" * 50_000)
                assert await ws.recv() == b"\x00\xff" * 50_000
                await ws.send(bytearray(b"ba"))
                assert await ws.recv() == b"ba"
                await ws.send(["fr", "ag", "ments"])
                assert await ws.recv() == "fragments"

                async def chunks() -> AsyncIterator[bytes]:
                    for part in (b"a", b"sync", b"gen"):
                        await asyncio.sleep(0)
                        yield part

                await ws.send(chunks())
                assert await ws.recv() == b"asyncgen"
                with pytest.raises(TypeError):
                    await ws.send({"a": 1})  # type: ignore[arg-type]
                with pytest.raises(TypeError):
                    await ws.send(42)  # type: ignore[arg-type]
                assert ws.state is Phase.OPEN  # refused before anything was written
                with pytest.raises(TypeError):
                    await ws.send(["text", b"bytes"])
                assert ws.state is Phase.CLOSING  # half a message left: closed with 1011
            assert ws.close_code == 1011

    run(loop_kind, main())


def test_compression_off_and_async_for_ends_on_normal_close(loop_kind: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        for i in range(3):
            await ws.send(f"m{i}")
        await ws.close(1000, "done")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=False) as server:
            ws = await connect(url(server), compression=False)
            assert "sec-websocket-extensions" not in dict(ws.response_headers)
            received = [message async for message in ws]
            assert received == ["m0", "m1", "m2"]
            assert (ws.close_code, ws.close_reason) == (1000, "done")
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert (info.value.code, info.value.reason) == (1000, "done")
            with pytest.raises(ConnectionClosedOK):
                await ws.send("late")

    run(loop_kind, main())


def test_handler_error_closes_1011_and_async_for_raises(loop_kind: str) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("before")
        raise RuntimeError("boom")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                async for message in ws:
                    assert message == "before"
            assert info.value.code == 1011
            assert info.value.reason == ""  # internal errors never go on the wire

    run(loop_kind, main())


def test_close_code_and_reason_reach_the_server(loop_kind: str) -> None:
    async def main() -> None:
        seen: asyncio.Future[tuple[int | None, str]] = asyncio.get_running_loop().create_future()

        async def handler(ws: ServerConnection) -> None:
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                seen.set_result((exc.code, exc.reason))

        async with serve(handler, "127.0.0.1", 0) as server:
            ws = await connect(url(server))
            await ws.close(4000, "bye now")
            assert ws.state is Phase.CLOSED
            assert await seen == (4000, "bye now")
            assert ws.close_code == 4000  # the server echoes our code
            with pytest.raises(LocalProtocolError):
                ws2 = await connect(url(server))
                await ws2.close(1006)  # may not be sent
            await ws2.close()

    run(loop_kind, main())


def test_ping_returns_a_pong_waiter(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            first = await ws.ping()
            second = await ws.ping(b"custom")
            latency = await second
            assert latency >= 0.0 and first.done()  # a pong answers earlier pings too
            assert ws.latency == latency
            with pytest.raises(LocalProtocolError):
                await ws.ping(b"x" * 126)
            await ws.pong(b"unsolicited")  # the server ignores it

    run(loop_kind, main())


def test_pending_ping_raises_connection_closed(loop_kind: str) -> None:
    async def main() -> None:
        server_sock = socket.socket()
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen()
        server_sock.setblocking(False)
        port = server_sock.getsockname()[1]
        loop = asyncio.get_running_loop()

        async def silent_server() -> socket.socket:
            peer, _ = await loop.sock_accept(server_sock)
            from rfc6455 import ServerHandshake, UpgradeRequest

            hs = ServerHandshake()
            while True:
                hs.receive_data(await loop.sock_recv(peer, 4096))
                event = hs.next_event()
                if isinstance(event, UpgradeRequest):
                    await loop.sock_sendall(peer, hs.accept(event))
                    return peer

        accepting = asyncio.ensure_future(silent_server())
        ws = await connect(f"ws://127.0.0.1:{port}/", compression=False)
        peer = await accepting
        waiter = await ws.ping()
        peer.close()  # the server goes away without a pong
        with pytest.raises(ConnectionClosedError) as info:
            await waiter
        assert info.value.code == 1006
        server_sock.close()

    run(loop_kind, main())


def test_cancelled_recv_loses_no_message(loop_kind: str) -> None:
    async def main() -> None:
        go: asyncio.Queue[str] = asyncio.Queue()

        async def handler(ws: ServerConnection) -> None:
            while True:
                await ws.send(await go.get())

        async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            # Cancelled while nothing had arrived.
            task = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Cancelled in the very step the message arrived: its waiter is already
            # resolved when the cancellation lands.
            task = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0)
            before = ws.messages_in
            go.put_nowait("kept")
            while ws.messages_in == before:
                await asyncio.sleep(0)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await ws.recv() == "kept"
            go.put_nowait("next")
            assert await ws.recv() == "next"

    run(loop_kind, main())


def test_concurrent_recv_each_get_one_message(loop_kind: str) -> None:
    async def main() -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()
            await ws.send("one")
            await ws.send("two")
            await ws.recv()

        async with serve(handler, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            a = asyncio.ensure_future(ws.recv())
            b = asyncio.ensure_future(ws.recv())
            await asyncio.sleep(0.01)
            await ws.send("go")
            assert sorted(await asyncio.gather(a, b)) == ["one", "two"]

    run(loop_kind, main())


def test_max_message_size_fails_with_1009(loop_kind: str) -> None:
    async def main() -> None:
        async with (
            serve(echo, "127.0.0.1", 0, max_message_size=1000) as server,
            connect(url(server)) as ws,
        ):
            await ws.send("x" * 1000)
            assert await ws.recv() == "x" * 1000
            await ws.send("x" * 1001)
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1009

    run(loop_kind, main())


# -- flow control and deadlines -----------------------------------------------------------


def test_send_waits_for_a_peer_that_stops_reading_then_times_out(loop_kind: str) -> None:
    async def main() -> None:
        outcome: asyncio.Future[tuple[float, BaseException]] = (
            asyncio.get_running_loop().create_future()
        )

        async def flood(ws: ServerConnection) -> None:
            chunk = b"\x01" * 16384
            start = time.monotonic()
            try:
                for _ in range(20_000):
                    start = time.monotonic()
                    await ws.send(chunk)
                    assert ws.write_buffer_size <= 64 * 1024 + len(chunk) + 16
            except ConnectionClosed as exc:
                outcome.set_result((time.monotonic() - start, exc))

        config = {"write_buffer_timeout": 0.5, "close_timeout": 0.5, "compression": False}
        async with serve(flood, "127.0.0.1", 0, **config) as server:  # type: ignore[arg-type]
            sock = await raw_client(server.port, rcvbuf=4096)  # and never read
            waited, exc = await outcome
            assert isinstance(exc, ConnectionClosedError)
            assert (exc.code, exc.reason) == (1008, "slow consumer")
            assert waited >= 0.3  # the last send waited for the buffer, then was refused
            await closed_by_peer(sock)  # close_timeout then drops the socket
            sock.close()
            assert not server.connections

    run(loop_kind, main())


def test_max_queue_pauses_reading(loop_kind: str) -> None:
    async def main() -> None:
        sent = 0

        async def producer(ws: ServerConnection) -> None:
            nonlocal sent
            for i in range(500):  # 16 MB: more than every buffer on the way can hold
                await ws.send(f"{i:04d}" + "." * 32_000)
                sent += 1
            await ws.recv()

        async with (
            serve(producer, "127.0.0.1", 0, compression=False) as server,
            connect(url(server), max_queue=4, compression=False) as ws,
        ):
            await asyncio.sleep(0.3)
            # Reading paused near the queue limit: the rest waits in the kernel and
            # the server's buffer, so the server is held back too.
            assert ws.messages_in < 50
            assert sent < 500
            for i in range(500):
                assert (await ws.recv())[:4] == f"{i:04d}"
            await ws.send("done")

    run(loop_kind, main())


def test_heartbeat_drops_a_silent_peer(loop_kind: str) -> None:
    async def main() -> None:
        closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

        async def handler(ws: ServerConnection) -> None:
            try:
                await ws.recv()
            except ConnectionClosed:
                closed.set_result(ws.close_code)

        settings = {"ping_interval": 0.2, "ping_timeout": 0.3, "compression": False}
        async with serve(handler, "127.0.0.1", 0, **settings) as server:  # type: ignore[arg-type]
            sock = await raw_client(server.port)
            loop = asyncio.get_running_loop()
            first = await loop.sock_recv(sock, 2)
            assert first == bytes((0x80 | OP_PING, 0))  # the heartbeat ping, unanswered
            elapsed = await closed_by_peer(sock)
            assert 0.1 < elapsed < 5.0
            assert await closed == 1006
            sock.close()

    run(loop_kind, main())


def test_heartbeat_keeps_a_live_peer(loop_kind: str) -> None:
    async def main() -> None:
        # The server pings rarely, so the client hears nothing and pings by itself.
        async with (
            serve(echo, "127.0.0.1", 0, ping_interval=5.0) as server,
            connect(url(server), ping_interval=0.1, ping_timeout=0.2) as ws,
        ):
            await asyncio.sleep(1.0)  # several intervals, nothing but pings
            await ws.send("still here")
            assert await ws.recv() == "still here"
            assert ws.latency > 0.0  # measured by the client's keepalive pings

    run(loop_kind, main())


def test_client_heartbeat_drops_a_silent_server(loop_kind: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)

        async def accept_then_ignore() -> socket.socket:
            from rfc6455 import ServerHandshake, UpgradeRequest

            peer, _ = await loop.sock_accept(listener)
            hs = ServerHandshake()
            while True:
                hs.receive_data(await loop.sock_recv(peer, 4096))
                event = hs.next_event()
                if isinstance(event, UpgradeRequest):
                    await loop.sock_sendall(peer, hs.accept(event))
                    return peer

        accepting = asyncio.ensure_future(accept_then_ignore())
        port = listener.getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}/", ping_interval=0.2, ping_timeout=0.3)
        peer = await accepting
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1006
        peer.close()
        listener.close()

    run(loop_kind, main())


def test_message_timeout_and_protocol_error(loop_kind: str) -> None:
    async def main() -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.wait_closed()

        settings = {"message_timeout": 0.3, "compression": False}
        async with serve(handler, "127.0.0.1", 0, **settings) as server:  # type: ignore[arg-type]
            loop = asyncio.get_running_loop()
            sock = await raw_client(server.port)
            # Half of a frame, then nothing: closed with 1008 "message timeout".
            await loop.sock_sendall(sock, frame(OP_TEXT, b"hello", mask=True)[:4])
            data = await loop.sock_recv(sock, 64)
            assert data[:4] == b"\x88\x11\x03\xf0"  # close 1008, reason "message timeout"
            sock.close()
            sock = await raw_client(server.port)
            await loop.sock_sendall(sock, frame(OP_TEXT, b"unmasked"))  # §5.1: must be masked
            data = await loop.sock_recv(sock, 64)
            assert data[:2] == b"\x88" + bytes((len(data) - 2,)) and data[2:4] == b"\x03\xea"
            sock.close()

    run(loop_kind, main())


# -- reconnecting -------------------------------------------------------------------------


def test_async_for_connect_reconnects_with_backoff(loop_kind: str) -> None:
    async def main() -> None:
        count = 0

        async def greet_and_drop(ws: ServerConnection) -> None:
            nonlocal count
            count += 1
            await ws.send(f"hello {count}")
            ws.abort()  # the connection is lost, no closing handshake

        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nobody listens there yet: the first attempts are refused
        client = connect(f"ws://127.0.0.1:{port}/", initial_delay=0.05, max_delay=0.2)
        greetings: list[str] = []
        failures_seen = 0

        async def start_later() -> Any:
            await asyncio.sleep(0.4)
            return await serve(greet_and_drop, "127.0.0.1", port)

        starting = asyncio.ensure_future(start_later())
        async for ws in client:
            failures_seen = max(failures_seen, client.failures)
            try:
                async for message in ws:
                    greetings.append(str(message))
            except ConnectionClosedError as exc:
                assert exc.code == 1006
            if len(greetings) == 3:
                break
        assert greetings == ["hello 1", "hello 2", "hello 3"]
        assert client.failures == 0  # reset by each success
        server = await starting
        server.close()
        await server.wait_closed()

    run(loop_kind, main())


def test_reconnect_gives_up_on_a_4xx_and_after_max_attempts(loop_kind: str) -> None:
    async def main() -> None:
        def refuse(request: Any) -> None:
            from rfc6455 import HandshakeError

            raise HandshakeError("no token", 401)

        async with serve(echo, "127.0.0.1", 0, check_request=refuse) as server:
            with pytest.raises(HandshakeRejected) as info:
                async for _ in connect(url(server)):
                    pass
            assert info.value.status_code == 401
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        client = connect(f"ws://127.0.0.1:{port}/", initial_delay=0.01, max_attempts=3)
        with pytest.raises(OSError):
            async for _ in client:
                pass
        assert client.failures == 3

    run(loop_kind, main())


# -- the server ---------------------------------------------------------------------------


def test_server_limits_plain_http_and_shutdown(loop_kind: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        settings = {"max_connections": 1, "allowed_origins": ["https://good.example"]}
        async with serve(echo, "127.0.0.1", 0, **settings) as server:  # type: ignore[arg-type]
            with pytest.raises(HandshakeRejected) as info:
                await connect(url(server), origin="https://evil.example")
            assert info.value.status_code == 403
            first = await connect(url(server), origin="https://good.example")
            with pytest.raises(HandshakeRejected) as info:
                await connect(url(server))
            assert info.value.status_code == 503
            assert dict(info.value.headers)["retry-after"] == "5"
            for path, status in (("/healthz", b"200"), ("/metrics", b"200"), ("/x", b"426")):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                response = await reader.read()
                assert response.split(b" ", 2)[1] == status, response
                if path == "/metrics":
                    assert b"rfc6455_connections_open 1" in response
                writer.close()
            assert len(server.connections) == 1
            port = server.port
        # Leaving the block shut the server down: the client got 1001.
        with pytest.raises(ConnectionClosedOK) as closed:
            await first.recv()
        assert closed.value.code == 1001
        assert not server.sockets
        with pytest.raises(OSError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    run(loop_kind, main())


def test_serve_forever_is_cancelled_gracefully(loop_kind: str) -> None:
    async def main() -> None:
        server = await serve(echo, "127.0.0.1", 0)
        forever = asyncio.ensure_future(server.serve_forever())
        ws = await connect(url(server))
        await ws.send("ping")
        assert await ws.recv() == "ping"
        forever.cancel()
        with pytest.raises(asyncio.CancelledError):
            await forever
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1001

    run(loop_kind, main())


def test_many_clients_at_once(loop_kind: str) -> None:
    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as server:

            async def one(i: int) -> None:
                async with connect(url(server)) as ws:
                    for j in range(20):
                        await ws.send(f"{i}-{j}")
                        assert await ws.recv() == f"{i}-{j}"

            await asyncio.gather(*(one(i) for i in range(50)))
            stats = server.stats()
            assert stats["messages_in"] == 1000 and stats["connections_total"] == 50

    run(loop_kind, main())


def test_tls_both_ways(loop_kind: str, tmp_path: Path) -> None:
    import ssl

    from test_server import make_cert

    cert, key = make_cert(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0, certfile=str(cert), keyfile=str(key)) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            async with connect(uri, ssl_context=context) as ws:
                await ws.send("secret")
                assert await ws.recv() == "secret"
                await ws.send(b"\x00" * 200_000)
                assert await ws.recv() == b"\x00" * 200_000
            with pytest.raises(ssl.SSLError):
                await connect(uri)  # the system CAs do not trust this certificate
            assert ws.close_code == 1000

    run(loop_kind, main())


def test_handshake_timeout_and_open_timeout(loop_kind: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with serve(echo, "127.0.0.1", 0, handshake_timeout=0.3) as server:
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n")  # and no more
            elapsed = await closed_by_peer(sock)
            assert 0.1 < elapsed < 5.0
            sock.close()
        # A server that accepts TCP and never answers the upgrade request.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=0.3)
        assert time.monotonic() - start < 5.0
        listener.close()

    run(loop_kind, main())


def test_a_send_waits_for_a_fragmented_message_in_progress(loop_kind: str) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def slow_parts() -> AsyncIterator[str]:
            yield "first "
            await release.wait()
            yield "message"

        async with serve(echo, "127.0.0.1", 0) as server, connect(url(server)) as ws:
            fragmented = asyncio.ensure_future(ws.send(slow_parts()))
            await asyncio.sleep(0.01)
            plain = asyncio.ensure_future(ws.send("second"))
            await asyncio.sleep(0.01)
            assert not plain.done()  # it may not cut into the fragmented message
            release.set()
            await asyncio.gather(fragmented, plain)
            assert await ws.recv() == "first message"
            assert await ws.recv() == "second"

    run(loop_kind, main())


def test_broadcast_frames_once_and_drops_a_slow_subscriber(loop_kind: str) -> None:
    async def main() -> None:
        subscribers: set[ServerConnection] = set()
        joined = asyncio.Event()

        async def subscribe(ws: ServerConnection) -> None:
            subscribers.add(ws)
            if len(subscribers) == 4:
                joined.set()
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)

        settings = {
            "write_buffer_limit": 256 * 1024,
            "write_buffer_timeout": 0.3,
            "close_timeout": 0.3,
            "compression": False,
        }
        loop = asyncio.get_running_loop()
        async with serve(subscribe, "127.0.0.1", 0, **settings) as server:  # type: ignore[arg-type]
            readers = [await connect(url(server)) for _ in range(3)]
            slow = await raw_client(server.port, rcvbuf=4096)  # never reads
            await joined.wait()
            payload = "x" * 16384
            count = 0
            received = [0, 0, 0]

            async def read(i: int) -> None:
                while True:
                    assert await readers[i].recv() == payload
                    received[i] += 1

            reading = [asyncio.ensure_future(read(i)) for i in range(3)]
            while count < 20_000:
                sent = broadcast(subscribers, payload)
                if sent == 3:
                    break  # the slow one is closing (1008): skipped from now on
                assert sent == 4
                count += 1
                await asyncio.sleep(0.001)
            count += 1
            while len(subscribers) == 4:  # close_timeout drops it
                await asyncio.sleep(0.05)
            deadline = loop.time() + 10.0
            while min(received) < count and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert received == [count] * 3  # every reader got every message
            for task in reading:
                task.cancel()
            assert broadcast(subscribers, b"bin", exclude=next(iter(subscribers))) == 2
            for ws in readers:
                await ws.close()
            await closed_by_peer(slow)
            slow.close()

    run(loop_kind, main())


def test_rate_limit_idle_timeout_and_memory_budget(loop_kind: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with (
            serve(echo, "127.0.0.1", 0, rate_limit=5, rate_burst=5) as server,
            connect(url(server)) as ws,
        ):
            with pytest.raises(ConnectionClosedError) as info:
                for i in range(50):
                    await ws.send(f"{i}")
                while True:
                    await ws.recv()
            assert (info.value.code, info.value.reason) == (1008, "rate limit exceeded")
        async with (
            serve(echo, "127.0.0.1", 0, idle_timeout=0.3) as server,
            connect(url(server)) as ws,
        ):
            with pytest.raises(ConnectionClosedOK) as closed:
                await ws.recv()
            assert (closed.value.code, closed.value.reason) == (1000, "idle timeout")
        settings = {"memory_budget": 4096, "compression": False}
        async with serve(echo, "127.0.0.1", 0, **settings) as server:  # type: ignore[arg-type]
            sock = await raw_client(server.port)
            # The first 6000 bytes of a 10000-byte frame: held, over the server's budget.
            await loop.sock_sendall(sock, frame(OP_TEXT, b"x" * 10_000, mask=True)[:6000])
            data = await loop.sock_recv(sock, 64)
            assert data[:4] == b"\x88" + bytes((len(data) - 2,)) + b"\x03\xf5"  # 1013
            assert server.stats()["incoming_buffered_bytes"] == 0
            sock.close()

    run(loop_kind, main())

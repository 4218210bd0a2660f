"""Deadlines of the blocking client (rfc6455.sync_client) against raw-socket peers on 127.0.0.1.

Every peer is a thread with a plain socket that does the server side of the
opening handshake by hand, then misbehaves on purpose (never reads, floods
pings, never answers a close). Every test stops by itself: peers stop on an
event or on a socket timeout, and timing assertions only bound from above with
a generous margin (the machine is shared).

What the peer receives is checked frame by frame with a parser written here
(RFC 6455 §5.2): the client's frames must be whole and in order, and a frame
cut short can only be the last bytes before the connection ended.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, frame
from test_server import make_cert, running_server

from rfc6455 import Config, ConnectionClosed, SyncWebSocket, accept_key, connect

MARGIN = 2.0  # seconds of slack on every upper bound: never a tight bound
SMALL_BUFFER = 32 * 1024  # socket buffers for peers that never read: fill them fast
BIG = 4 * 1024 * 1024  # more than the kernel buffers of both ends hold


# --- frames as the peer sees them ------------------------------------------------------


def unmask(payload: bytes, key: bytes) -> bytes:
    """§5.3, with big integers so that megabytes unmask fast."""
    n = len(payload)
    if not n:
        return b""
    keystream = (key * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")
    return value.to_bytes(n, "big")


@dataclass
class Wire:
    """The client's bytes as parsed by the peer: whole frames, then perhaps a cut one."""

    frames: list[tuple[int, bool, bytes]] = field(default_factory=list)  # (opcode, fin, payload)
    #: a frame whose header arrived but not all its payload: (opcode, declared length, payload so far)
    cut: tuple[int, int, bytes] | None = None
    tail: bytes = b""  # bytes too few for a header


def parse_client_stream(data: bytes) -> Wire:
    """Parse what a client wrote; every frame must be masked (§5.3)."""
    wire = Wire()
    pos = 0
    while pos < len(data):
        start = pos
        if len(data) - pos < 2:
            wire.tail = data[start:]
            break
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, "client frame not masked"
        assert not b0 & 0x70, "reserved bits set (compression is off in these tests)"
        length = b1 & 0x7F
        pos += 2
        if length == 126:
            if len(data) - pos < 2:
                wire.tail = data[start:]
                break
            (length,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif length == 127:
            if len(data) - pos < 8:
                wire.tail = data[start:]
                break
            (length,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        if len(data) - pos < 4:
            wire.tail = data[start:]
            break
        key = data[pos : pos + 4]
        pos += 4
        opcode = b0 & 0x0F
        assert opcode in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG), opcode
        if opcode >= 8:
            assert b0 & 0x80 and length <= 125, "bad control frame"
        payload = unmask(data[pos : pos + length], key)
        if len(payload) < length:
            wire.cut = (opcode, length, payload)
            break
        pos += length
        wire.frames.append((opcode, bool(b0 & 0x80), payload))
    return wire


def drain(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, str]:
    """Read until the client ends the connection: (bytes, "eof" or "reset")."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return bytes(data), "eof"
            data += chunk
    except ConnectionResetError:
        return bytes(data), "reset"


def read_until_close_frame(sock: socket.socket, timeout: float = 10.0) -> Wire:
    """Read until the client's close frame has arrived whole (or the connection ended).

    Then end TCP (without a close frame of our own), as a server does after the
    closing handshake, so that the client's ``close()`` need not wait.
    """
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        wire = parse_client_stream(bytes(data))
        if wire.frames and wire.frames[-1][0] == OP_CLOSE:
            sock.shutdown(socket.SHUT_WR)
            return wire
    return parse_client_stream(bytes(data))


# --- raw peers -------------------------------------------------------------------------


class Peer:
    """The server side of one connection: the handshake by hand, then the test drives it.

    Args:
        rcvbuf: a small receive buffer for the accepted socket (None: the default).
        tls: a server SSL context to wrap the accepted socket in.
        extensions: a ``Sec-WebSocket-Extensions`` value to accept with.
    """

    def __init__(
        self,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
        extensions: str | None = None,
    ) -> None:
        self.extensions = extensions
        self.listener = socket.socket()
        if rcvbuf is not None:  # inherited by the accepted socket, set before the window opens
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.tls = tls
        self.sock: socket.socket | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._handshake, daemon=True)
        self._thread.start()

    def _handshake(self) -> None:
        try:
            self.listener.settimeout(10)
            conn, _ = self.listener.accept()
            if self.tls is not None:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                assert chunk, "client went away during the handshake"
                request += chunk
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            extensions = b""
            if self.extensions is not None:
                extensions = f"Sec-WebSocket-Extensions: {self.extensions}\r\n".encode()
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n"
                + extensions
                + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
            )
            self.sock = conn
        except BaseException as exc:  # noqa: BLE001 - reported by connected()
            self.error = exc

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls is not None else "ws"
        host = "localhost" if self.tls is not None else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}/"

    def connected(self) -> socket.socket:
        """The accepted socket, once the handshake is done."""
        self._thread.join(10)
        if self.error is not None:
            raise self.error
        assert self.sock is not None
        return self.sock

    def close(self) -> None:
        self._thread.join(10)
        if self.sock is not None:
            self.sock.close()
        self.listener.close()


def client_socket(port: int, sndbuf: int | None = None) -> socket.socket:
    """A connected client socket, with a small send buffer if asked (for ``connect(sock=)``)."""
    sock = socket.socket()
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


@contextmanager
def peer_and_client(
    *, small_buffers: bool = False, **options: object
) -> Iterator[tuple[Peer, socket.socket, SyncWebSocket]]:
    """A raw peer, a client connected to it (compression off), both closed on exit."""
    peer = Peer(rcvbuf=SMALL_BUFFER if small_buffers else None)
    try:
        sock = client_socket(peer.port, SMALL_BUFFER if small_buffers else None)
        options.setdefault("compression", False)
        ws = connect(peer.url, sock=sock, **options)  # type: ignore[arg-type]
        try:
            yield peer, peer.connected(), ws
        finally:
            if not ws.closed:
                ws._abort()  # never wait on a misbehaving peer
    finally:
        peer.close()


class Flooder:
    """A thread that writes server pings (payload: an 8-byte counter) until stopped.

    Non-blocking writes that resume where they stopped, so the peer's own
    stream stays whole; it never reads. Optionally ends with a text message.
    """

    def __init__(self, sock: socket.socket, count: int | None = None, then: bytes = b"") -> None:
        self.sock = sock
        self.count = count
        self.then = then
        self.written = 0  # bytes
        self.stop = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sock = self.sock
        sock.setblocking(False)
        try:
            n = 0
            while not self.stop.is_set() and (self.count is None or n < self.count):
                batch = 1000 if self.count is None else min(1000, self.count - n)
                data = b"".join(frame(OP_PING, struct.pack("!Q", n + i)) for i in range(batch))
                if self.count is not None and n + batch == self.count:
                    data += self.then
                if not self._write(data):
                    return
                n += batch
        finally:
            self.done.set()

    def _write(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self.stop.is_set():
                return False  # the ping in progress may stay cut: only the client is checked
            _, writable, _ = select.select([], [self.sock], [], 0.05)
            if not writable:
                continue
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError:
                return False
            view = view[n:]
            self.written += n
        return True

    @property
    def sent(self) -> int:
        """Pings written whole (each is 10 bytes)."""
        pings = self.written // 10
        return pings if self.count is None else min(pings, self.count)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.sock.setblocking(True)


def fill_send_buffer(ws: SyncWebSocket) -> int:
    """Pings until the client's send path stays full: nothing of a ping can leave.

    The kernel frees a little room now and then (it collapses the small
    packets queued at the peer), so "full" means three pings in a row timed
    out with nothing sent. Returns the number of pings written.
    """
    pings = 0
    misses = 0
    deadline = time.monotonic() + 30
    while misses < 3:
        assert time.monotonic() < deadline, "the send buffer never filled"
        try:
            ws.ping(b"fill", timeout=0.2)
        except TimeoutError:
            assert not ws.closed, "a ping of 10 bytes was cut after the socket was writable"
            misses += 1
            continue
        misses = 0
        pings += 1
    return pings


def timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - returned to the test
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def report(name: str, elapsed: float) -> None:
    print(f"\n[timing] {name}: {elapsed:.3f} s")


# --- 1. send() against a peer that never reads ------------------------------------------


def test_send_times_out_and_aborts_without_leaving_half_a_frame() -> None:
    write_timeout = 1.0
    with peer_and_client(small_buffers=True, write_timeout=write_timeout) as (_, psock, ws):
        ws.send("hello")  # fits in the buffers: the peer gets it whole later
        message = bytes([0xAB]) * BIG
        elapsed, exc = timed(lambda: ws.send(message))
        report("send(4 MiB) to a peer that never reads, write_timeout=1", elapsed)
        assert isinstance(exc, TimeoutError), exc
        assert write_timeout * 0.9 <= elapsed < write_timeout + MARGIN
        # Part of the frame had left: the connection was aborted.
        assert ws.closed
        assert ws.close_code == 1006
        with pytest.raises(ConnectionClosed) as info:
            ws.send("too late")
        assert info.value.code == 1006
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
        ws.close()  # a no-op now
        data, how = drain(psock)
    wire = parse_client_stream(data)
    assert wire.frames[0] == (OP_TEXT, True, b"hello")
    # Nothing but whole frames, then at most the start of the message that was cut:
    # the stream ends right there (the connection was reset), nothing follows it.
    assert wire.frames[1:] == []
    if wire.cut is not None:
        opcode, length, payload = wire.cut
        assert (opcode, length) == (OP_BINARY, BIG)
        assert len(payload) < BIG and payload == message[: len(payload)]
        assert how in ("eof", "reset")
    else:
        assert how == "reset" or not wire.tail


def test_send_fragments_and_ping_have_the_same_deadline() -> None:
    with peer_and_client(small_buffers=True, write_timeout=0.5) as (_, psock, ws):
        elapsed, exc = timed(lambda: ws.send_fragments([b"a" * BIG, b"b" * BIG]))
        report("send_fragments(2 x 4 MiB) to a peer that never reads, write_timeout=0.5", elapsed)
        assert isinstance(exc, TimeoutError), exc
        assert elapsed < 0.5 + MARGIN
        assert ws.closed and ws.close_code == 1006
        with pytest.raises(ConnectionClosed):
            ws.ping()
        data, _ = drain(psock)
    wire = parse_client_stream(data)
    assert wire.frames == []  # the first fragment was cut: nothing after it


def test_a_write_that_cannot_start_keeps_the_connection_open() -> None:
    with peer_and_client(small_buffers=True, write_timeout=0.3, close_timeout=2) as (
        _,
        psock,
        ws,
    ):
        pings = fill_send_buffer(ws)
        # The socket is not writable: nothing of the message can leave.
        elapsed, exc = timed(lambda: ws.send("not sent"))
        report("send() that cannot start, write_timeout=0.3", elapsed)
        assert isinstance(exc, TimeoutError), exc
        assert "none of it was sent" in str(exc)
        assert elapsed < 0.3 + MARGIN
        assert not ws.closed
        # The peer starts reading: the connection works on.
        reader = threading.Thread(target=lambda: result.append(read_until_close_frame(psock)))
        result: list[Wire] = []
        reader.start()
        ws.send("sent", timeout=10)
        ws.close()
        reader.join(15)
    wire = result[0]
    assert wire.cut is None and not wire.tail
    kinds = [(op, payload) for op, _, payload in wire.frames]
    assert kinds[:pings] == [(OP_PING, b"fill")] * pings
    assert kinds[pings:pings + 1] == [(OP_TEXT, b"sent")]  # "not sent" never went
    assert kinds[-1][0] == OP_CLOSE


def test_with_compression_a_message_that_cannot_start_aborts() -> None:
    """permessage-deflate: the compressor counted the message, so it cannot be dropped."""
    peer = Peer(rcvbuf=SMALL_BUFFER, extensions="permessage-deflate")
    try:
        sock = client_socket(peer.port, SMALL_BUFFER)
        ws = connect(peer.url, sock=sock, write_timeout=0.3)
        psock = peer.connected()
        assert ws._stateful_encoder  # permessage-deflate was negotiated
        pings = fill_send_buffer(ws)
        elapsed, exc = timed(lambda: ws.send("compressed"))
        report("send() that cannot start, permessage-deflate, write_timeout=0.3", elapsed)
        assert isinstance(exc, TimeoutError), exc
        assert "aborted" in str(exc)
        assert elapsed < 0.3 + MARGIN
        assert ws.closed and ws.close_code == 1006
        data, _ = drain(psock)
    finally:
        peer.close()
    wire = parse_client_stream(data)
    assert [op for op, _, _ in wire.frames] == [OP_PING] * len(wire.frames)
    assert len(wire.frames) <= pings  # the reset may drop the tail of what was queued
    assert wire.cut is None or wire.cut[0] == OP_PING


# --- 2. the per-call timeout overrides write_timeout -------------------------------------


def test_per_call_timeout_shorter_than_write_timeout() -> None:
    with peer_and_client(small_buffers=True, write_timeout=30) as (_, psock, ws):
        elapsed, exc = timed(lambda: ws.send(b"x" * BIG, timeout=0.5))
        report("send(4 MiB, timeout=0.5) with write_timeout=30", elapsed)
        assert isinstance(exc, TimeoutError), exc
        assert elapsed < 0.5 + MARGIN
        assert ws.closed and ws.close_code == 1006
        drain(psock)


@pytest.mark.parametrize("timeout", [10.0, None])
def test_per_call_timeout_longer_than_write_timeout(timeout: float | None) -> None:
    """The peer reads only after 1 s; write_timeout is 0.2 s but this call may wait."""
    with peer_and_client(small_buffers=True, write_timeout=0.2, close_timeout=2) as (
        _,
        psock,
        ws,
    ):
        result: list[Wire] = []

        def late_reader() -> None:
            time.sleep(1.0)
            result.append(read_until_close_frame(psock, timeout=20))

        reader = threading.Thread(target=late_reader, daemon=True)
        reader.start()
        message = os.urandom(BIG)
        elapsed, exc = timed(lambda: ws.send(message, timeout=timeout))
        report(f"send(4 MiB, timeout={timeout}) with write_timeout=0.2, reader after 1 s", elapsed)
        assert exc is None, exc
        assert elapsed >= 0.5  # it did wait past write_timeout
        assert not ws.closed
        ws.close()
        reader.join(25)
    wire = result[0]
    assert [(op, fin) for op, fin, _ in wire.frames] == [(OP_BINARY, True), (OP_CLOSE, True)]
    assert wire.frames[0][2] == message


# --- 3. recv() against a peer that floods pings and never reads ---------------------------


@pytest.mark.parametrize("prefill", [False, True], ids=["buffers-empty", "buffers-full"])
def test_recv_deadline_holds_against_a_ping_flood(prefill: bool) -> None:
    # Small buffers: a pong per ping (not coalesced) would fill them at once. The
    # close timeout is the default (10 s), which once bounded the pongs recv wrote.
    with peer_and_client(small_buffers=True, write_timeout=5) as (_, psock, ws):
        pings = fill_send_buffer(ws) if prefill else 0
        flood = Flooder(psock)
        try:
            elapsed, exc = timed(lambda: ws.recv(timeout=1))
        finally:
            flood.finish()
        report(f"recv(timeout=1) against a ping flood ({'full' if prefill else 'empty'} "
               f"buffers, {flood.sent} pings sent)", elapsed)
        assert isinstance(exc, TimeoutError), exc
        assert 0.9 <= elapsed < 1 + MARGIN
        assert flood.sent > 0
        assert not ws.closed  # no message, but nothing was cut: the connection is fine
        # The peer reads now: the owed pong and our close leave, whole.
        result: list[Wire] = []
        reader = threading.Thread(target=lambda: result.append(read_until_close_frame(psock)))
        reader.start()
        elapsed, _ = timed(ws.close)
        reader.join(15)
        report("close() after the flood, the peer reading again", elapsed)
        assert elapsed < MARGIN
    wire = result[0]
    assert wire.cut is None and not wire.tail
    ops = [op for op, _, _ in wire.frames]
    assert ops[:pings] == [OP_PING] * pings
    assert ops[-1] == OP_CLOSE
    pongs = [payload for op, _, payload in wire.frames if op == OP_PONG]
    assert ops[pings:-1] == [OP_PONG] * len(pongs)
    assert 1 <= len(pongs) < flood.sent  # coalesced: far fewer pongs than pings
    counters = [struct.unpack("!Q", p)[0] for p in pongs]
    assert counters == sorted(counters) and counters[-1] < flood.sent
    print(f"\n[count] pongs written for {flood.sent} pings: {len(pongs)}")


# --- 4. a peer that floods pings and reads -------------------------------------------------


def test_pings_are_answered_and_the_message_after_them_arrives() -> None:
    count = 20000
    with peer_and_client(close_timeout=3) as (_, psock, ws):
        got: list[bytes] = []
        stop = threading.Event()

        def reader() -> None:
            # The flooder makes the shared socket non-blocking: select, then read.
            data = bytearray()
            while not stop.is_set():
                if not select.select([psock], [], [], 0.1)[0]:
                    continue
                try:
                    chunk = psock.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            got.append(bytes(data))

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        flood = Flooder(psock, count=count, then=frame(OP_TEXT, b"after the pings"))
        result: list[object] = []
        elapsed, exc = timed(lambda: result.append(ws.recv(timeout=10)))
        assert exc is None, exc
        report(f"recv() of the message after {count} pings", elapsed)
        flood.finish()
        assert flood.sent == count
        # The latest ping's pong comes back (written before recv returned, or owed).
        last = struct.pack("!Q", count - 1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                ws.recv(timeout=0.1)
            except TimeoutError:
                pass
            if ws._owed == b"":
                break
        ws.close()
        stop.set()
        thread.join(10)
    assert result == ["after the pings"]
    wire = parse_client_stream(got[0])
    assert wire.cut is None and not wire.tail
    pongs = [payload for op, _, payload in wire.frames if op == OP_PONG]
    assert pongs and pongs[-1] == last
    assert len(pongs) < count  # coalesced
    print(f"\n[count] pongs written for {count} pings: {len(pongs)}")


# --- 5. close() against a peer that never answers -----------------------------------------


@pytest.mark.parametrize("prefill", [False, True], ids=["close-frame-leaves", "buffers-full"])
def test_close_is_bounded_by_close_timeout(prefill: bool) -> None:
    close_timeout = 1.0
    with peer_and_client(small_buffers=prefill, close_timeout=close_timeout) as (_, psock, ws):
        if prefill:
            fill_send_buffer(ws)
        elapsed, exc = timed(ws.close)
        report(f"close() against a silent peer ({'full' if prefill else 'empty'} buffers), "
               "close_timeout=1", elapsed)
        assert exc is None, exc
        assert elapsed < close_timeout + MARGIN
        assert ws.closed and ws.close_code == 1006
        data, _ = drain(psock)
    wire = parse_client_stream(data)
    assert wire.cut is None and not wire.tail
    if not prefill:
        assert wire.frames[-1][0] == OP_CLOSE


def test_recv_waits_no_longer_than_close_timeout_for_the_server_to_end_tcp() -> None:
    with peer_and_client(close_timeout=0.5) as (_, psock, ws):
        psock.sendall(frame(OP_CLOSE, struct.pack("!H", 1000)))  # and never close TCP
        elapsed, exc = timed(lambda: ws.recv(timeout=10))
        report("recv(timeout=10) after the server's close, close_timeout=0.5", elapsed)
        assert isinstance(exc, ConnectionClosed) and exc.code == 1000
        assert elapsed < 0.5 + MARGIN
        assert ws.closed
        wire = parse_client_stream(drain(psock)[0])
    assert [op for op, _, _ in wire.frames] == [OP_CLOSE]


# --- TLS ------------------------------------------------------------------------------------


def test_tls_echo_and_send_timeout(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    config = Config(certfile=str(cert), keyfile=str(key))
    with running_server(config) as server:
        with connect(f"wss://localhost:{server.port}/", ssl_context=client_ctx) as ws:
            big = os.urandom(1 << 20)
            ws.send(big)
            assert ws.recv(timeout=10) == big
            ws.send_fragments(["a", "b"])
            assert ws.recv(timeout=5) == "ab"
        assert ws.close_code == 1000

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    peer = Peer(rcvbuf=SMALL_BUFFER, tls=server_ctx)
    try:
        sock = client_socket(peer.port, SMALL_BUFFER)
        ws = connect(peer.url, sock=sock, ssl_context=client_ctx, compression=False,
                     write_timeout=0.5)
        psock = peer.connected()
        elapsed, exc = timed(lambda: ws.send(b"t" * BIG))
        report("TLS send(4 MiB) to a peer that never reads, write_timeout=0.5", elapsed)
        assert isinstance(exc, TimeoutError), exc
        assert elapsed < 0.5 + MARGIN
        assert ws.closed and ws.close_code == 1006
        psock.close()
    finally:
        peer.close()


# --- a server that goes away -----------------------------------------------------------------


def test_a_refused_pong_does_not_lose_the_message_that_came_with_its_ping() -> None:
    with peer_and_client() as (_, psock, ws):
        psock.sendall(frame(OP_PING, b"1"))
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # answers the ping meanwhile
        psock.settimeout(5)
        assert parse_client_stream(psock.recv(64)).frames == [(OP_PONG, True, b"1")]
        psock.sendall(frame(OP_PING, b"2") + frame(OP_TEXT, b"last words"))
        psock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        psock.close()  # a reset: the pong for "2" cannot be written
        time.sleep(0.2)
        assert ws.recv(timeout=5) == "last words"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1006
        assert ws.closed

"""Tests for rfc6455._transport: partial writes, water marks, close, abort, EOF, TLS."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from fakeclock import EPS, FakeClock, settle

from rfc6455._loop import Loop
from rfc6455._transport import Protocol, Transport


class Recorder(Protocol):
    __slots__ = ("data", "eof", "events", "lost", "transport")

    def __init__(self) -> None:
        self.events: list[str] = []
        self.data = bytearray()
        self.lost: list[BaseException | None] = []
        self.transport: Transport | None = None
        self.eof = False

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        assert type(data) is bytes
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        self.events.append("eof")
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)
        self.events.append("lost")

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


def small_pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return a, b


def drain(loop: Loop, sock: socket.socket, nbytes: int) -> bytes:
    """Read nbytes from a blocking peer socket while the loop flushes."""
    sock.setblocking(False)
    out = bytearray()

    def step() -> bool:
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return True
                out.extend(chunk)
        except BlockingIOError:
            pass
        return len(out) >= nbytes

    loop.run_until(step, timeout=10)
    return bytes(out)


def test_write_goes_out_at_once_when_possible(loop: Loop) -> None:
    a, b = socket.socketpair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.start()
    assert proto.events == ["made"]
    t.write(b"hello")
    assert t.write_buffer_size == 0  # sent synchronously, nothing buffered
    assert b.recv(10) == b"hello"
    t.abort()
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    b.close()


def test_partial_writes_water_marks_and_order(loop: Loop) -> None:
    a, b = small_pair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.set_write_buffer_limits(high=32 * 1024, low=8 * 1024)
    t.start()
    fd_count = loop.fd_count
    chunks = [bytes([i % 256]) * 1000 for i in range(300)]
    for c in chunks:
        t.write(c)
    assert t.write_buffer_size > 0
    assert t.writing_paused
    assert proto.events == ["made", "pause"]
    # a writer was registered only because something is pending
    assert loop.fd_count == fd_count
    got = drain(loop, b, 300_000)
    assert got == b"".join(chunks)
    loop.run_until(lambda: "resume" in proto.events, timeout=5)
    assert proto.events == ["made", "pause", "resume"]
    assert t.write_buffer_size == 0
    assert not t.writing_paused
    t.close()
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    assert proto.lost == [None]
    b.close()


def test_bytearray_is_copied(loop: Loop) -> None:
    a, b = small_pair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.start()
    t.write(b"x" * 200_000)
    buf = bytearray(b"abc")
    t.write(buf)
    buf[:] = b"zzz"
    got = drain(loop, b, 200_003)
    assert got.endswith(b"xabc")
    t.abort()
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    b.close()


def test_close_flushes_then_closes(loop: Loop) -> None:
    a, b = small_pair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.start()
    payload = b"y" * 200_000
    t.write(payload)
    t.close()
    t.write(b"ignored after close")
    assert t.is_closing
    got = drain(loop, b, len(payload) + 1)
    assert got == payload  # everything before close, then EOF
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    assert proto.lost == [None]
    assert a.fileno() == -1
    b.close()


def test_abort_drops_buffer_and_reports_once(loop: Loop) -> None:
    a, b = small_pair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.start()
    base = loop.fd_count
    t.write(b"z" * 500_000)
    t.abort()
    t.abort()
    t.close()
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    settle(loop)
    assert proto.lost == [None]
    assert t.write_buffer_size == 0
    assert loop.fd_count == base - 1  # its selector key is gone
    b.close()


def test_peer_eof(loop: Loop) -> None:
    a, b = socket.socketpair()
    proto = Recorder()
    Transport(loop, a, proto).start()
    b.sendall(b"last words")
    b.shutdown(socket.SHUT_WR)
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    assert bytes(proto.data) == b"last words"
    assert proto.events == ["made", "eof", "lost"]
    b.close()


def test_peer_reset_reports_error(loop: Loop) -> None:
    a, b = socket.socketpair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.start()
    b.close()
    t.write(b"x" * 100)
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    assert len(proto.lost) == 1


def test_pause_and_resume_reading(loop: Loop) -> None:
    a, b = socket.socketpair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.start()
    t.pause_reading()
    b.send(b"held")
    settle(loop)
    assert proto.data == b""
    t.resume_reading()
    loop.run_until(lambda: bool(proto.data), timeout=5)
    assert proto.data == b"held"
    t.abort()
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    b.close()


def make_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_both_ends_large_transfer(loop: Loop, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.create_default_context(cafile=str(cert))
    a, b = small_pair()
    server, client = Recorder(), Recorder()
    ts = Transport(loop, a, server, ssl_context=sctx, server_side=True)
    tc = Transport(loop, b, client, ssl_context=cctx, server_side=False,
                   server_hostname="localhost")
    tc.write(b"early ")  # queued until the handshake completes
    ts.start()
    tc.start()
    loop.run_until(lambda: "made" in server.events and "made" in client.events, timeout=10)
    assert tc.is_tls and ts.get_extra_info("ssl_object") is not None
    payload = bytes(range(256)) * 2000  # 512 KB: many records, partial writes
    for i in range(0, len(payload), 10_000):
        ts.write(payload[i:i + 10_000])
    tc.write(b"hello")
    loop.run_until(lambda: len(client.data) >= len(payload) and len(server.data) >= 11,
                   timeout=20)
    assert bytes(client.data) == payload
    assert bytes(server.data) == b"early hello"
    ts.close()
    loop.run_until(lambda: bool(server.lost) and bool(client.lost), timeout=10)
    assert server.lost == [None]


def test_tls_handshake_failure_reports_error(loop: Loop, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.create_default_context()  # does not trust our self-signed cert
    a, b = socket.socketpair()
    server, client = Recorder(), Recorder()
    Transport(loop, a, server, ssl_context=sctx).start()
    Transport(loop, b, client, ssl_context=cctx, server_side=False,
              server_hostname="localhost").start()
    loop.run_until(lambda: bool(client.lost) and bool(server.lost), timeout=10)
    assert isinstance(client.lost[0], ssl.SSLError)
    assert "made" not in client.events


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    return ours, peer


def test_close_with_linger_lets_a_sending_peer_finish(loop: Loop) -> None:
    """Closing with unread input resets a peer that is still sending (on Linux its
    sendall fails and it never reads our last words: checked by hand with linger=0);
    a lingering close drains instead, and the peer reads them, then our EOF."""
    ours, peer = _tcp_pair()
    protocol = Recorder()
    transport = Transport(loop, ours, protocol)
    transport.start()
    transport.pause_reading()  # what the peer sends now stays unread in our kernel buffer
    peer.sendall(b"x" * 100_000)
    transport.write(b"last words")
    transport.close(linger=2.0)
    settle(loop)
    peer.settimeout(5)
    try:
        for _ in range(3):  # the peer is still sending, like a browser mid-message
            peer.sendall(b"y" * 50_000)
            settle(loop)
        received = peer.recv(65536)
        assert peer.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        received = b"<reset>"
    assert received == b"last words"
    peer.close()  # our EOF ends a linger at once
    assert loop.run_until(lambda: bool(protocol.lost), timeout=5)
    assert protocol.lost == [None]


def test_linger_ends_at_its_deadline_when_the_peer_never_closes() -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        ours, peer = _tcp_pair()
        protocol = Recorder()
        transport = Transport(loop, ours, protocol)
        transport.start()
        transport.write(b"bye")
        transport.close(linger=2.0)
        settle(loop)
        assert transport.lingering
        peer.settimeout(5)
        assert peer.recv(100) == b"bye"
        assert peer.recv(100) == b""  # our FIN comes at once; the linger is for its input
        peer.sendall(b"still talking")  # read and discarded
        settle(loop)
        clock.advance(2.0 - EPS)
        settle(loop)
        assert protocol.lost == []
        assert transport.lingering
        clock.advance(EPS)
        settle(loop)
        assert protocol.lost == [None]
        assert not transport.lingering
        assert loop.timer_count == 0
        peer.close()

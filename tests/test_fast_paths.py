"""The fast paths: large messages without copies (the decoder's direct mode, a buffer sized for a large frame,
filled in place or by ``recv_into``), ``Connection.receive_buffer``/``receive_filled``,
``send_data_parts`` and ``Transport.write_parts``; on both kernels.

Every path is checked against the plain one (``receive_data`` / ``send_binary``): same
events, same bytes, same errors.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest
from helpers import as_events, frame
from test_transport import Recorder, drain, loop, make_cert, small_pair  # noqa: F401

from rfc6455 import (
    BinaryMessage,
    ClientConnection,
    ConnectionFailed,
    Event,
    ServerConnection,
    TextMessage,
    _frames,
)
from rfc6455._frames import DIRECT_MIN, FrameDecoder
from rfc6455._kernels import PYTHON_KERNELS, Kernels, native_kernels
from rfc6455._loop import Loop
from rfc6455._transport import Transport
from rfc6455.permessage_deflate import PerMessageDeflate


def _native() -> Kernels | None:
    try:
        return native_kernels()
    except ImportError:
        return None


KERNEL_PARAMS = [
    pytest.param(PYTHON_KERNELS, id="python"),
    pytest.param(_native(), id="c", marks=pytest.mark.skipif(_native() is None, reason="no C")),
]
KEY = b"\x01\x02\x03\x04"
BIG = bytes(i * 31 & 0xFF for i in range(DIRECT_MIN * 3 + 17))


def _feed_direct(conn: ServerConnection, wire: bytes, chunk: int) -> list[Event]:
    """Feed ``wire`` as an I/O layer would: into ``receive_buffer()`` when offered."""
    events: list[Event] = []
    pos = 0
    while pos < len(wire):
        target = conn.receive_buffer()
        if target is None:
            conn.receive_data(wire[pos : pos + chunk])
            pos += chunk
        else:
            with target:
                n = min(chunk, len(target), len(wire) - pos)
                target[:n] = wire[pos : pos + n]
            conn.receive_filled(n)
            pos += n
        events += conn.events()
    return events


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
@pytest.mark.parametrize("chunk", [1000, 65536, 300_000])
def test_direct_receive_matches_plain(kernels: Kernels, chunk: int) -> None:
    wire = (
        frame(0x2, b"small", mask=KEY)
        + frame(0x2, BIG, mask=KEY)
        + frame(0x9, b"ping", mask=KEY)
        + frame(0x1, ("é" * (DIRECT_MIN // 2 + 5)).encode(), mask=KEY)
        + frame(0x2, BIG[::-1], mask=KEY)
        + frame(0x2, b"tail", mask=KEY)
    )
    plain = ServerConnection(max_message_size=None, kernels=kernels)
    expected: list[Event] = []
    for i in range(0, len(wire), chunk):
        expected += plain.receive(wire[i : i + chunk])
    direct = ServerConnection(max_message_size=None, kernels=kernels)
    got = _feed_direct(direct, wire, chunk)
    assert got == expected
    assert [type(e) for e in got][:2] == [BinaryMessage, BinaryMessage]
    assert got[1] == BinaryMessage(data=BIG)
    assert got[3] == TextMessage(data="é" * (DIRECT_MIN // 2 + 5))
    assert direct.buffered_bytes == 0 and not direct.receiving
    assert direct.data_to_send() == plain.data_to_send()


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
def test_direct_mode_fails_fast_on_invalid_utf8(kernels: Kernels) -> None:
    text = b"a" * DIRECT_MIN + b"\xff" + b"b" * DIRECT_MIN
    wire = frame(0x1, text, mask=KEY)
    conn = ServerConnection(max_message_size=None, kernels=kernels)
    # Everything but the last byte: the error is known long before the frame ends.
    events = _feed_direct(conn, wire[:-1], 50_000)
    assert events and isinstance(events[-1], ConnectionFailed) and events[-1].code == 1007
    assert conn.receive_buffer() is None and conn.buffered_bytes == 0


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
def test_direct_mode_keeps_the_size_limit(kernels: Kernels) -> None:
    conn = ServerConnection(max_message_size=DIRECT_MIN * 2, kernels=kernels)
    events = _feed_direct(conn, frame(0x2, BIG, mask=KEY)[: DIRECT_MIN], 4096)
    assert isinstance(events[-1], ConnectionFailed) and events[-1].code == 1009


def test_decoder_allocates_only_after_a_quarter_arrived(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_frames, "_POOL", [])  # no buffer held already
    decoder = FrameDecoder(expect_masked=True)
    wire = frame(0x2, BIG, mask=KEY)
    decoder.feed(wire[:100])
    assert decoder.receive_buffer() is None  # a header that declares much: nothing reserved
    assert decoder.held == 100
    decoder.feed(wire[100 : len(wire) // 4 + 10])
    view = decoder.receive_buffer()
    assert view is not None
    assert len(view) == len(wire) - (len(wire) // 4 + 10)
    view.release()
    assert decoder.held == len(wire)  # the reservation is counted against budgets
    decoder.feed(wire[len(wire) // 4 + 10 :])
    decoder.release()
    assert len(_frames._POOL) == 1  # given back for the next large frame
    decoder.feed(wire[:100])
    view = decoder.receive_buffer()  # a pooled buffer fits: taken at once
    assert view is not None and len(view) == len(wire) - 100
    with pytest.raises(ValueError):
        decoder.filled(len(wire))


def test_receive_buffer_none_after_close() -> None:
    conn = ServerConnection(max_message_size=None)
    conn.receive_data(frame(0x2, BIG, mask=KEY)[: len(BIG) // 2])
    assert conn.receive_buffer() is not None
    conn.receive_data(b"")
    assert conn.receive_buffer() is None


@pytest.mark.parametrize("role", ["server", "client", "server-deflate"])
@pytest.mark.parametrize("data", [b"x" * 70_000, "é" * 40_000, b"", bytearray(b"ab")])
def test_send_data_parts_equals_send(role: str, data: str | bytes | bytearray) -> None:
    def make() -> ServerConnection | ClientConnection:
        if role == "client":
            return ClientConnection()
        ext = [PerMessageDeflate()] if role == "server-deflate" else []
        return ServerConnection(extensions=ext)

    a, b = make(), make()
    for conn in (a, b):
        conn.receive_data(frame(0x9, b"p", mask=None if role == "client" else KEY))
    head, body = a.send_data_parts(data)
    whole = b.send_text(data) if isinstance(data, str) else b.send_binary(data)
    if role == "client":  # masked with fresh keys: compare the decoded frames
        assert body == b"" and len(head) == len(whole)
        return
    assert head + body == whole
    if role == "server" and len(data) > 1000:
        assert body is not data or isinstance(data, bytes)
        assert len(head) < 20  # the pong and the header, never the payload


def test_write_parts_partial_writes_keep_order(loop: Loop) -> None:  # noqa: F811
    a, b = small_pair()
    proto = Recorder()
    t = Transport(loop, a, proto)
    t.start()
    head, body = b"HEAD", os.urandom(300_000)
    buffered = t.write_parts(head, body)
    assert buffered == t.write_buffer_size > 0
    t.write(b"after")
    got = drain(loop, b, len(head) + len(body) + 5)
    assert got == head + body + b"after"
    t.close()
    loop.run_until(lambda: bool(proto.lost), timeout=5)
    b.close()


def test_write_parts_tls_falls_back(loop: Loop, tmp_path: Path) -> None:  # noqa: F811
    cert, key = make_cert(tmp_path)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.create_default_context(cafile=str(cert))
    a, b = socket.socketpair()
    server, client = Recorder(), Recorder()
    ts = Transport(loop, a, server, ssl_context=sctx, server_side=True)
    tc = Transport(loop, b, client, ssl_context=cctx, server_side=False,
                   server_hostname="localhost")
    ts.start()
    tc.start()
    loop.run_until(lambda: "made" in server.events and "made" in client.events, timeout=10)
    body = os.urandom(200_000)
    ts.write_parts(b"H", body)
    loop.run_until(lambda: len(client.data) >= len(body) + 1, timeout=20)
    assert bytes(client.data) == b"H" + body
    ts.abort()
    tc.abort()
    loop.run_until(lambda: bool(server.lost) and bool(client.lost), timeout=10)


class _Into(Recorder):
    """A protocol that takes reads into its own buffer (the zero-copy read path)."""

    __slots__ = ("target",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.target = bytearray(size)

    def receive_buffer(self) -> memoryview | None:
        free = len(self.target) - len(self.data)
        return memoryview(self.target)[len(self.data) :] if free else None

    def receive_filled(self, nbytes: int) -> None:
        start = len(self.data)
        self.data += self.target[start : start + nbytes]


def test_transport_reads_into_the_protocols_buffer(loop: Loop) -> None:  # noqa: F811
    a, b = socket.socketpair()
    proto = _Into(1000)
    t = Transport(loop, a, proto)
    t.start()
    payload = os.urandom(1500)
    b.sendall(payload)
    loop.run_until(lambda: len(proto.data) >= 1500, timeout=5)
    assert bytes(proto.data) == payload  # 1000 into its buffer, the rest as data_received
    b.close()
    loop.run_until(lambda: proto.eof, timeout=5)
    t.abort()
    loop.run_until(lambda: bool(proto.lost), timeout=5)


# -- small messages: decoding in the caller's buffer, raw messages, the bound scanner -----


def _wire_mix() -> bytes:
    return (
        frame(0x2, b"bin", mask=KEY)
        + frame(0x1, "héllo".encode(), mask=KEY)
        + frame(0x9, b"p", mask=KEY)
        + frame(0x1, b"frag", fin=False, mask=KEY)
        + frame(0x0, b"ment", mask=KEY)
        + frame(0x2, bytes(300), mask=KEY)
    )


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
@pytest.mark.parametrize("chunk", [1, 7, 64, 100_000])
def test_receive_messages_matches_receive(kernels: Kernels, chunk: int) -> None:
    wire = _wire_mix() * 3 + frame(0x1, b"\xff", mask=KEY)  # ends in a 1007
    plain = ServerConnection(kernels=kernels)
    fast = ServerConnection(kernels=kernels)
    expected: list[object] = []
    got: list[object] = []
    for i in range(0, len(wire), chunk):
        piece = wire[i : i + chunk]
        expected += plain.receive(piece)
        buf = bytearray(piece) + bytearray(b"garbage")  # only the first nbytes count
        for item in fast.receive_messages(buf, len(piece)):
            if isinstance(item, str):
                item = TextMessage(data=item)
            elif isinstance(item, bytes):
                item = BinaryMessage(data=item)
            got.append(item)
        assert fast.data_to_send() == plain.data_to_send()
    assert got == expected
    assert isinstance(got[-1], ConnectionFailed) and got[-1].code == 1007
    assert fast.receive_messages(bytearray(), 0) == plain.receive(b"")


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
def test_receive_messages_many_frames_in_one_read(kernels: Kernels) -> None:
    from rfc6455._frames import MAX_FRAMES_PER_SCAN

    count = MAX_FRAMES_PER_SCAN * 2 + 3
    wire = frame(0x2, b"ab", mask=KEY) * count
    conn = ServerConnection(kernels=kernels)
    assert conn.receive_messages(bytearray(wire), len(wire)) == [b"ab"] * count


def _one_frame_reads() -> list[bytes]:
    """Reads of one frame each (what take_frame takes) and of everything else."""
    reads = [frame(0x2, b"bin", mask=KEY), frame(0x1, "héllo".encode(), mask=KEY)]
    reads += [frame(0x2, b"", mask=KEY), frame(0x1, b"", mask=KEY)]
    reads += [frame(0x2, bytes(range(256)) * 10, mask=KEY), frame(0x1, b"t" * 3000, mask=KEY)]
    reads += [frame(0x2, b"w" * 70_000, mask=KEY)]  # 64-bit length: the general path
    reads += [frame(0x9, b"p", mask=KEY), frame(0xA, b"q", mask=KEY)]
    reads += [frame(0x1, b"frag", fin=False, mask=KEY), frame(0x2, b"x", mask=KEY)]  # 1002
    return reads


def _receive_fast(conn: ServerConnection | ClientConnection, read: bytes) -> list[object]:
    """What the loop does with one read: receive_one, else receive_messages."""
    buf = bytearray(read) + bytearray(b"garbage")  # only the first nbytes count
    one = conn.receive_one(buf, len(read))
    if one is not None:
        return [one]
    return list(conn.receive_messages(buf, len(read)))


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
@pytest.mark.parametrize("max_size", [None, 100, 3000])
@pytest.mark.parametrize("extra", [b"", b"\x81"])  # a read with a byte of the next frame
def test_receive_one_matches_receive(kernels: Kernels, max_size: int | None, extra: bytes) -> None:
    reads = _one_frame_reads()
    reads += [frame(0x1, b"\xff", mask=KEY), frame(0x2, b"after", mask=KEY)]
    plain = ServerConnection(kernels=kernels, max_message_size=max_size)
    fast = ServerConnection(kernels=kernels, max_message_size=max_size)
    expected: list[object] = []
    got: list[object] = []
    for read in reads:
        read += extra
        expected += plain.receive(read)
        got += as_events(_receive_fast(fast, read))
        assert fast.data_to_send() == plain.data_to_send()
        assert fast.state == plain.state
    assert got == expected
    assert isinstance(got[-1], ConnectionFailed)


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
def test_receive_one_takes_only_the_plain_case(kernels: Kernels) -> None:
    conn = ServerConnection(kernels=kernels)
    assert conn.receive_one(bytearray(frame(0x2, b"ok", mask=KEY)), 8) == b"ok"
    assert conn.receive_one(bytearray(frame(0x1, "é".encode(), mask=KEY)), 8) == "é"
    untouched = [
        frame(0x2, b"ab", mask=None),  # unmasked from a client: 1002 by the general path
        frame(0x2, b"ab", rsv=4, mask=KEY),  # an extension bit
        frame(0x2, b"ab", fin=False, mask=KEY),
        frame(0x9, b"ab", mask=KEY),
        frame(0x2, b"ab", mask=KEY)[:-1],  # incomplete
        frame(0x2, b"ab", mask=KEY) * 2,  # two frames
        bytes([0x82, 0xFE, 0, 5]) + KEY + b"abcde",  # 16-bit length for 5 bytes: 1002
    ]
    for wire in untouched:
        buf = bytearray(wire)
        assert conn.receive_one(buf, len(buf)) is None
        assert buf == wire
    client = ClientConnection(kernels=kernels)
    assert client.receive_one(bytearray(frame(0x2, b"hi")), 4) == b"hi"
    assert client.receive_one(bytearray(frame(0x2, b"hi", mask=KEY)), 8) is None


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
def test_receive_one_waits_for_a_partial_frame_and_a_fragmented_message(kernels: Kernels) -> None:
    conn = ServerConnection(kernels=kernels)
    whole = frame(0x2, b"abcdef", mask=KEY)
    assert conn.receive_messages(bytearray(whole[:3]), 3) == []
    buf = bytearray(whole[3:])
    assert conn.receive_one(buf, len(buf)) is None  # the decoder holds the start
    assert conn.receive_messages(buf, len(buf)) == [b"abcdef"]
    start = frame(0x1, b"ab", fin=False, mask=KEY)
    assert conn.receive_messages(bytearray(start), len(start)) == []
    buf = bytearray(frame(0x2, b"x", mask=KEY))
    assert conn.receive_one(buf, len(buf)) is None  # mid-message: the general path fails it
    failed = conn.receive_messages(buf, len(buf))
    assert isinstance(failed[-1], ConnectionFailed) and failed[-1].code == 1002


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
@pytest.mark.parametrize("chunk", [1000, 70_000, len(BIG) + 20])
def test_after_a_large_frame_receive_one_takes_the_next_read(kernels: Kernels, chunk: int) -> None:
    """receive_one trusts ``decoder.end == 0`` to mean nothing is buffered, large-frame
    mode included: after a large frame read in place, the next plain read is taken."""
    conn = ServerConnection(kernels=kernels, max_message_size=None)
    events = _feed_direct(conn, frame(0x2, BIG, mask=KEY), chunk)
    assert events == [BinaryMessage(data=BIG)]
    assert conn._decoder.end == 0 and not conn._decoder._direct
    buf = bytearray(frame(0x1, b"next", mask=KEY))
    assert conn.receive_one(buf, len(buf)) == "next"


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
def test_receive_one_fails_invalid_utf8_with_1007(kernels: Kernels) -> None:
    conn = ServerConnection(kernels=kernels)
    wire = frame(0x1, b"ok\xc3\x28", mask=KEY)
    buf = bytearray(wire)
    assert conn.receive_one(buf, len(buf)) is None
    events = conn.receive_messages(buf, len(buf))
    assert events == [ConnectionFailed(code=1007, reason="invalid UTF-8 in text message")]
    assert conn.data_to_send() == frame(0x8, (1007).to_bytes(2, "big") + b"invalid UTF-8 in text message")


@pytest.mark.parametrize("kernels", KERNEL_PARAMS)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "wire",
    [
        frame(0x1, b"ok", fin=False, mask=KEY) + frame(0x0, b"\xff\xfe", mask=KEY),  # 1007
        frame(0x1, b"a\xed\xa0", fin=False, mask=KEY),  # 1007 at a fragment: fail fast
        frame(0x2, b"x" * 300, mask=KEY),  # 1009 with max_message_size=100
        frame(0x3, b"", mask=KEY),  # 1002
    ],
)
def test_a_failure_keeps_no_hold_on_the_callers_buffer(
    kernels: Kernels, stream: bool, wire: bytes
) -> None:
    """receive_messages does not keep ``buf``: not even through the failure's exception
    chain (a traceback's frames hold views of it), so the caller may resize it."""
    conn = ServerConnection(kernels=kernels, stream_messages=stream, max_message_size=100)
    buf = bytearray(wire)
    events = conn.receive_messages(buf, len(buf))
    assert isinstance(events[-1], ConnectionFailed)
    buf.extend(b"more")  # BufferError if a view of it were still alive
    del buf[:]


@pytest.mark.skipif(_native() is None, reason="rfc6455._native is not built")
@pytest.mark.parametrize("masked", [True, False])
def test_take_frame_matches_the_twin(masked: bool) -> None:
    from rfc6455._kernels_py import take_frame as twin

    native = _native()
    assert native is not None
    key = KEY if masked else None
    cases = [frame(op, b"p" * n, fin=fin, rsv=rsv, mask=key)
             for op in (0x0, 0x1, 0x2, 0x9)
             for n in (0, 1, 125, 126, 65535, 65536)
             for fin in (True, False)
             for rsv in (0, 4)]
    cases += [frame(0x2, b"ab", mask=None if masked else KEY), b"", b"\x82", bytes([0x82, 0xFE, 0])]
    cases += [bytes([0x82, 0xFE, 0, 5]) + KEY + b"abcde", bytes([0x82, 0x7E, 0, 5]) + b"abcde"]
    for wire in cases:
        for end in {len(wire), max(len(wire) - 1, 0), min(len(wire), 1)}:
            for limit in (-1, 0, 125, 1 << 20, (1 << 63) - 1, 1 << 70):
                a, b = bytearray(wire), bytearray(wire)
                assert native.take_frame(a, end, masked, limit) == twin(b, end, masked, limit)
                assert a == b
                if not masked:  # a client's buffer may be read-only: nothing is written
                    ro = bytes(wire)
                    assert native.take_frame(ro, end, masked, limit) == twin(ro, end, masked, limit)
    for take in (native.take_frame, twin):
        for end in (4, -1):
            with pytest.raises(ValueError):
                take(bytearray(3), end, masked, 10)


@pytest.mark.skipif(_native() is None, reason="rfc6455._native is not built")
def test_a_pinned_buffer_is_read_in_place_and_released_by_unpin() -> None:
    from rfc6455._kernels import pin_buffer, unpin_buffer

    native = _native()
    assert native is not None
    buf = bytearray(64)
    pin_buffer(buf)
    try:
        with pytest.raises(BufferError):
            buf.extend(b"x")  # the kernels hold its address: it cannot move
        wire = frame(0x2, b"pinned", mask=KEY)
        buf[: len(wire)] = wire
        taken = native.take_frame(buf, len(wire), True, 100)
        assert buf[taken >> 4 : len(wire)] == b"pinned"
    finally:
        unpin_buffer(buf)
    buf.extend(b"x")  # free again
    unpin_buffer(buf)  # twice: ignored


@pytest.mark.skipif(_native() is None, reason="rfc6455._native is not built")
def test_pinned_take_frame_is_take_frame_on_that_buffer() -> None:
    from rfc6455._kernels import pin_buffer, pinned_take_frame, unpin_buffer

    native = _native()
    assert native is not None
    buf = bytearray(200)
    assert pinned_take_frame(native, buf) is None  # not pinned
    pin_buffer(buf)
    try:
        assert pinned_take_frame(PYTHON_KERNELS, buf) is None  # no C kernels to bind
        take = pinned_take_frame(native, buf)
        assert take is not None
        cases = [frame(0x2, b"q" * 130, mask=KEY), frame(0x1, b"txt", mask=KEY),
                 frame(0x1, b"txt", mask=KEY, fin=False), frame(0x9, b"", mask=KEY), b"\x82"]
        for wire in cases:
            for end in (len(wire), len(wire) - 1):
                for limit in (0, 100, (1 << 63) - 1):
                    copy = bytearray(buf)
                    buf[: len(wire)] = wire
                    copy[: len(wire)] = wire
                    assert take(end, True, limit) == native.take_frame(copy, end, True, limit)
                    assert buf == copy
        assert take(201, True, 100) == -2  # where take_frame raises ValueError
        assert take(-1, True, 100) == -2
    finally:
        unpin_buffer(buf)


@pytest.mark.parametrize("python_kernels", [False, True])
def test_receive_one_on_a_pinned_buffer_read_again_and_again(python_kernels: bool) -> None:
    from rfc6455._kernels import PinnedBuffer

    kernels = PYTHON_KERNELS if python_kernels else None
    conn = ServerConnection(kernels=kernels, max_message_size=1000)
    holder = PinnedBuffer(256)
    buf = holder.buf
    for i, (op, payload) in enumerate([(0x2, b"a" * 40), (0x1, "é" * 20), (0x2, b"")] * 3):
        data = payload.encode() if isinstance(payload, str) else payload
        wire = frame(op, data, mask=KEY)
        buf[: len(wire)] = wire
        assert conn.receive_one(buf, len(wire)) == payload, i
    with pytest.raises(ValueError):
        conn.receive_one(buf, 257)
    bad = frame(0x1, b"\xff", mask=KEY)  # invalid UTF-8: the connection fails
    buf[: len(bad)] = bad
    assert conn.receive_one(buf, len(bad)) is None
    assert isinstance(conn.receive_messages(buf, len(bad))[-1], ConnectionFailed)


def test_a_pinned_buffer_is_unpinned_when_its_holder_goes() -> None:
    import gc

    from rfc6455 import _kernels

    holder = _kernels.PinnedBuffer(64)
    key = id(holder.buf)
    assert (key in _kernels._PINNED) == (_native() is not None)
    buf = holder.buf
    del holder
    gc.collect()
    assert key not in _kernels._PINNED
    buf.extend(b"x")  # nothing holds its address any more


@pytest.mark.skipif(_native() is None, reason="rfc6455._native is not built")
def test_a_connection_that_read_a_pinned_buffer_keeps_it_valid_after_unpin() -> None:
    from rfc6455._kernels import pin_buffer, unpin_buffer

    conn = ServerConnection(kernels=_native())
    buf = bytearray(64)
    pin_buffer(buf)
    wire = frame(0x2, b"one", mask=KEY)
    buf[: len(wire)] = wire
    assert conn.receive_one(buf, len(wire)) == b"one"
    unpin_buffer(buf)
    with pytest.raises(BufferError):
        buf.extend(b"x")  # the connection still holds its address: it must not move
    buf[: len(wire)] = wire
    assert conn.receive_one(buf, len(wire)) == b"one"
    del conn
    buf.extend(b"x")


def test_the_loop_pins_its_read_buffer_until_closed() -> None:
    from rfc6455 import _kernels

    loop_ = Loop()
    buf = loop_.read_buffer
    pinned = id(buf) in _kernels._PINNED
    assert pinned == (_native() is not None)
    loop_.close()
    assert id(buf) not in _kernels._PINNED


@pytest.mark.parametrize("data", [b"", b"x" * 125, b"y" * 126, b"z" * 70_000, "é" * 100, "a"])
@pytest.mark.parametrize("pong", [False, True])
def test_send_message_equals_send_text_or_binary(data: str | bytes, pong: bool) -> None:
    a, b = ServerConnection(), ServerConnection()
    if pong:
        for conn in (a, b):
            conn.receive_data(frame(0x9, b"p", mask=KEY))
    whole = b.send_text(data) if isinstance(data, str) else b.send_binary(data)
    assert a.send_message(data) == whole
    client_a = ClientConnection()
    assert len(client_a.send_message(data)) == len(ClientConnection().send_message(data))


def test_send_message_keeps_the_checks() -> None:
    from rfc6455 import ConnectionClosed, LocalProtocolError

    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_message("\ud800")
    conn.send_fragment(b"a", final=False)
    with pytest.raises(LocalProtocolError):
        conn.send_message(b"b")
    conn.send_fragment(b"c", final=True)
    conn.close()
    with pytest.raises(ConnectionClosed):
        conn.send_message(b"late")


@pytest.mark.skipif(_native() is None, reason="rfc6455._native is not built")
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("max_payload", [-1, 0, 5, 1 << 20, (1 << 63) - 1, 1 << 70])
def test_bound_scan_matches_the_twin(masked: bool, max_payload: int) -> None:
    from rfc6455._kernels import bind_scan
    from rfc6455._kernels_py import scan_frames as twin

    native = _native()
    assert native is not None
    bound = bind_scan(native.scan_frames, masked, 0x40, max_payload)
    assert bound is not None
    assert bind_scan(twin, masked, 0x40, max_payload) is None  # the twin is called as is
    pieces = [
        frame(0x2, b"hello", mask=KEY if masked else None),
        frame(0x1, b"x" * 200, rsv=4, mask=KEY if masked else None),
        frame(0x9, b"", mask=KEY if masked else None),
        frame(0x2, b"y" * 70_000, mask=KEY if masked else None)[:1000],
    ]
    for wire in (b"".join(pieces), frame(0x3, b"", mask=KEY), frame(0x2, b"ab", mask=None)):
        for start in (0, 1):
            a, b = bytearray(wire), bytearray(wire)
            expected = twin(a, start, len(a), masked, 0x40, max_payload, 4096)
            assert bound(b, start, len(b)) == expected
            assert a == b  # unmasked the same way, in place
    with pytest.raises(ValueError):
        bound(bytearray(3), 2, 1)


# -- the handshake's plain 101, formatted without h11's writer ----------------------------


def test_plain_101_is_what_h11_writes() -> None:
    import h11

    from rfc6455 import ServerHandshake

    request = (
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    handshake = ServerHandshake()
    handshake.receive_data(request + frame(0x2, b"early", mask=KEY))
    upgrade = handshake.next_event()
    data = handshake.accept(upgrade)  # type: ignore[arg-type]
    reference = h11.Connection(h11.SERVER)
    reference.receive_data(request)
    reference.next_event()
    expected = reference.send(
        h11.InformationalResponse(
            status_code=101,
            headers=[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ],
            reason=b"Switching Protocols",
        )
    )
    assert data == expected
    assert handshake.trailing_data == frame(0x2, b"early", mask=KEY)
    assert handshake.connection.receive(b"") != []


# -- end to end: the server's large-message paths (direct reads, gathering writes) --------


def test_server_echoes_large_messages_back_to_back() -> None:
    from test_server import running_server, url

    from rfc6455 import Config, connect

    messages: list[str | bytes] = [
        os.urandom(1 << 20),
        "é" * (300_000),
        b"small",
        os.urandom(3 << 20),
        os.urandom(DIRECT_MIN + 1),
    ]
    with (
        running_server(Config(port=0, max_message_size=4 << 20)) as server,
        connect(url(server), max_message_size=4 << 20) as ws,
    ):
        for message in messages:  # all in flight at once, then all back in order
            ws.send(message)
        for message in messages:
            assert ws.recv(timeout=20) == message


def test_a_much_larger_pooled_buffer_is_kept_for_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = bytearray(DIRECT_MIN * 40)
    monkeypatch.setattr(_frames, "_POOL", [huge])
    assert len(_frames._take_buffer(DIRECT_MIN)) == DIRECT_MIN
    assert _frames._POOL == [huge]
    assert _frames._take_buffer(DIRECT_MIN * 20) is huge

"""Write the seed corpus of every harness: ``python fuzz/make_corpus.py``.

Seeds are named ``seed-*``; the file contents are the harness's configuration
header followed by the peer's bytes (see the harness docstrings). Masking keys
come from a fixed-seed RNG, so running this again writes the same bytes; the
test suite checks that the files on disk match. Files named ``found-*`` are
inputs the fuzzers found, kept as regression tests, and are never touched.

This script builds frames by hand (and compresses with zlib directly): seeds
should not depend on the code they test.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAMES_DIR = HERE / "corpus" / "frames"
HANDSHAKE_DIR = HERE / "corpus" / "handshake"
CLIENT_DIR = HERE / "corpus" / "client"
DEFLATE_DIR = HERE / "corpus" / "deflate"
ENVELOPE_DIR = HERE / "corpus" / "envelope"

# Frame-harness flags (fuzz_frames.py, byte 0) and table indexes.
CLIENT, STREAM, DEFLATE, LOCAL_CLOSE, ECHO = 0x01, 0x02, 0x04, 0x08, 0x10
MAX_NONE, MAX_1MIB, MAX_0, MAX_16, MAX_125, MAX_1000 = 0, 1, 2, 6, 7, 10
WHOLE, ONE, TWO, THREE, SEVEN, ODD = 0, 1, 3, 4, 7, 10  # indexes into CHUNK_SIZES

# Handshake-harness flags (fuzz_handshake.py, byte 0).
H_CLIENT, H_SUBPROTOCOLS, H_DEFLATE, H_CHECK, H_EOF = 0x01, 0x02, 0x04, 0x08, 0x10

_rng = random.Random(6455)


def frames_header(
    flags: int = 0,
    max_index: int = MAX_1MIB,
    chunks: tuple[int, int, int, int] = (WHOLE, WHOLE, WHOLE, WHOLE),
    deflate_params: int = 0x1C,  # window 15, context takeover both ways
    scan_byte: int = 0x05,
) -> bytes:
    """The 8-byte configuration header of fuzz_frames.py."""
    return bytes((flags, max_index, *chunks, deflate_params, scan_byte))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    encoding: int | None = None,
) -> bytes:
    """One frame; ``length`` / ``encoding`` (7, 16 or 64 bits) forge bad headers."""
    n = len(payload) if length is None else length
    bits = encoding or (7 if n < 126 else 16 if n < 65536 else 64)
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if bits == 7:
        header = bytes((first, mask_bit | n))
    elif bits == 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return header + payload
    key = bytes(_rng.randrange(256) for _ in range(4))
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + body


def deflate(message: bytes, wbits: int = 15, level: int = 6) -> bytes:
    """A permessage-deflate payload (RFC 7692 §7.2.1: sync flush, tail removed)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def deflate_final(message: bytes) -> bytes:
    """A payload ending its DEFLATE stream with a BFINAL block (RFC 7692 §7.2.3.4)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(message) + compressor.flush(zlib.Z_FINISH)


def deflate_fragments(message: bytes, parts: int) -> list[bytes]:
    """One compressed message cut into ``parts`` flushed fragments."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    step = max(1, len(message) // parts)
    pieces = [message[i : i + step] for i in range(0, len(message), step)]
    out = [compressor.compress(p) + compressor.flush(zlib.Z_SYNC_FLUSH) for p in pieces]
    out[-1] = out[-1][:-4]
    return out


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def frame_seeds() -> Iterator[tuple[str, bytes]]:
    """(name, contents) of every frame-harness seed."""
    _rng.seed(6455)
    h = frames_header
    text, binary, ping, pong, close, cont = 0x1, 0x2, 0x9, 0xA, 0x8, 0x0

    # RFC 6455 §5.7 examples, in both roles.
    yield "rfc-hello-unmasked", h(CLIENT) + bytes.fromhex("810548656c6c6f")
    yield "rfc-hello-masked", h() + bytes.fromhex("818537fa213d7f9f4d5158")
    yield "rfc-hello-fragmented", h(CLIENT) + bytes.fromhex("010348656c80026c6f")
    yield "rfc-ping-unmasked", h(CLIENT) + bytes.fromhex("890548656c6c6f")
    yield "rfc-pong-masked", h() + bytes.fromhex("8a8537fa213d7f9f4d5158")
    yield "rfc-256-binary-header", h(CLIENT) + bytes.fromhex("827e0100") + bytes(256)
    yield "rfc-64k-binary-header-only", h(CLIENT) + bytes.fromhex("827f0000000000010000") + b"x"

    # Every kind of frame, masked (server) and unmasked (client).
    for role, masked, tag in ((0, True, "server"), (CLIENT, False, "client")):
        def f(*args: object, masked: bool = masked, **kw: object) -> bytes:
            return frame(*args, masked=masked, **kw)  # type: ignore[arg-type]

        yield f"{tag}-text", h(role) + f(text, "héllo wörld ✓".encode())
        yield f"{tag}-binary-empty", h(role) + f(binary)
        yield f"{tag}-binary-125", h(role) + f(binary, bytes(range(125)))
        yield f"{tag}-binary-126", h(role, chunks=(SEVEN, ONE, TWO, WHOLE)) + f(binary, b"b" * 126)
        yield f"{tag}-binary-300-16bit", h(role, chunks=(ODD,) * 4) + f(binary, b"\x00\xff" * 150)
        yield f"{tag}-ping-pong", h(role) + f(ping, b"p1") + f(pong, b"p2") + f(ping)
        yield f"{tag}-ping-125", h(role) + f(ping, b"P" * 125)
        yield f"{tag}-fragmented-text-ping-inside", h(role, chunks=(THREE,) * 4) + (
            f(text, b"fr", fin=False) + f(ping, b"!") + f(cont, b"ag", fin=False)
            + f(cont, b"ment")
        )
        yield f"{tag}-fragmented-binary", h(role) + (
            f(binary, b"\x01" * 10, fin=False) + f(cont, b"\x02" * 200, fin=False) + f(cont, b"")
        )
        yield f"{tag}-utf8-split-across-fragments", h(role, chunks=(ONE,) * 4) + (
            f(text, b"A\xc3", fin=False) + f(cont, b"\xa9\xe2\x9c", fin=False) + f(cont, b"\x93")
        )
        yield f"{tag}-close-empty", h(role) + f(close)
        yield f"{tag}-close-1000-reason", h(role) + f(close, close_payload(1000, b"bye"))
        yield f"{tag}-close-4999", h(role) + f(close, close_payload(4999))
        yield f"{tag}-close-3000-data-after", h(role) + f(close, close_payload(3000)) + f(text, b"x")
        yield f"{tag}-many-small", h(role) + b"".join(f(binary, bytes([i]) * i) for i in range(40))
        yield f"{tag}-stream-text", h(role | STREAM, chunks=(TWO,) * 4) + (
            f(text, b"ab", fin=False) + f(cont, "\xe9".encode(), fin=False) + f(cont, b"")
        )
        yield f"{tag}-local-close-then-ping", h(role | LOCAL_CLOSE) + f(ping, b"x") + f(
            close, close_payload(1000)
        )
        yield f"{tag}-incomplete-at-eof", h(role) + f(text, b"incomplete")[:-3]

    # Known-bad inputs (server role unless the rule is about the client).
    bad = {
        "bad-unmasked-to-server": h() + frame(binary, b"x", masked=False),
        "bad-masked-to-client": h(CLIENT) + frame(binary, b"x", masked=True),
        "bad-rsv1-no-extension": h() + frame(text, b"x", rsv=0x40),
        "bad-rsv3": h() + frame(binary, b"x", rsv=0x10),
        "bad-opcode-3": h() + frame(0x3, b"x"),
        "bad-opcode-b": h() + frame(0xB),
        "bad-ping-126": h() + frame(ping, b"p" * 126),
        "bad-ping-fragmented": h() + frame(ping, b"p", fin=False),
        "bad-close-one-byte": h() + frame(close, b"\x03"),
        "bad-close-1005": h() + frame(close, close_payload(1005)),
        "bad-close-999": h() + frame(close, close_payload(999)),
        "bad-close-2999": h() + frame(close, close_payload(2999)),
        "bad-close-reason-utf8": h() + frame(close, close_payload(1000, b"\xff")),
        "bad-length-16bit-non-minimal": h() + frame(binary, b"abc", encoding=16),
        "bad-length-64bit-non-minimal": h() + frame(binary, b"a" * 200, encoding=64),
        "bad-length-64bit-msb": h(CLIENT) + bytes.fromhex("827f8000000000000000"),
        "bad-continuation-without-message": h() + frame(cont, b"x"),
        "bad-new-message-inside-fragmented": h() + frame(text, b"a", fin=False) + frame(
            binary, b"b"
        ),
        "bad-utf8-single-frame": h() + frame(text, b"ok\xff"),
        "bad-utf8-first-fragment-unfinished": h(chunks=(SEVEN,) * 4) + frame(
            text, b"ab\xc0\xafcdefgh", fin=False
        ),
        "bad-utf8-surrogate": h() + frame(text, b"\xed\xa0\x80"),
        "bad-utf8-truncated-at-end": h() + frame(text, b"\xe2\x82"),
        "bad-message-over-limit": h(max_index=MAX_16) + frame(binary, b"x" * 17),
        "bad-fragmented-over-limit": h(max_index=MAX_16, chunks=(ONE,) * 4) + (
            frame(binary, b"x" * 10, fin=False) + frame(cont, b"y" * 10)
        ),
        "bad-stream-over-limit": h(STREAM, max_index=MAX_16) + (
            frame(text, b"x" * 10, fin=False) + frame(cont, b"y" * 10)
        ),
        "bad-limit-zero": h(max_index=MAX_0) + frame(binary, b"x"),
        "bad-after-good": h() + frame(text, b"first") + frame(ping, b"p") + frame(0x7),
        "bad-garbage": h() + bytes(range(256)),
    }
    yield from bad.items()

    # permessage-deflate (RSV1 is claimed once the extension is negotiated).
    d = DEFLATE
    yield "deflate-text", h(d) + frame(text, deflate(b"Hello, Hello, Hello!"), rsv=0x40)
    yield "deflate-empty-message", h(d) + frame(binary, b"\x00", rsv=0x40)
    yield "deflate-uncompressed-message", h(d) + frame(text, b"plain")
    parts = deflate_fragments(b"abcdefgh" * 64, 3)
    yield "deflate-fragmented", h(d, chunks=(ODD, ONE, SEVEN, WHOLE)) + (
        frame(binary, parts[0], fin=False, rsv=0x40)
        + frame(ping, b"mid")
        + frame(cont, parts[1], fin=False)
        + frame(cont, parts[2])
    )
    yield "deflate-two-messages-context", h(d) + (
        frame(text, deflate(b"repeat repeat"), rsv=0x40) + frame(text, deflate(b"repeat"), rsv=0x40)
    )
    yield "deflate-no-context-takeover-window-9", h(d, deflate_params=0x07) + (
        frame(text, deflate(b"small window", wbits=9), rsv=0x40)
    )
    yield "deflate-client", h(d | CLIENT) + frame(text, deflate(b"to the client"), masked=False,
                                                  rsv=0x40)
    yield "deflate-stream", h(d | STREAM) + frame(binary, deflate(bytes(500)), rsv=0x40)
    yield "bad-deflate-bomb", h(d, max_index=MAX_1000) + frame(
        binary, deflate(bytes(100_000)), rsv=0x40
    )
    yield "bad-deflate-garbage", h(d) + frame(binary, b"\xff\xff\xff\xff", rsv=0x40)
    yield "bad-deflate-rsv1-on-continuation", h(d) + (
        frame(binary, deflate(b"ab"), fin=False, rsv=0x40) + frame(cont, b"x", rsv=0x40)
    )
    yield "bad-deflate-rsv1-on-ping", h(d) + frame(ping, b"x", rsv=0x40)
    yield "bad-deflate-rsv2", h(d) + frame(binary, b"x", rsv=0x20)
    yield "bad-deflate-utf8", h(d) + frame(text, deflate(b"\xff\xfe"), rsv=0x40)
    # Echo: what we send back must reach the peer intact (through the extension too).
    e = ECHO
    messages = frame(text, "échø".encode()) + frame(binary, bytes(300)) + frame(ping, b"p")
    yield "echo-server", h(e, chunks=(ONE,) * 4) + messages + frame(close, close_payload(1000))
    yield "echo-client", h(e | CLIENT) + frame(text, b"hi", masked=False) + frame(
        binary, b"\x00" * 70_000, masked=False
    )[:200]
    yield "echo-stream-fragmented", h(e | STREAM, chunks=(SEVEN, ONE, THREE, WHOLE)) + (
        frame(text, b"ab\xc3", fin=False) + frame(cont, b"\xa9cd", fin=False) + frame(cont, b"e")
        + frame(binary, b"12", fin=False) + frame(cont, b"34")
    )
    yield "echo-deflate", h(e | d) + frame(text, deflate(b"compress me " * 8), rsv=0x40) + frame(
        binary, b"uncompressed"
    )
    yield "echo-deflate-no-context-stream", h(e | d | STREAM, deflate_params=0x03) + (
        frame(binary, parts[0], fin=False, rsv=0x40) + frame(cont, parts[1], fin=False)
        + frame(cont, parts[2])
    )
    # Autobahn 7.1.1: a message and the close frame in one chunk; the echo goes first.
    yield "echo-same-chunk-as-close", h(e) + messages + frame(close, close_payload(1001))
    yield "echo-same-chunk-as-failure", h(e | CLIENT) + frame(text, b"a", masked=False) + frame(
        binary, b"b", masked=True
    )
    yield "echo-then-failure", h(e, chunks=(ONE,) * 4) + frame(text, b"ok") + frame(binary, b"x", rsv=0x20)
    # Added later than the seeds above, so as not to change their masking keys.
    # §7.2.3.4: a BFINAL block, with the RFC's trailing 0x00 in a later fragment.
    yield "deflate-final-block", h(d, chunks=(THREE, WHOLE, ONE, WHOLE)) + (
        frame(text, deflate_final(b"the end"), fin=False, rsv=0x40) + frame(cont, b"\x00")
        + frame(text, deflate(b"a new stream"), rsv=0x40)
    )
    yield "bad-deflate-after-final-block", h(d) + frame(
        binary, deflate_final(b"the end") + b"more", rsv=0x40
    )
    yield "bad-deflate-after-final-block-fragment", h(d) + (
        frame(binary, deflate_final(b"the end"), fin=False, rsv=0x40) + frame(cont, deflate(b"?"))
    )

    # Hostile input: a message held open by empty fragments ends in 1009 (each
    # is charged FRAGMENT_OVERHEAD); a ping flood is answered by one pong.
    yield "bad-empty-fragments", h(max_index=MAX_1000, chunks=(SEVEN, WHOLE, ODD, WHOLE)) + (
        frame(text, b"a", fin=False) + b"".join(frame(cont, b"", fin=False) for _ in range(80))
    )
    yield "bad-empty-fragments-stream", h(STREAM | CLIENT, max_index=MAX_1000) + (
        frame(binary, b"a", fin=False, masked=False)
        + frame(cont, b"", fin=False, masked=False) * 80
    )
    flood = b"".join(frame(ping, str(i).encode()) for i in range(60))
    yield "ping-flood", h(chunks=(ODD, SEVEN, ODD, WHOLE)) + flood + frame(text, b"after")

    # A pong waiting when we echo goes first, with the latest ping's payload.
    yield "echo-ping-flood", h(e | CLIENT, chunks=(ODD, WHOLE, SEVEN, WHOLE)) + b"".join(
        frame(ping, bytes([i]), masked=False) + frame(text, b"m%d" % i, masked=False) * (i % 3 == 0)
        for i in range(30)
    )


def handshake_seeds() -> Iterator[tuple[str, bytes]]:
    """(name, contents) of every handshake-harness seed."""
    _rng.seed(6456)

    def request(*headers: str, target: str = "/chat", method: str = "GET",
                version: str = "1.1") -> bytes:
        lines = [f"{method} {target} HTTP/{version}", *headers, "", ""]
        return "\r\n".join(lines).encode("latin-1")

    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    base = ("Host: example.com", "Upgrade: websocket", "Connection: Upgrade", key,
            "Sec-WebSocket-Version: 13")

    def without(name: str) -> tuple[str, ...]:
        return tuple(line for line in base if not line.lower().startswith(name.lower()))

    def hh(flags: int = 0, limit: int = 0, chunks: tuple[int, int] = (WHOLE, WHOLE)) -> bytes:
        return bytes((flags, limit, *chunks))

    hello = frame(0x1, b"Hello")
    yield "server-valid", hh() + request(*base)
    yield "server-valid-bytewise", hh(H_EOF, chunks=(ONE, ONE)) + request(*base)
    yield "server-valid-with-frames", hh(H_EOF, chunks=(SEVEN, ODD)) + request(*base) + hello
    yield "server-valid-subprotocol", hh(H_SUBPROTOCOLS) + request(
        *base, "Sec-WebSocket-Protocol: superchat, chat"
    )
    yield "server-valid-deflate", hh(H_DEFLATE) + request(
        *base, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10, "
        "permessage-deflate"
    ) + frame(0x1, deflate(b"compressed hello"), rsv=0x40)
    yield "server-valid-mixed-case-lists", hh() + request(
        "host: example.com", "UPGRADE: WebSocket", "connection: keep-alive, Upgrade", key,
        "sec-websocket-version: 13", "Origin: https://example.com",
    )
    yield "server-plain-http", hh() + request("Host: example.com", target="/healthz")
    yield "server-plain-http-post", hh() + b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    yield "server-refused-by-hook", hh(H_CHECK) + request(*base, target="/private/room")
    yield "server-bad-method", hh() + request(*base, method="POST")
    yield "server-bad-http10", hh() + request(*base, version="1.0")
    yield "server-bad-no-host", hh() + request(*without("host"))
    yield "server-bad-two-hosts", hh() + request(*base, "Host: other")
    yield "server-bad-no-upgrade", hh() + request(*without("upgrade"))
    yield "server-bad-no-connection", hh() + request(*without("connection"))
    yield "server-bad-version-8", hh() + request(*without("sec-websocket-version"),
                                                 "Sec-WebSocket-Version: 8")
    yield "server-bad-no-key", hh() + request(*without("sec-websocket-key"))
    yield "server-bad-key-15-bytes", hh() + request(*without("sec-websocket-key"),
                                                    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA")
    yield "server-bad-body", hh() + request(*base, "Content-Length: 2") + b"hi"
    yield "server-bad-extension-header", hh(H_DEFLATE) + request(
        *base, 'Sec-WebSocket-Extensions: permessage-deflate; x="a b"'
    )
    yield "server-bad-subprotocol", hh(H_SUBPROTOCOLS) + request(
        *base, "Sec-WebSocket-Protocol: chat, a@b"
    )
    yield "server-bad-header-too-large", hh(limit=2) + request(*base, "X-Pad: " + "p" * 200)
    yield "server-bad-http-garbage", hh(H_EOF) + b"\x00\x01GET / HTTP/1.1\r\n\r\n"
    yield "server-eof-mid-request", hh(H_EOF) + request(*base)[:40]

    accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def response(*headers: str, status: str = "101 Switching Protocols") -> bytes:
        return "\r\n".join([f"HTTP/1.1 {status}", *headers, "", ""]).encode("latin-1")

    ok = ("Upgrade: websocket", "Connection: Upgrade", accept)
    c = H_CLIENT
    yield "client-valid", hh(c) + response(*ok)
    yield "client-valid-with-frames", hh(c | H_EOF, chunks=(ODD, ONE)) + response(*ok) + frame(
        0x1, b"Hello", masked=False
    ) + frame(0x8, close_payload(1000), masked=False)
    yield "client-valid-subprotocol", hh(c | H_SUBPROTOCOLS) + response(
        *ok, "Sec-WebSocket-Protocol: chat"
    )
    yield "client-valid-deflate", hh(c | H_DEFLATE) + response(
        *ok, "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"
    )
    yield "client-continue-then-101", hh(c) + response(status="100 Continue") + response(*ok)
    yield "client-rejected-404", hh(c | H_EOF) + response(
        "Content-Length: 10", status="404 Not Found"
    ) + b"not found\n"
    yield "client-rejected-eof-in-body", hh(c | H_EOF) + response(
        "Content-Length: 100", status="503 Service Unavailable"
    ) + b"busy"
    yield "client-bad-accept", hh(c) + response("Upgrade: websocket", "Connection: Upgrade",
                                               "Sec-WebSocket-Accept: AAAA")
    yield "client-bad-unoffered-subprotocol", hh(c) + response(*ok, "Sec-WebSocket-Protocol: x")
    yield "client-bad-unoffered-extension", hh(c) + response(
        *ok, "Sec-WebSocket-Extensions: permessage-deflate"
    )
    yield "client-bad-garbage", hh(c | H_EOF) + b"HTTP/9 what\r\n\r\n"


# Client-harness flags (fuzz_client.py, byte 0; bits 4-6 pick the deflate offer).
C_SUBPROTOCOLS, C_DEFLATE, C_STREAM, C_ECHO = 0x01, 0x02, 0x04, 0x08
C_LIMIT_DEFAULT, C_LIMIT_64, C_LIMIT_256 = 0, 1, 3  # indexes into HEADER_LIMITS


def client_header(
    flags: int = 0,
    offer: int = 0,
    max_index: int = MAX_1MIB,
    limit: int = C_LIMIT_DEFAULT,
    chunks: tuple[int, int] = (WHOLE, WHOLE),
) -> bytes:
    """The 5-byte configuration header of fuzz_client.py."""
    return bytes((flags | offer << 4, max_index, limit, *chunks))


def client_seeds() -> Iterator[tuple[str, bytes]]:
    """(name, contents) of every client-harness seed: a server's bytes."""
    _rng.seed(6457)
    h = client_header
    text, binary, ping, close, cont = 0x1, 0x2, 0x9, 0x8, 0x0

    def f(opcode: int, payload: bytes = b"", **kw: object) -> bytes:
        return frame(opcode, payload, masked=False, **kw)  # type: ignore[arg-type]

    def response(*headers: str, status: str = "101 Switching Protocols") -> bytes:
        return "\r\n".join([f"HTTP/1.1 {status}", *headers, "", ""]).encode("latin-1")

    accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    ok = ("Upgrade: websocket", "Connection: Upgrade", accept)

    def switch(*extra: str) -> bytes:
        return response(*ok, *extra)

    def ext(params: str) -> str:
        return "Sec-WebSocket-Extensions: permessage-deflate" + params

    bye = f(close, close_payload(1000, b"bye"))
    talk = f(text, "héllo ✓".encode()) + f(binary, bytes(range(40))) + f(ping, b"p") + bye
    yield "valid-eof", h() + switch()
    yield "valid-frames-with-head", h(C_ECHO) + switch() + talk
    yield "valid-frames-bytewise", h(C_ECHO, chunks=(ONE, ONE)) + switch() + talk
    yield "valid-frames-split", h(chunks=(ODD, SEVEN)) + switch() + talk
    yield "valid-subprotocol", h(C_SUBPROTOCOLS) + switch("Sec-WebSocket-Protocol: superchat") + bye
    yield "valid-mixed-case", h() + response(
        "upgrade: WebSocket", "connection: keep-alive, Upgrade", accept.lower()[:22] + accept[22:],
        "Server: fuzz",
    ) + f(text, b"x")
    yield "valid-continue-then-101", h(chunks=(THREE, WHOLE)) + response(
        status="100 Continue"
    ) + switch() + f(text, b"after 100")
    yield "valid-early-hints-then-101", h() + response(
        "Link: </style.css>; rel=preload", status="103 Early Hints"
    ) + switch() + bye
    yield "valid-stream-echo", h(C_STREAM | C_ECHO, chunks=(SEVEN, TWO)) + switch() + (
        f(text, b"ab\xc3", fin=False) + f(cont, b"\xa9cd", fin=False) + f(ping, b"mid")
        + f(cont, b"e") + bye
    )
    yield "ping-flood", h(chunks=(ODD, SEVEN)) + switch() + b"".join(
        f(ping, str(i).encode()) for i in range(40)
    ) + f(text, b"after")
    yield "ping-flood-echo", h(C_ECHO, chunks=(ODD, WHOLE)) + switch() + b"".join(
        f(ping, bytes([i])) + f(text, b"m%d" % i) * (i % 3 == 0) for i in range(20)
    )

    # permessage-deflate, each offer of fuzz_client.DEFLATE_OFFERS.
    d = C_DEFLATE | C_ECHO
    yield "deflate-default", h(d) + switch(ext("")) + f(
        text, deflate(b"Hello, Hello, Hello!"), rsv=0x40
    ) + f(binary, b"plain") + bye
    yield "deflate-default-client-window", h(d, chunks=(ODD, ODD)) + switch(
        ext("; client_max_window_bits=10")
    ) + f(text, deflate(b"abc" * 300), rsv=0x40) + f(text, deflate(b"abc" * 10), rsv=0x40)
    yield "deflate-no-context-takeover", h(d, offer=1) + switch(
        ext("; server_no_context_takeover; client_no_context_takeover")
    ) + f(text, deflate(b"repeat repeat"), rsv=0x40) + f(text, deflate(b"repeat"), rsv=0x40)
    yield "deflate-windows-10-9", h(d, offer=2) + switch(
        ext("; server_max_window_bits=10; client_max_window_bits=9")
    ) + f(binary, deflate(bytes(range(256)) * 8, wbits=10), rsv=0x40)
    yield "deflate-not-offering-client-window", h(d, offer=3) + switch(ext("")) + f(
        text, deflate(b"zzzzzzzzzz"), rsv=0x40
    )
    noise = bytes(_rng.randrange(97, 123) for _ in range(600))
    yield "deflate-windows-8", h(d, offer=4) + switch(
        ext("; server_max_window_bits=8; client_max_window_bits=8")
    ) + f(text, deflate(noise + noise[:300] + noise, wbits=9), rsv=0x40)
    yield "deflate-level-0-threshold", h(d, offer=5) + switch(
        ext("; client_max_window_bits=8")
    ) + f(text, b"short") + f(text, deflate(b"long enough to compress"), rsv=0x40)
    parts = deflate_fragments(b"abcdefgh" * 64, 3)
    yield "deflate-fragmented-stream", h(d | C_STREAM, offer=6, chunks=(SEVEN, ONE)) + switch(
        ext("; client_no_context_takeover")
    ) + (
        f(binary, parts[0], fin=False, rsv=0x40) + f(ping, b"mid") + f(cont, parts[1], fin=False)
        + f(cont, parts[2])
    )
    yield "deflate-server-no-context-windows-11-12", h(d, offer=7) + switch(
        ext("; server_no_context_takeover; server_max_window_bits=11; client_max_window_bits=12")
    ) + f(text, deflate(b"one", wbits=11), rsv=0x40) + f(text, deflate(b"two", wbits=11), rsv=0x40)
    yield "deflate-bomb", h(d, max_index=MAX_1000) + switch(ext("")) + f(
        binary, deflate(bytes(100_000)), rsv=0x40
    )
    yield "deflate-final-block", h(d) + switch(ext("")) + f(
        text, deflate_final(b"the end"), fin=False, rsv=0x40
    ) + f(cont, b"\x00") + f(text, deflate(b"next"), rsv=0x40)

    # Refusals: another status (the body is kept), or a broken response.
    yield "rejected-404", h() + response(
        "Content-Length: 10", status="404 Not Found"
    ) + b"not found\n"
    yield "rejected-503-chunked", h(chunks=(THREE, ONE)) + response(
        "Transfer-Encoding: chunked", status="503 Service Unavailable"
    ) + b"4\r\nbusy\r\n0\r\n\r\n"
    yield "rejected-200-body-to-eof", h() + response(status="200 OK") + b"<html>hello</html>"
    yield "rejected-301", h() + response(
        "Location: wss://example.com/", "Content-Length: 0", status="301 Moved Permanently"
    )
    # h11 bounds only an incomplete chunk-size line by max_header_size: read in
    # pieces, this refusal ends before its body (fuzz_client._same allows it).
    yield "rejected-chunk-line-over-limit", h(limit=C_LIMIT_64, chunks=(ONE, ODD)) + response(
        "Transfer-Encoding: chunked", status="503 Busy"
    ) + b"4;" + b"x" * 100 + b"\r\nbusy\r\n0\r\n\r\n"
    yield "rejected-eof-in-body", h() + response("Content-Length: 100", status="500 Oops") + b"x"
    yield "bad-accept", h() + response("Upgrade: websocket", "Connection: Upgrade",
                                       "Sec-WebSocket-Accept: AAAA")
    yield "bad-two-accepts", h() + switch(accept)
    yield "bad-no-upgrade", h() + response("Connection: Upgrade", accept)
    yield "bad-no-connection", h() + response("Upgrade: websocket", accept)
    yield "bad-upgrade-list", h() + response("Upgrade: websocket, h2c", "Connection: Upgrade",
                                             accept)
    yield "bad-subprotocol-not-offered", h() + switch("Sec-WebSocket-Protocol: chat")
    yield "bad-subprotocol-unknown", h(C_SUBPROTOCOLS) + switch("Sec-WebSocket-Protocol: x")
    yield "bad-two-subprotocols", h(C_SUBPROTOCOLS) + switch("Sec-WebSocket-Protocol: chat, superchat")
    yield "bad-extension-not-offered", h() + switch(ext(""))
    yield "bad-extension-unknown", h(C_DEFLATE) + switch("Sec-WebSocket-Extensions: x-foo")
    yield "bad-extension-twice", h(C_DEFLATE) + switch(ext(", permessage-deflate"))
    yield "bad-extension-syntax", h(C_DEFLATE) + switch(ext('; x="a b'))
    yield "bad-deflate-window-16", h(C_DEFLATE) + switch(ext("; server_max_window_bits=16"))
    yield "bad-deflate-duplicate", h(C_DEFLATE) + switch(
        ext("; server_no_context_takeover; server_no_context_takeover")
    )
    yield "bad-deflate-client-window-not-offered", h(C_DEFLATE, offer=3) + switch(
        ext("; client_max_window_bits=10")
    )
    yield "bad-deflate-server-window-over-offer", h(C_DEFLATE, offer=2) + switch(
        ext("; server_max_window_bits=12")
    )
    yield "bad-deflate-no-context-refused", h(C_DEFLATE, offer=1) + switch(ext(""))
    yield "bad-deflate-server-window-missing", h(C_DEFLATE, offer=7) + switch(
        ext("; server_no_context_takeover")
    )
    yield "bad-head-too-large", h(limit=C_LIMIT_64) + switch("X-Pad: " + "p" * 100)
    yield "bad-head-too-large-after-100", h(limit=C_LIMIT_256, chunks=(ODD, WHOLE)) + response(
        "X-Pad: " + "p" * 150, status="100 Continue"
    ) + switch()
    yield "bad-garbage", h() + b"HTTP/9 what\r\n\r\n"
    yield "bad-eof-mid-head", h(chunks=(SEVEN, WHOLE)) + switch()[:50]
    yield "http10-101", h() + b"HTTP/1.0 101 Switching Protocols\r\n" + switch()[34:]

    # Bad frames after a good handshake: the connection fails (1002/1007/1009).
    yield "frames-masked-from-server", h() + switch() + frame(text, b"masked")
    yield "frames-bad-utf8", h() + switch() + f(text, b"ok\xff")
    yield "frames-over-limit", h(max_index=MAX_16) + switch() + f(binary, b"x" * 17)
    yield "frames-bad-close-code", h() + switch() + f(close, close_payload(1005))
    yield "frames-rsv1-without-deflate", h() + switch() + f(text, deflate(b"x"), rsv=0x40)
    yield "frames-eof-mid-frame", h(chunks=(ODD, ONE)) + switch() + f(text, b"incomplete")[:-3]


def deflate_header(
    rx_bits: int = 15,
    tx_bits: int = 15,
    rx_no_context: bool = False,
    tx_no_context: bool = False,
    max_index: int = 0,
    level: int = 7,  # index into LEVELS: zlib level 6
    mem_level: int = 8,
    threshold: int = 0,
) -> bytes:
    """The 4-byte configuration header of fuzz_deflate.py."""
    first = (rx_bits - 8) | (tx_bits - 8) << 3 | rx_no_context << 6 | tx_no_context << 7
    return bytes((first, max_index, level | (mem_level - 1) << 4, threshold))


def deflate_seeds() -> Iterator[tuple[str, bytes]]:
    """(name, contents) of every deflate-harness seed: operations, see fuzz_deflate.py."""
    _rng.seed(6458)
    h = deflate_header
    # Indexes into fuzz_deflate.MAX_SIZES and FRAGMENT_SIZES.
    max_0, max_16, max_1000, max_65536 = 1, 5, 8, 10  # 0: unlimited, the default
    whole, one, three, seven, hundred = 0, 1, 3, 4, 6

    def operation(op: int, data: bytes) -> bytes:
        # Length 255 means "the rest of the input": only the last operation
        # may be that long (the caller puts it last).
        return bytes((op, min(len(data), 255))) + data

    def rx(payload: bytes, fin: bool = True) -> bytes:
        """A frame for the receive channel."""
        return operation(2 * fin, payload)

    def tx(plaintext: bytes, a: int = whole, b: int = whole, empty_last: bool = False) -> bytes:
        """A message for the round trip channel, cut into sizes a, b, a, ..."""
        return operation(1 | a << 1 | b << 4 | empty_last << 7, plaintext)

    yield "rx-text", h() + rx(deflate(b"Hello, Hello, Hello!"))
    parts = deflate_fragments(b"abcdefgh" * 20, 3)
    yield "rx-fragmented", h() + rx(parts[0], False) + rx(parts[1], False) + rx(parts[2])
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = compressor.compress(b"shared context") + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"shared context") + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield "rx-two-messages-one-context", h() + rx(first[:-4]) + rx(second[:-4])
    yield "bad-rx-context-without-takeover", h(rx_no_context=True) + rx(first[:-4]) + rx(
        second[:-4]
    )
    yield "rx-window-9", h(rx_bits=9) + rx(deflate(b"small window " * 50, wbits=9))
    yield "rx-window-8", h(rx_bits=8, rx_no_context=True) + rx(deflate(b"tiny " * 80, wbits=9))
    # zlib checks the window across calls only: one payload may reach back further.
    yield "rx-window-8-far-distance", h(rx_bits=8) + rx(deflate(
        bytes(_rng.randrange(256) for _ in range(300)) * 2, wbits=15
    ))
    yield "rx-final-block", h() + rx(deflate_final(b"the end"), False) + rx(b"\x00") + rx(
        deflate(b"a new stream")
    )
    yield "rx-final-block-fin", h() + rx(deflate_final(b"the end")) + rx(deflate(b"next"))
    yield "bad-rx-after-final-block", h() + rx(deflate_final(b"the end") + b"more")
    yield "bad-rx-after-final-block-fragment", h() + rx(deflate_final(b"end"), False) + rx(
        deflate(b"?")
    )
    yield "rx-empty-messages", h() + rx(b"") + rx(b"\x00") + rx(b"", False) + rx(b"") + rx(
        deflate(b"")
    )
    yield "rx-empty-fragment-inside", h() + rx(deflate(b"ab"), False) + rx(b"", False) + rx(b"")
    yield "bad-rx-bomb", h(max_index=max_1000) + rx(deflate(bytes(100_000)))
    yield "bad-rx-bomb-fragmented", h(max_index=max_16) + rx(deflate(bytes(10)), False) + rx(
        b"\x00\x00\xff\xff", False
    ) + rx(deflate(bytes(7)))
    yield "rx-bomb-unlimited", h(max_index=max_65536) + rx(deflate(bytes(65_536)))
    yield "bad-rx-limit-zero", h(max_index=max_0) + rx(deflate(b"x"))
    yield "rx-limit-zero-empty", h(max_index=max_0) + rx(b"\x00") + rx(b"")
    yield "bad-rx-garbage", h() + rx(b"\xff\xff\xff\xff") + rx(deflate(b"after a new start"))
    noise = bytes(_rng.randrange(256) for _ in range(3000))
    yield "rx-large-payload", h(max_index=max_65536) + rx(deflate(noise))
    yield "rx-stored-blocks", h() + rx(deflate(noise[:500], level=0))

    text = b"round trip! " * 20
    yield "tx-message", h() + tx(b"Hello, Hello, Hello!")
    yield "tx-fragmented", h() + tx(text, seven, hundred) + tx(text, one, three)
    yield "tx-empty", h() + tx(b"") + tx(b"", empty_last=True) + tx(b"x", empty_last=True)
    yield "tx-no-context-window-8", h(tx_bits=8, tx_no_context=True) + tx(text, hundred, seven) + tx(
        noise[:700]
    )
    yield "tx-window-9-level-9-mem-9", h(tx_bits=9, level=10, mem_level=9) + tx(noise[:400] * 3)
    yield "tx-level-0-mem-1", h(level=1, mem_level=1) + tx(text) + tx(noise[:1000], hundred)
    yield "tx-context-window-8", h(tx_bits=8, mem_level=9, level=10) + b"".join(
        tx(noise[i : i + 200]) for i in range(0, 1000, 200)
    ) + tx(noise[:200] + noise[600:800], seven, one)
    yield "tx-threshold", h(threshold=2) + tx(b"short") + tx(b"long enough to compress")
    yield "tx-threshold-fragmented", h(threshold=3) + tx(b"abc", one)
    yield "bad-tx-over-limit", h(max_index=max_16) + tx(b"x" * 40, seven) + tx(b"fits")
    yield "mixed", h(rx_bits=12, tx_bits=10, max_index=max_1000) + rx(deflate(b"in", wbits=12)) + tx(
        text, three
    ) + rx(b"\xff") + tx(noise[:200]) + rx(deflate(b"again", wbits=12)) + tx(noise[:1000])


def envelope_header(binary: bool = False, max_index: int = 0) -> bytes:
    """The 1-byte configuration header of fuzz_envelope.py (max_index: MAX_SIZES)."""
    return bytes((int(binary) | max_index << 1,))


def envelope_seeds() -> Iterator[tuple[str, bytes]]:
    """(name, contents) of every envelope-harness seed: one message each."""
    h = envelope_header
    text: list[tuple[str, str]] = [
        ("ping", '{"v":1,"type":"ping"}'),
        ("ping-id", '{"v":1,"type":"ping","id":"1"}'),
        ("publish", ('{"v": 1, "type": "publish", "id": "7", "ts": 1764460800123, '
                    '"data": {"topic": "chat", "payload": "hi"}}')),
        ("echo", '{"v":1,"type":"echo","id":"e","data":{"text":"h\\u00e9llo","n":3}}'),
        ("echo-no-id", '{"v":1,"type":"echo","data":{"text":"x"}}'),
        ("echo-missing-field", '{"v":1,"type":"echo","id":"e","data":{}}'),
        ("echo-bool-n", '{"v":1,"type":"echo","id":"e","data":{"text":"x","n":true}}'),
        ("data-nested", ('{"v":1,"type":"data","id":"d","data":{"a":[1,2.5,-0.0,1e300,null,'
                        'true,{"b":"\\ud83d\\ude00"}],"s":"\\u0000"}}')),
        ("data-lone-surrogate", '{"v":1,"type":"data","id":"\\udc00","data":{"x":"\\ud800"}}'),
        ("boom", '{"v":1,"type":"boom","id":"b"}'),
        ("later", '{"v":1,"type":"later","id":"l"}'),
        ("refuse", '{"v":1,"type":"refuse","id":"r","data":{"why":"no"}}'),
        ("unknown-type", '{"v":1,"type":"nope","id":"u"}'),
        ("data-null", '{"v":1,"type":"ping","data":null,"extra":[1]}'),
        ("bad-data", '{"v":1,"type":"ping","id":"x","data":[]}'),
        ("bad-v-float", '{"v":1.0,"type":"ping","id":"x"}'),
        ("bad-v-bool", '{"v":true,"type":"ping"}'),
        ("bad-v-missing", '{"type":"ping","id":"x"}'),
        ("unsupported-version", '{"v":2,"type":"ping","id":"x"}'),
        ("unsupported-version-big", '{"v":-99999999999999999999,"type":"ping"}'),
        ("bad-id-number", '{"v":1,"type":"ping","id":7}'),
        ("bad-id-empty", '{"v":1,"type":"ping","id":""}'),
        ("bad-id-long", '{"v":1,"type":"ping","id":"' + "i" * 65 + '"}'),
        ("id-64", '{"v":1,"type":"ping","id":"' + "i" * 64 + '"}'),
        ("bad-type-empty", '{"v":1,"type":"","id":"x"}'),
        ("bad-type-number", '{"v":1,"type":3}'),
        ("not-object", '[{"v":1,"type":"ping"}]'),
        ("bad-json", '{"v":1,"type":"ping"'),
        ("bad-json-empty", ""),
        ("duplicate-keys", '{"v":2,"type":"ping","v":1}'),
        ("deep-nesting", '{"v":1,"type":"data","id":"n","data":{"a":' + "[" * 200 + "]" * 200 + "}}"),
        ("whitespace", ' \t\n{ "v" : 1 , "type" : "ping" }\r\n'),
    ]
    for name, message in text:
        yield name, h() + message.encode("utf-8")
    yield "binary", h(binary=True) + b'{"v":1,"type":"ping"}'
    yield "too-large-16", h(max_index=1) + b'{"v":1,"type":"ping","id":"1234"}'
    yield "fits-64", h(max_index=2) + b'{"v":1,"type":"ping","id":"1234"}'
    yield "too-large-multibyte", h(max_index=1) + "{\"v\":1,\"type\":\"\u00e9\u00e9\u00e9\u00e9\"}".encode()
    yield "invalid-utf8", h() + b'{"v":1,"type":"\xff\xfe","id":"\xc3"}'


def main() -> None:
    """Rewrite every seed-* file (found-* files are left alone)."""
    for directory, seeds in (
        (FRAMES_DIR, frame_seeds()),
        (HANDSHAKE_DIR, handshake_seeds()),
        (CLIENT_DIR, client_seeds()),
        (DEFLATE_DIR, deflate_seeds()),
        (ENVELOPE_DIR, envelope_seeds()),
    ):
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        for name, data in seeds:
            (directory / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()

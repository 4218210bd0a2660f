"""Hypothesis properties of the sans-I/O core.

- serialize -> parse round trip for random messages (text/binary, random
  fragmentation, interleaved control frames), in both roles, with the bytes
  delivered in random chunks;
- any split of a byte stream gives the same events (and the same replies),
  with cuts biased towards frame boundaries, and byte by byte;
- whatever bytes come in, only rfc6455's own exceptions escape, and nothing
  is reported after the connection's last event.

Each runs with and without permessage-deflate negotiated.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib

from helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ConnectionPair,
    as_events,
    frame,
    parse_frames,
    utf8_first_invalid,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rfc6455 import (
    BinaryChunk,
    BinaryMessage,
    ClientConnection,
    Close,
    Connection,
    ConnectionFailed,
    ConnectionLost,
    ConnectionState,
    Event,
    Ping,
    Pong,
    ServerConnection,
    TextChunk,
    TextMessage,
    WebSocketError,
)
from rfc6455.permessage_deflate import PerMessageDeflate

# max_examples comes from the profile in conftest.py (100 by default, more in CI).
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

roles = st.sampled_from(["server", "client"])
VALID_CODES = [*range(1000, 1004), *range(1007, 1015), 3000, 3999, 4000, 4999]


def make(role: str, *, deflate: bool = False, **kwargs: object) -> Connection:
    """A connection; with ``deflate``, permessage-deflate negotiated (RFC 7692)."""
    cls = ServerConnection if role == "server" else ClientConnection
    if deflate:
        kwargs["extensions"] = [PerMessageDeflate()]
    return cls(**kwargs)  # type: ignore[arg-type]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets, without empty pieces (b"" means EOF)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def receive_all(
    conn: Connection, pieces: list[bytes], pongs: list[bytes] | None = None
) -> tuple[list[Event], list[bytes]]:
    """Events and the per-piece output after feeding every piece.

    ``pongs``, if given, gets the payloads of the pongs the output must hold:
    §5.5.3 as the connection applies it, one pong per flush for the latest
    ping received since the last flush (while OPEN; none once our close is out).
    """
    events: list[Event] = []
    out: list[bytes] = []
    for piece in pieces:
        was_open = conn.state is ConnectionState.OPEN
        new = conn.receive(piece)
        events += new
        out.append(conn.data_to_send())
        pings = [e.payload for e in new if isinstance(e, Ping)]
        if pongs is not None and was_open and pings:
            pongs.append(pings[-1])
    return events, out


def receive_like_the_loop(conn: Connection, pieces: list[bytes]) -> list[object]:
    """Feed ``pieces`` as the loops do: each into one reused buffer that keeps the previous
    read's bytes after it, ``receive_one`` first, else ``receive_messages``."""
    buf = bytearray(os.urandom(32))
    events: list[object] = []
    for piece in pieces:
        if len(buf) < len(piece):
            buf.extend(os.urandom(len(piece) - len(buf)))
        buf[: len(piece)] = piece
        one = conn.receive_one(buf, len(piece)) if piece else None
        events += as_events([one] if one is not None else conn.receive_messages(buf, len(piece)))
        conn.data_to_send()
    return events


TERMINAL = (Close, ConnectionFailed, ConnectionLost)


def assert_well_formed(events: list[Event]) -> None:
    """Nothing follows a terminal event; payload types are right."""
    for i, event in enumerate(events):
        if isinstance(event, TERMINAL):
            assert i == len(events) - 1, events[i:]
        if isinstance(event, (TextMessage, TextChunk)):
            assert isinstance(event.data, str)
        if isinstance(event, (BinaryMessage, BinaryChunk)):
            assert isinstance(event.data, bytes)


# --------------------------------------------------------------- round trip

# One message: ("text", [str pieces]) or ("binary", [bytes pieces]), each piece
# optionally followed by a ping/pong sent between the fragments.
control = st.none() | st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.binary(max_size=125))
text_message = st.tuples(
    st.just("text"), st.lists(st.tuples(st.text(max_size=40), control), min_size=1, max_size=5)
)
binary_message = st.tuples(
    st.just("binary"),
    st.lists(st.tuples(st.binary(max_size=300), control), min_size=1, max_size=5),
)
messages = st.lists(text_message | binary_message, max_size=8)
closing = st.none() | st.tuples(st.sampled_from(VALID_CODES), st.text(max_size=30))


Message = tuple[str, list[tuple[object, "tuple[int, bytes] | None"]]]


def expected_events(
    msgs: list[Message], close: tuple[int, str] | None, stream: bool
) -> list[Event]:
    """What the receiver reports: a control frame sent between fragments
    arrives before the message it interrupts (§5.4); chunks in stream mode."""
    expected: list[Event] = []
    for kind, pieces in msgs:
        for index, (piece, ctrl) in enumerate(pieces):
            final = index == len(pieces) - 1
            if stream:
                if kind == "text":
                    expected.append(TextChunk(data=piece, final=final))  # type: ignore[arg-type]
                else:
                    expected.append(BinaryChunk(data=piece, final=final))  # type: ignore[arg-type]
            elif final and kind == "text":
                expected.append(TextMessage(data="".join(p for p, _ in pieces)))  # type: ignore[misc]
            elif final:
                expected.append(BinaryMessage(data=b"".join(p for p, _ in pieces)))  # type: ignore[misc]
            if ctrl is not None:
                opcode, payload = ctrl
                expected.append(
                    Ping(payload=payload) if opcode == OP_PING else Pong(payload=payload)
                )
    if close is not None:
        expected.append(Close(code=close[0], reason=close[1]))
    return expected


def send_all(sender: Connection, msgs: list[Message], close: tuple[int, str] | None) -> bytes:
    """Serialize with the connection under test."""
    wire = b""
    for kind, pieces in msgs:
        for index, (piece, ctrl) in enumerate(pieces):
            if len(pieces) == 1:
                wire += sender.send_text(piece) if kind == "text" else sender.send_binary(piece)  # type: ignore[arg-type]
            else:
                wire += sender.send_fragment(piece, final=index == len(pieces) - 1)  # type: ignore[arg-type]
            if ctrl is not None:
                opcode, payload = ctrl
                wire += (
                    sender.send_ping(payload) if opcode == OP_PING else sender.send_pong(payload)
                )
    if close is not None:
        wire += sender.close(*close)
    return wire


@SETTINGS
@given(
    role=roles,
    msgs=messages,
    close=closing,
    cuts=st.lists(st.integers(min_value=0), max_size=20),
    stream=st.booleans(),
    deflate=st.booleans(),
)
def test_round_trip_our_serializer_our_parser(
    role: str,
    msgs: list[Message],
    close: tuple[int, str] | None,
    cuts: list[int],
    stream: bool,
    deflate: bool,
) -> None:
    sender = make(role, deflate=deflate)
    peer_role = "client" if role == "server" else "server"
    receiver = make(peer_role, stream_messages=stream, deflate=deflate)
    wire = send_all(sender, msgs, close)
    parse_frames(wire, masked=role == "client")  # the bytes are well formed, by hand
    owed: list[bytes] = []
    events, out = receive_all(receiver, split(wire, cuts), owed)
    assert events == expected_events(msgs, close, stream)
    # The pings of each chunk are answered by one pong for the latest, then the close.
    replies = parse_frames(b"".join(out), masked=role == "server")
    assert [fr.payload for fr in replies if fr.opcode == OP_PONG] == owed
    pings = [e.payload for e in events if isinstance(e, Ping)]
    if pings:
        assert owed[-1] == pings[-1]
    if close is not None:
        assert replies[-1].opcode == OP_CLOSE
        assert replies[-1].payload == struct.pack("!H", close[0])


@SETTINGS
@given(
    role=roles,
    text=st.text(max_size=300),
    frame_cuts=st.lists(st.integers(min_value=0), max_size=6),
    cuts=st.lists(st.integers(min_value=0), max_size=30),
)
def test_text_split_anywhere_in_utf8(
    role: str, text: str, frame_cuts: list[int], cuts: list[int]
) -> None:
    # Fragments cut the UTF-8 bytes anywhere, even inside a code point (§5.6:
    # only the whole message must be valid); frames built by hand.
    raw = text.encode()
    pieces = [raw[a:b] for a, b in _pairs(raw, frame_cuts)] or [b""]
    wire = b"".join(
        frame(
            OP_TEXT if i == 0 else OP_CONT,
            piece,
            fin=i == len(pieces) - 1,
            mask=os.urandom(4) if role == "server" else None,
        )
        for i, piece in enumerate(pieces)
    )
    conn = make(role)
    events, _ = receive_all(conn, split(wire, cuts))
    assert events == [TextMessage(data=text)]
    streamed = make(role, stream_messages=True)
    events, _ = receive_all(streamed, split(wire, cuts))
    assert "".join(e.data for e in events if isinstance(e, TextChunk)) == text
    assert [e.final for e in events if isinstance(e, TextChunk)][-1:] == [True]


INTERESTING = [0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1]
INTERESTING += [0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFE, 0xFF]
almost_utf8 = st.lists(
    st.characters().map(lambda c: c.encode("utf-8", "surrogatepass"))
    | st.lists(st.sampled_from(INTERESTING), max_size=3).map(bytes),
    max_size=12,
).map(b"".join)


@SETTINGS
@given(role=roles, payload=almost_utf8, continuation=st.booleans())
def test_fail_fast_exactly_at_the_first_invalid_byte(
    role: str, payload: bytes, continuation: bool
) -> None:
    # The expected position comes from the RFC 3629 grammar (helpers), not codecs.
    conn = make(role)
    mask = os.urandom(4) if role == "server" else None
    opcode = OP_TEXT
    if continuation:
        # The message began in an earlier fragment with one valid character.
        conn.receive(frame(OP_TEXT, "é".encode(), fin=False, mask=mask))
        opcode = OP_CONT
    # Declared 16 bytes longer than sent, so only the fail-fast check can fire.
    wire = frame(opcode, payload + b"-" * 16, mask=mask)[:-16]
    header = len(wire) - len(payload)
    assert conn.receive(wire[:header]) == []
    bad = utf8_first_invalid(payload)
    for i in range(len(payload)):
        events = conn.receive(wire[header + i : header + i + 1])
        if i == bad:
            assert len(events) == 1
            assert isinstance(events[0], ConnectionFailed) and events[0].code == 1007
            return
        assert events == []
    assert bad is None


def _pairs(data: bytes, cuts: list[int]) -> list[tuple[int, int]]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return list(itertools.pairwise(points))


# ------------------------------------------------- split invariance, garbage


CORRUPTIONS = [
    "reserved opcode",
    "rsv",
    "wrong mask bit",
    "non-minimal length",
    "fragmented control",
    "long control",
    "bad close code",
    "one-byte close",
    "bad UTF-8",
    "stray continuation",
    "unfinished message",
]


@st.composite
def raw_frame(draw: st.DrawFn, role: str) -> bytes:
    """A valid single frame, or (one time in eight) one broken in one §5.2/§5.5 way."""
    corruption = draw(st.sampled_from([None] * 7 * len(CORRUPTIONS) + CORRUPTIONS))
    opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_PING]))
    if corruption == "reserved opcode":
        opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]))
    elif corruption in ("fragmented control", "long control"):
        opcode = draw(st.sampled_from([OP_CLOSE, OP_PING, OP_PONG]))
    elif corruption in ("bad close code", "one-byte close"):
        opcode = OP_CLOSE
    elif corruption == "bad UTF-8":
        opcode = OP_TEXT
    elif corruption == "stray continuation":
        opcode = OP_CONT
    elif corruption == "unfinished message":
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
    if opcode == OP_TEXT:
        payload = draw(st.text(max_size=60)).encode()
        if corruption == "bad UTF-8":
            payload += draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"]))
    elif opcode == OP_CLOSE:
        code = draw(st.sampled_from(VALID_CODES))
        if corruption == "bad close code":
            code = draw(st.sampled_from([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]))
        payload = struct.pack("!H", code) + draw(st.text(max_size=10)).encode()
        if corruption == "one-byte close":
            payload = payload[:1]
        elif draw(st.integers(0, 9)) == 0:
            payload = b""
    elif opcode in (OP_PING, OP_PONG):
        payload = draw(st.binary(max_size=125))
    else:
        payload = draw(st.binary(max_size=draw(st.sampled_from([20, 300]))))
    if corruption == "long control":
        payload = payload.ljust(126, b"c")[:200]
    return frame(
        opcode,
        payload,
        fin=corruption not in ("fragmented control", "unfinished message"),
        rsv=draw(st.sampled_from([1, 2, 4, 6])) if corruption == "rsv" else 0,
        mask=os.urandom(4) if (role == "server") != (corruption == "wrong mask bit") else None,
        length_form=draw(st.sampled_from([16, 64])) if corruption == "non-minimal length" else None,
    )


@st.composite
def fragmented_text(draw: st.DrawFn, role: str) -> list[bytes]:
    """A text message whose UTF-8 bytes are cut into fragments anywhere."""
    raw = draw(st.text(min_size=1, max_size=40)).encode()
    cuts = draw(st.lists(st.integers(min_value=0), max_size=4))
    if draw(st.booleans()):
        raw = raw[:-1] + draw(st.sampled_from([b"\xff", b"\xc0", b"\xe2\x28"]))
    pieces = [raw[a:b] for a, b in _pairs(raw, cuts)]
    return [
        frame(
            OP_TEXT if i == 0 else OP_CONT,
            piece,
            fin=i == len(pieces) - 1,
            mask=os.urandom(4) if role == "server" else None,
        )
        for i, piece in enumerate(pieces)
    ]


@st.composite
def compressed_message(draw: st.DrawFn, role: str) -> list[bytes]:
    """A permessage-deflate message (RFC 7692 §7.2.1), cut into fragments anywhere."""
    opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
    raw = (
        draw(st.text(max_size=200)).encode() if opcode == OP_TEXT else draw(st.binary(max_size=200))
    )
    compressor = zlib.compressobj(wbits=-15)
    data = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    data = data[:-4]
    pieces = [data[a:b] for a, b in _pairs(data, draw(st.lists(st.integers(0), max_size=3)))]
    pieces = pieces or [b""]
    return [
        frame(
            opcode if i == 0 else OP_CONT,
            piece,
            fin=i == len(pieces) - 1,
            rsv=4 if i == 0 else 0,
            mask=os.urandom(4) if role == "server" else None,
        )
        for i, piece in enumerate(pieces)
    ]


@st.composite
def stream(draw: st.DrawFn) -> tuple[str, bytes, list[int]]:
    """(role, bytes from the peer, offsets of the frame boundaries)."""
    role = draw(roles)
    groups = draw(
        st.lists(
            raw_frame(role).map(lambda fr: [fr]) | fragmented_text(role) | compressed_message(role),
            max_size=12,
        )
    )
    frames = [fr for group in groups for fr in group] + [draw(st.binary(max_size=8))]
    boundaries = list(itertools.accumulate(len(fr) for fr in frames))
    return role, b"".join(frames), boundaries


def cut_points(wire: bytes, boundaries: list[int]) -> st.SearchStrategy[list[int]]:
    """Cuts anywhere, and often just around frame boundaries (where state changes)."""
    near_boundary = st.tuples(st.sampled_from([0, *boundaries]), st.integers(-3, 12)).map(
        lambda bd: max(0, sum(bd))
    )
    return st.lists(st.integers(0, len(wire)) | near_boundary, max_size=40)


@SETTINGS
@given(
    data=st.data(),
    peer=stream(),
    max_size=st.none() | st.integers(0, 400),
    streaming=st.booleans(),
    eof=st.booleans(),
    deflate=st.booleans(),
)
def test_any_split_gives_the_same_events(
    data: st.DataObject,
    peer: tuple[str, bytes, list[int]],
    max_size: int | None,
    streaming: bool,
    eof: bool,
    deflate: bool,
) -> None:
    role, wire, boundaries = peer
    # Cuts anywhere, or at every frame boundary (one frame a read: receive_one's case).
    cuts = data.draw(cut_points(wire, boundaries) | st.just(boundaries))
    whole = make(role, max_message_size=max_size, stream_messages=streaming, deflate=deflate)
    pieces = [wire] if wire else []
    owed_whole: list[bytes] = []
    events_whole, out_whole = receive_all(whole, pieces + ([b""] if eof else []), owed_whole)
    chunked = make(role, max_message_size=max_size, stream_messages=streaming, deflate=deflate)
    owed_split: list[bytes] = []
    pieces = split(wire, cuts) + ([b""] if eof else [])
    events_split, out_split = receive_all(chunked, pieces, owed_split)
    assert events_split == events_whole
    # The loops' input path (receive_one, receive_messages) in the same pieces.
    loop = make(role, max_message_size=max_size, stream_messages=streaming, deflate=deflate)
    assert receive_like_the_loop(loop, pieces) == events_split
    assert loop.state is chunked.state
    assert_well_formed(events_whole)
    # Replies are the same frames (a client masks them with fresh keys), but
    # for the pongs: one per chunk that had pings, for its latest (§5.5.3).
    masked = role == "client"
    frames_whole = parse_frames(b"".join(out_whole), masked=masked)
    frames_split = parse_frames(b"".join(out_split), masked=masked)
    for frames, owed in ((frames_whole, owed_whole), (frames_split, owed_split)):
        assert [fr.payload for fr in frames if fr.opcode == OP_PONG] == owed
    strip = [(fr.fin, fr.rsv, fr.opcode, fr.payload) for fr in frames_whole if fr.opcode != OP_PONG]
    assert [
        (fr.fin, fr.rsv, fr.opcode, fr.payload) for fr in frames_split if fr.opcode != OP_PONG
    ] == strip
    assert owed_split[-1:] == owed_whole[-1:]
    assert whole.state is chunked.state


@SETTINGS
@given(peer=stream(), max_size=st.none() | st.integers(0, 400), streaming=st.booleans())
def test_byte_by_byte_gives_the_same_events(
    peer: tuple[str, bytes, list[int]], max_size: int | None, streaming: bool
) -> None:
    # The most adversarial split: every state the decoder can stop in is visited.
    role, wire, _ = peer
    whole = make(role, max_message_size=max_size, stream_messages=streaming)
    events_whole, _ = receive_all(whole, [wire, b""] if wire else [b""])
    bytewise = make(role, max_message_size=max_size, stream_messages=streaming)
    pieces = [wire[i : i + 1] for i in range(len(wire))] + [b""]
    events_bytewise, _ = receive_all(bytewise, pieces)
    assert events_bytewise == events_whole


@SETTINGS
@given(
    role=roles,
    garbage=st.binary(max_size=300) | stream().map(lambda peer: peer[1]),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
    max_size=st.none() | st.integers(0, 200),
    streaming=st.booleans(),
    deflate=st.booleans(),
)
def test_only_our_exceptions_escape(
    role: str,
    garbage: bytes,
    cuts: list[int],
    max_size: int | None,
    streaming: bool,
    deflate: bool,
) -> None:
    conn = make(role, max_message_size=max_size, stream_messages=streaming, deflate=deflate)
    events: list[Event] = []
    try:
        for piece in split(garbage, cuts) + [b""]:
            conn.receive_data(piece)
            events += conn.events()
            conn.data_to_send()
            if conn.state.value == "OPEN":
                conn.send_text("still here")
    except WebSocketError:
        pass
    assert_well_formed(events)
    # Whatever came in, the connection ends up somewhere sensible: EOF was fed.
    assert conn.state.value == "CLOSED"
    assert isinstance(events[-1], TERMINAL)


# ------------------------------------------------------ back-to-back pair


class PairMachine(RuleBasedStateMachine):
    """A client and a server exchanging traffic with random partial deliveries.

    Each side's output goes into a pipe; a rule delivers some prefix of a
    pipe, another flushes a side's queued replies (so a side may sit in
    REPLYING and still send). Invariants: what one side sends the other
    receives, in order, until a close; the closing handshake from either side
    (or both at once) ends with both CLOSED, every message sent before a close
    delivered, the server ready to close the transport, and nothing reported
    after the close.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pair = ConnectionPair()
        self.pipes: dict[str, bytearray] = {"client": bytearray(), "server": bytearray()}
        self.sent: dict[str, list[Event]] = {"client": [], "server": []}
        self.got: dict[str, list[Event]] = {"client": [], "server": []}
        # §5.5.3: the pong a side owes (the latest ping since it last wrote),
        # and the pongs it has written.
        self.owed: dict[str, bytes | None] = {"client": None, "server": None}
        self.ponged: dict[str, list[bytes]] = {"client": [], "server": []}

    def _conn(self, side: str) -> Connection:
        return self.pair.client if side == "client" else self.pair.server

    def _other(self, side: str) -> str:
        return "server" if side == "client" else "client"

    def _write(self, side: str, data: bytes) -> None:
        # Whatever a side writes takes its waiting pong along, in front.
        owed = self.owed[side]
        if owed is not None:
            self.ponged[side].append(owed)
            self.owed[side] = None
        self.pipes[side] += data

    def _can_send(self, side: str) -> bool:
        # OPEN, or REPLYING: the peer's close is in but our answer not flushed.
        return self._conn(side).state in (ConnectionState.OPEN, ConnectionState.REPLYING)

    @rule(side=st.sampled_from(["client", "server"]), text=st.text(max_size=20))
    def send_text(self, side: str, text: str) -> None:
        if self._can_send(side):
            self._write(side, self._conn(side).send_text(text))
            self.sent[side].append(TextMessage(data=text))

    @rule(side=st.sampled_from(["client", "server"]), data=st.binary(max_size=300))
    def send_binary(self, side: str, data: bytes) -> None:
        if self._can_send(side):
            self._write(side, self._conn(side).send_binary(data))
            self.sent[side].append(BinaryMessage(data=data))

    @rule(side=st.sampled_from(["client", "server"]), payload=st.binary(max_size=125))
    def send_ping(self, side: str, payload: bytes) -> None:
        if self._can_send(side):
            self._write(side, self._conn(side).send_ping(payload))
            self.sent[side].append(Ping(payload=payload))

    @rule(
        side=st.sampled_from(["client", "server"]),
        code=st.sampled_from(VALID_CODES),
        now=st.sampled_from([True, False, False, False]),
    )
    def close(self, side: str, code: int, now: bool = True) -> None:
        # ``now`` makes closes rarer than the other steps, so that traffic
        # flows in every state (OPEN, CLOSING, REPLYING) before the end.
        if not now:
            return
        conn = self._conn(side)
        was_open = conn.state is ConnectionState.OPEN
        self._write(side, conn.close(code, "bye"))
        if was_open:
            self.sent[side].append(Close(code=code, reason="bye"))

    @rule(side=st.sampled_from(["client", "server"]))
    def flush(self, side: str) -> None:
        """The application writes what the connection queued (pongs, close answers)."""
        self._write(side, self._conn(side).data_to_send())

    @rule(side=st.sampled_from(["client", "server"]), fraction=st.floats(0, 1))
    def deliver(self, side: str, fraction: float) -> None:
        pipe = self.pipes[side]
        n = int(len(pipe) * fraction)
        if not n:
            return
        piece = bytes(pipe[:n])
        del pipe[:n]
        receiver = self._other(side)
        was_open = self._conn(receiver).state is ConnectionState.OPEN
        events = self._conn(receiver).receive(piece)
        self.got[receiver] += events
        pings = [e.payload for e in events if isinstance(e, Ping)]
        if was_open and pings:
            self.owed[receiver] = pings[-1]

    @rule(side=st.sampled_from(["client", "server"]))
    def deliver_all(self, side: str) -> None:
        self.deliver(side, 1.0)

    @invariant()
    def received_what_was_sent(self) -> None:
        for side in ("client", "server"):
            other = self._other(side)
            # Auto-replies (pongs, the close echo) are not in ``sent``; compare
            # the other kinds, which must be a prefix of what was sent.
            got = [e for e in self.got[other] if not isinstance(e, (Pong, Close))]
            want = [e for e in self.sent[side] if not isinstance(e, Close)]
            assert got == want[: len(got)]
            assert_well_formed(self.got[other])
            assert not any(
                isinstance(e, (ConnectionFailed, ConnectionLost)) for e in self.got[other]
            )
            # The pongs received so far are those the other side wrote, in order.
            pongs = [e.payload for e in self.got[side] if isinstance(e, Pong)]
            assert pongs == self.ponged[other][: len(pongs)]

    def teardown(self) -> None:
        # Deliver everything until quiet: the handshake completes if it began.
        for _ in range(6):
            for side in ("client", "server"):
                self.flush(side)
                self.deliver(side, 1.0)
        client, server = self.pair.client, self.pair.server
        started = any(isinstance(e, Close) for side in self.sent for e in self.sent[side])
        if started:
            assert client.state is ConnectionState.CLOSED
            assert server.state is ConnectionState.CLOSED
            assert server.should_close_transport
            for side in ("client", "server"):
                other = self._other(side)
                # Data sent before a close is processed even by a side that
                # already sent its own close (§7.1.2: until the peer's close).
                data = [e for e in self.got[other] if not isinstance(e, (Pong, Close))]
                assert data == [e for e in self.sent[side] if not isinstance(e, Close)]
                assert isinstance(self.got[other][-1], Close)
                assert sum(isinstance(e, Close) for e in self.got[other]) == 1
                # Pongs leave before the close frame, so every one written arrives.
                pongs = [e.payload for e in self.got[other] if isinstance(e, Pong)]
                assert pongs == self.ponged[side]
        else:
            assert client.state is server.state is ConnectionState.OPEN
            for side in ("client", "server"):
                other = self._other(side)
                data = [e for e in self.got[other] if not isinstance(e, Pong)]
                assert data == self.sent[side]
            for side in ("client", "server"):
                other = self._other(side)
                pongs = [e.payload for e in self.got[side] if isinstance(e, Pong)]
                assert pongs == self.ponged[other]
                # Everything was flushed: the latest ping was answered.
                pings = [e.payload for e in self.sent[side] if isinstance(e, Ping)]
                assert self.owed[other] is None
                if pings:
                    assert pongs[-1] == pings[-1]


PairMachine.TestCase.settings = settings(
    deadline=None, stateful_step_count=30, suppress_health_check=[HealthCheck.too_slow]
)
TestPairMachine = PairMachine.TestCase

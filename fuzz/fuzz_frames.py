#!/usr/bin/env python3
"""Atheris harness: the frame decoder, driven through the sans-I/O connection.

Run it (see fuzz/README.md)::

    python fuzz/fuzz_frames.py fuzz/corpus/frames -max_total_time=60

Input format: a configuration header of ``HEADER_SIZE`` bytes, then the bytes
the peer sends. The header is taken with ``FuzzedDataProvider.ConsumeBytes``
and decoded here rather than with ``ConsumeIntInRange`` and friends, because
atheris takes integers from the *end* of the input: a seed would then be its
wire bytes with the configuration scattered over its tail. This way a seed
file is readable (``make_corpus.py`` writes them) and stays valid whatever
the provider's byte order.

    byte 0     flags: 0x01 client role (else server), 0x02 stream_messages,
               0x04 permessage-deflate negotiated (when the module exists),
               0x08 start our own closing handshake before any byte arrives,
               0x10 echo every message (or chunk) back while the connection is open
    byte 1     max_message_size: MAX_SIZES[byte % len(MAX_SIZES)]
    bytes 2-5  chunk sizes, used in turn: CHUNK_SIZES[byte % len(CHUNK_SIZES)]
    byte 6     permessage-deflate parameters (see ``_deflate_extension``)
    byte 7     direct scanner differential: bits 0-3 pick max_frames, bits
               4-6 are allowed_rsv, bit 7 starts the scan at offset 1

Contract checked, for every input (any failure raises and atheris saves it):

1. Nothing escapes ``receive_data`` / ``next_event`` / ``receive`` /
   ``data_to_send``: remote garbage is reported as ``ConnectionFailed``, not
   raised. ``ACCEPTED_EXCEPTIONS`` is empty.
2. The event stream is well formed: after EOF it ends with exactly one
   terminal event (``Close``, ``ConnectionFailed`` or ``ConnectionLost``)
   and nothing, least of all data, follows it; the state is CLOSED; no
   message (or streamed message) is over ``max_message_size``; streamed
   chunks alternate correctly with their ``final`` flag.
3. Split invariance: fed in the fuzzer's chunks, whole, and (inputs up to
   ``BYTEWISE_LIMIT`` bytes) one byte at a time until the connection reads no
   more (a close frame or a failure is in; the rest then goes in one piece),
   the events are the same.
   ``ConnectionFailed`` is compared by close code only: the reason names the
   check that fired, and a size limit may fire at the header (split input) or
   at the payload (whole input).
   The loop's path (``receive_one`` / ``receive_messages`` on a reused buffer holding
   stale bytes, ``receive_buffer`` / ``receive_filled`` for a large frame) gives the same
   events and writes the same bytes as ``receive_data`` for the same chunks; lean mode
   feeds the input that way.
4. Native == Python: with the C kernels the default, a connection given
   ``kernels=PYTHON_KERNELS`` produces exactly the same events (reasons
   included), and ``scan_frames`` itself returns the same records, offsets,
   error and ``needed`` and leaves the same bytes in the buffer.
5. What the connection queued (pongs, close replies, the failure's close
   frame) parses cleanly at a peer of the other role: the pings are answered
   as RFC 6455 §5.5.3 allows, one pong per flush carrying the payload of the
   latest ping not yet answered (the harness flushes after each chunk, so:
   one pong per chunk that had pings, for its last), and a close frame
   carrying the terminal event's code.
   With echo on, the messages we sent back (through the extension, and
   fragmented in stream mode) reach that peer intact, in order.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import atheris

if __name__ == "__main__":  # fuzz the checkout this file lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Instrument rfc6455 for coverage only when fuzzing: the test suite imports
# this module too, and must not run an instrumented copy of the library.
_instrument = atheris.instrument_imports() if __name__ == "__main__" else contextlib.nullcontext()
with _instrument:
    import rfc6455
    from rfc6455 import (
        BinaryChunk,
        BinaryMessage,
        ClientConnection,
        Close,
        ConnectionFailed,
        ConnectionLost,
        ConnectionState,
        Event,
        Ping,
        Pong,
        ServerConnection,
        TextChunk,
        TextMessage,
        _frames,
    )
    from rfc6455._kernels import KERNELS, PYTHON_KERNELS, Kernels, PinnedBuffer

    try:
        from rfc6455 import permessage_deflate
    except ImportError:  # pragma: no cover - the deflate flag is then a no-op
        permessage_deflate = None  # type: ignore[assignment]

#: The selectors loop's read buffer in miniature: fixed in size, reused, and pinned for the
#: native kernels (64 KiB there; 4 KiB here, so that a chunk often takes several reads).
_PINNED_READ = PinnedBuffer(4096)

#: Lean mode (``FUZZ_LEAN=1`` in the environment; an environment variable
#: rather than a flag, because libFuzzer's ``-merge``/``-jobs`` start the
#: harness again with its own argv): each input is fed once, in one piece,
#: and only the cheap invariants are checked (contract items 1 and 2: nothing
#: escapes, the event stream is well formed). Several times faster than the
#: default deep mode, which adds the split, native/Python and peer checks.
LEAN = os.environ.get("FUZZ_LEAN", "") not in ("", "0")

#: Exceptions that may escape the connection without being a bug. Empty on
#: purpose: the connection turns every remote error into ConnectionFailed.
#: Add an entry only with a comment saying why it is acceptable.
ACCEPTED_EXCEPTIONS: tuple[type[BaseException], ...] = ()

HEADER_SIZE = 8

#: max_message_size choices: no limit, the default, and values around every
#: length-encoding boundary (125/126, 65535/65536) and the control-frame limit.
MAX_SIZES: tuple[int | None, ...] = (
    None, 1 << 20, 0, 1, 2, 3, 16, 125, 126, 127, 1000, 65535, 65536, 65537,
)

#: Chunk sizes; 0 means "all that is left".
CHUNK_SIZES = (0, 1, 1, 2, 3, 4, 5, 7, 8, 9, 13, 14, 16, 31, 64, 100, 127, 128, 129, 4096)

#: Inputs up to this size are also fed one byte at a time (n calls each).
BYTEWISE_LIMIT = 2048

_TERMINAL = (Close, ConnectionFailed, ConnectionLost)
_CAN_SEND = ("OPEN", "REPLYING")
_RECEIVING = (ConnectionState.OPEN, ConnectionState.CLOSING)


class HarnessFailure(AssertionError):
    """An invariant of the contract above does not hold: a bug in rfc6455."""


@dataclass(frozen=True)
class Config:
    """The decoded configuration header."""

    client: bool
    stream: bool
    deflate: bool
    local_close: bool
    echo: bool
    max_size: int | None
    chunk_sizes: tuple[int, ...]
    deflate_params: int
    scan_byte: int


def parse_input(data: bytes) -> tuple[Config, bytes]:
    """Split a fuzzer input into its configuration and the wire bytes."""
    fdp = atheris.FuzzedDataProvider(data)
    header = fdp.ConsumeBytes(HEADER_SIZE).ljust(HEADER_SIZE, b"\0")
    wire = fdp.ConsumeBytes(fdp.remaining_bytes())
    flags = header[0]
    config = Config(
        client=bool(flags & 0x01),
        stream=bool(flags & 0x02),
        deflate=bool(flags & 0x04),
        local_close=bool(flags & 0x08),
        echo=bool(flags & 0x10),
        max_size=MAX_SIZES[header[1] % len(MAX_SIZES)],
        chunk_sizes=tuple(CHUNK_SIZES[b % len(CHUNK_SIZES)] for b in header[2:6]),
        deflate_params=header[6],
        scan_byte=header[7],
    )
    return config, wire


def split(wire: bytes, sizes: Sequence[int]) -> list[bytes]:
    """Cut ``wire`` into non-empty chunks of the given sizes, used in turn."""
    chunks = []
    pos = 0
    turn = 0
    while pos < len(wire):
        size = sizes[turn % len(sizes)] or len(wire) - pos
        chunks.append(wire[pos : pos + size])
        pos += size
        turn += 1
    return chunks


def _deflate_extension(params: int) -> Any:
    """A permessage-deflate extension object as a handshake would negotiate it.

    ``params``: bit 0 local_no_context_takeover, bit 1
    remote_no_context_takeover, bits 2-4 the peer's window bits (8 + n).
    """
    if permessage_deflate is None:
        return None
    return permessage_deflate.PerMessageDeflate(
        local_no_context_takeover=bool(params & 1),
        remote_no_context_takeover=bool(params & 2),
        remote_max_window_bits=8 + ((params >> 2) & 7),
    )


def _new_connection(config: Config, kernels: Kernels = KERNELS) -> Any:
    cls = ClientConnection if config.client else ServerConnection
    extensions = []
    if config.deflate:
        extension = _deflate_extension(config.deflate_params)
        if extension is not None:
            extensions.append(extension)
    return cls(
        extensions=extensions,
        max_message_size=config.max_size,
        stream_messages=config.stream,
        kernels=kernels,
    )


@dataclass
class Run:
    """What one feeding of the input produced."""

    events: list[Event]
    output: bytes
    state: Any
    echoed: list[str | bytes]
    #: The pong payloads the output must hold, in order (contract item 5).
    owed_pongs: list[bytes]


def _feed(
    config: Config,
    chunks: Sequence[bytes],
    api: str,
    echo: bool = False,
    kernels: Kernels = KERNELS,
) -> Run:
    """Feed ``chunks`` then EOF, draining with one of the three input APIs."""
    conn = _new_connection(config, kernels)
    out = []
    if config.local_close:
        out.append(conn.close(1000))
    events: list[Event] = []
    echoed: list[str | bytes] = []
    partial: list[Any] = []
    owed: list[bytes] = []
    # Reused, as the loop's (stale bytes after each read): pinned, as the loop's is, for half
    # of the inputs; for the others an embedder's plain buffer.
    read_buffer = _PINNED_READ.buf if len(chunks) % 2 == 0 else bytearray(os.urandom(64))
    for chunk in [*chunks, b""]:
        start = len(events)
        # Pings are answered while OPEN: a chunk's pings all are or none is
        # (only the peer's close ends OPEN, and nothing after it is read).
        was_open = conn.state is ConnectionState.OPEN
        if api == "receive":
            events.extend(conn.receive(chunk))
        elif api == "buffer":
            events.extend(_receive_like_the_loop(conn, chunk, read_buffer))
        elif api == "events":
            conn.receive_data(chunk)
            events.extend(conn.events())
        else:
            conn.receive_data(chunk)
            while True:
                event = conn.next_event()
                if event is rfc6455.NEED_DATA:
                    break
                events.append(event)
        pings = [e.payload for e in events[start:] if isinstance(e, Ping)]
        if was_open and pings:
            # Whatever we write next (an echo, or data_to_send) carries one pong.
            owed.append(pings[-1])
        if echo:
            _echo(conn, events[start:], out, echoed, partial)
        out.append(conn.data_to_send())
    conn.should_close_transport  # noqa: B018 - a property that must not raise
    return Run(events, b"".join(out), conn.state, echoed, owed)


def _receive_like_the_loop(conn: Any, chunk: bytes, buf: bytearray) -> list[Event]:
    """One read as the selectors loop and the asyncio binding hand it over: into a large
    frame's own buffer when the connection offers one (``receive_buffer``), else into a
    reused buffer decoded in place (``receive_one``, then ``receive_messages``). Whole
    messages come back as their data: turned into events here, for the comparison.

    The pinned buffer (``_PINNED_READ``, fixed in size as the loop's) takes a chunk in
    several reads when it is larger, as ``recv_into`` would; any other buffer grows to fit.
    """
    if not chunk:
        return _as_events(conn.receive_messages(buf, 0))
    if buf is _PINNED_READ.buf:
        size = len(buf)
        events: list[Event] = []
        for i in range(0, len(chunk), size):
            events += _one_read(conn, chunk[i : i + size], buf)
        return events
    if len(buf) < len(chunk):
        buf.extend(os.urandom(len(chunk) - len(buf)))
    return _one_read(conn, chunk, buf)


def _one_read(conn: Any, chunk: bytes, buf: bytearray) -> list[Event]:
    target = conn.receive_buffer()
    if target is not None and len(chunk) <= len(target):
        with target:
            target[: len(chunk)] = chunk
        conn.receive_filled(len(chunk))
        return list(conn.events())
    if target is not None:
        target.release()
    buf[: len(chunk)] = chunk
    one = conn.receive_one(buf, len(chunk))
    return _as_events([one] if one is not None else conn.receive_messages(buf, len(chunk)))


def _as_events(items: list[Any]) -> list[Event]:
    return [
        TextMessage(data=i) if type(i) is str else BinaryMessage(data=i) if type(i) is bytes else i
        for i in items
    ]


def _feed_bytewise(config: Config, wire: bytes) -> Run:
    """``_feed`` one byte at a time with the ``events`` API, as lean as it gets.

    The costliest feeding (one call per byte), so: no echo, no pong
    bookkeeping (the chunked feeding checks those), and once the connection
    reads nothing more (a close frame or a failure is in), the rest in one
    piece: whether it is ignored is checked by the chunked feeding, which
    goes on to the end in the fuzzer's chunks.
    """
    conn = _new_connection(config)
    if config.local_close:
        conn.close(1000)
    events: list[Event] = []
    receive_data, next_event, data_to_send = conn.receive_data, conn.events, conn.data_to_send
    for i in range(len(wire)):
        receive_data(wire[i : i + 1])
        events.extend(next_event())
        data_to_send()
        if conn.state not in _RECEIVING:
            if i + 1 < len(wire):
                receive_data(wire[i + 1 :])
                events.extend(next_event())
            break
    receive_data(b"")
    events.extend(next_event())
    data_to_send()
    return Run(events, b"", conn.state, [], [])


def _echo(
    conn: Any, events: Sequence[Event], out: list[bytes], echoed: list[Any], partial: list[Any]
) -> None:
    """Send data events back while sending is allowed; record whole messages sent.

    Sending is allowed while OPEN and, where the core has it, while REPLYING
    (the peer's close or a failure is in, our close frame waits for the next
    ``data_to_send``): so a message that arrived just before a close frame is
    answered before our close (Autobahn 7.1.1), which the peer check verifies.
    """
    for event in events:
        if conn.state.name not in _CAN_SEND:
            return
        if isinstance(event, (TextMessage, BinaryMessage)):
            out.append(conn.send(event))
            echoed.append(event.data)
        elif isinstance(event, (TextChunk, BinaryChunk)):
            out.append(conn.send(event))
            partial.append(event.data)
            if event.final:
                echoed.append(partial[0][:0].join(partial))
                partial.clear()


def _check_events(config: Config, run: Run) -> None:
    events = run.events
    if not events or not isinstance(events[-1], _TERMINAL):
        raise HarnessFailure(f"no terminal event at the end after EOF: {events[-3:]!r}")
    terminals = [i for i, e in enumerate(events) if isinstance(e, _TERMINAL)]
    if terminals != [len(events) - 1]:
        raise HarnessFailure(f"events after a terminal event: {events[terminals[0]:]!r}")
    if run.state is not ConnectionState.CLOSED:
        raise HarnessFailure(f"state {run.state} after EOF")
    limit = config.max_size
    streamed = 0
    in_text_stream = in_binary_stream = False
    for event in events:
        if isinstance(event, TextMessage):
            if not isinstance(event.data, str):
                raise HarnessFailure("TextMessage.data is not str")
            size = len(event.data.encode("utf-8"))
        elif isinstance(event, BinaryMessage):
            if not isinstance(event.data, bytes):
                raise HarnessFailure("BinaryMessage.data is not bytes")
            size = len(event.data)
        elif isinstance(event, (TextChunk, BinaryChunk)):
            text = isinstance(event, TextChunk)
            if not config.stream:
                raise HarnessFailure("chunk event without stream_messages")
            if (in_text_stream and not text) or (in_binary_stream and text):
                raise HarnessFailure("a streamed message changed type between chunks")
            data = event.data
            streamed += len(data.encode("utf-8") if isinstance(data, str) else data)
            if limit is not None and streamed > limit:
                raise HarnessFailure(f"streamed message of {streamed} B over the limit {limit}")
            if event.final:
                streamed = 0
                in_text_stream = in_binary_stream = False
            else:
                in_text_stream, in_binary_stream = text, not text
            continue
        else:
            if isinstance(event, (Ping, Pong)) and len(event.payload) > 125:
                raise HarnessFailure("control frame payload over 125 bytes")
            continue
        if config.stream:
            raise HarnessFailure("whole message event in stream mode")
        if limit is not None and size > limit:
            raise HarnessFailure(f"message of {size} B over the limit {limit}")


def _check_output(config: Config, run: Run) -> None:
    """Our queued output must parse cleanly at the peer (the other role)."""
    peer_class = ServerConnection if config.client else ClientConnection
    extensions = []
    if config.deflate and permessage_deflate is not None:
        # The peer's view of the same negotiation: local and remote swapped.
        params = config.deflate_params
        extensions.append(
            permessage_deflate.PerMessageDeflate(
                local_no_context_takeover=bool(params & 2),
                remote_no_context_takeover=bool(params & 1),
                local_max_window_bits=8 + ((params >> 2) & 7),
            )
        )
    peer = peer_class(extensions=extensions, max_message_size=None)
    peer_events = [*peer.receive(run.output), *peer.receive(b"")]
    if any(isinstance(e, ConnectionFailed) for e in peer_events):
        raise HarnessFailure(f"our output is malformed for the peer: {peer_events!r}")
    pongs = [e.payload for e in peer_events if isinstance(e, Pong)]
    closes = [e for e in peer_events if isinstance(e, Close)]
    terminal = run.events[-1]
    if config.local_close:
        # Our close went first; the peer stops reading after it.
        if [type(e) for e in peer_events] != [Close] or closes[0].code != 1000:
            raise HarnessFailure(f"local close not the first frame out: {peer_events!r}")
        return
    received = [e.data for e in peer_events if isinstance(e, (TextMessage, BinaryMessage))]
    if received != run.echoed:
        raise HarnessFailure(f"the peer got {received!r}, we sent {run.echoed!r}")
    if pongs != run.owed_pongs:
        raise HarnessFailure(f"pongs {pongs!r} do not answer pings as owed {run.owed_pongs!r}")
    if isinstance(terminal, ConnectionLost):
        if closes:
            raise HarnessFailure("a close frame was sent although none was received")
        return
    assert isinstance(terminal, (Close, ConnectionFailed))
    if len(closes) != 1 or closes[0].code != terminal.code:
        raise HarnessFailure(f"close reply {closes!r} does not carry {terminal!r}'s code")


def _comparable(events: Sequence[Event]) -> list[Any]:
    return [("failed", e.code) if isinstance(e, ConnectionFailed) else e for e in events]


#: Open core bugs the fuzzer found (fuzz/README.md, "Findings"): pairs of
#: ConnectionFailed (code, reason) that two feedings of the same bytes may
#: end with until the bug is fixed, so a fuzzing run can go on finding other
#: bugs. The test suite turns this off for the corpus files named
#: found-bugN-* and expects them to fail while bug N is open. Empty: bugs 1
#: and 3 (1007 instead of 1002 / 1009 for a partial frame) are fixed.
KNOWN_BUGS: dict[int, frozenset[tuple[int, str]]] = {}

#: Set to False to report every difference, known bugs included.
tolerate_known_bugs = True


def _known_bug(a: Sequence[Event], b: Sequence[Event]) -> bool:
    if not (tolerate_known_bugs and a and b and a[:-1] == b[:-1]):
        return False
    ends = set()
    for event in (a[-1], b[-1]):
        if not isinstance(event, ConnectionFailed):
            return False
        ends.add((event.code, event.reason))
    return ends in KNOWN_BUGS.values()


def _same(a: Sequence[Event], b: Sequence[Event]) -> bool:
    return _comparable(a) == _comparable(b) or _known_bug(a, b)


def _check_scanner(config: Config, wire: bytes) -> None:
    """Call native and Python ``scan_frames`` on the same bytes; compare everything."""
    max_frames = (1, 2, 3, 4, 7, 4096, 4097, 10000, 0)[(config.scan_byte & 0x0F) % 9]
    allowed_rsv = config.scan_byte & 0x70
    start = min(len(wire), config.scan_byte >> 7)
    max_payload = _frames.UNLIMITED if config.max_size is None else config.max_size
    results = []
    for scan in (KERNELS.scan_frames, PYTHON_KERNELS.scan_frames):
        buf = bytearray(wire)
        result = scan(buf, start, len(buf), not config.client, allowed_rsv, max_payload, max_frames)
        results.append((result, bytes(buf)))
    if results[0] != results[1]:
        raise HarnessFailure(f"native and Python scan_frames differ:\n{results[0]!r}\n{results[1]!r}")


def TestOneInput(data: bytes) -> None:
    """Check the contract in the module docstring on one input."""
    config, wire = parse_input(data)
    try:
        _check(config, wire)
    except ACCEPTED_EXCEPTIONS:
        return


def _check_lean(config: Config, wire: bytes) -> None:
    """Lean mode: the input in one piece, then EOF; items 1 and 2 only."""
    conn = _new_connection(config)
    if config.local_close:
        conn.close(1000)
    # The loop's path: the input read into the loop's (pinned, reused) buffer, in place.
    buf = _PINNED_READ.buf
    events = _receive_like_the_loop(conn, wire, buf) if wire else []
    events += _receive_like_the_loop(conn, b"", buf)
    conn.data_to_send()
    _check_events(config, Run(events, b"", conn.state, [], []))


def _check(config: Config, wire: bytes) -> None:
    if LEAN:
        _check_lean(config, wire)
        return
    chunked = _feed(config, split(wire, config.chunk_sizes), "next_event", config.echo)
    _check_events(config, chunked)
    _check_output(config, chunked)
    whole = _feed(config, [wire] if wire else [], "receive")
    if not _same(whole.events, chunked.events):
        raise HarnessFailure(f"whole vs chunked:\n{whole.events!r}\n{chunked.events!r}")
    # The loop's path, in the same chunks: events and output as receive_data's (a client
    # masks with fresh keys: there the frames can only be as long, byte for byte).
    loop_path = _feed(config, split(wire, config.chunk_sizes), "buffer", config.echo)
    same_output = (
        len(loop_path.output) == len(chunked.output)
        if config.client
        else loop_path.output == chunked.output
    )
    if loop_path.events != chunked.events or not same_output:
        raise HarnessFailure(f"loop path vs chunked:\n{loop_path.events!r}\n{chunked.events!r}")
    if len(wire) <= BYTEWISE_LIMIT:
        bytewise = _feed_bytewise(config, wire)
        if not _same(bytewise.events, chunked.events):
            raise HarnessFailure(f"bytewise vs chunked:\n{bytewise.events!r}\n{chunked.events!r}")
    if KERNELS is not PYTHON_KERNELS:
        python = _feed(config, split(wire, config.chunk_sizes), "next_event", kernels=PYTHON_KERNELS)
        if python.events != chunked.events:
            raise HarnessFailure(f"Python vs native:\n{python.events!r}\n{chunked.events!r}")
        _check_scanner(config, wire)


def main() -> None:
    """Fuzz until libFuzzer's limits say stop."""
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Atheris harness: the client role against a hostile server.

Run it (see fuzz/README.md)::

    python fuzz/fuzz_client.py fuzz/corpus/client -max_total_time=60

What a server can send our client once the upgrade request is out: a
response head (101 or anything else, 1xx first maybe), then frames, the
first ones possibly in the same chunk as the head. The bytes go through a
:class:`ClientHandshake` (offering subprotocols and permessage-deflate as the
configuration says), then through its :class:`ClientConnection`
(``hs.connection``, which starts with the bytes that followed the head), in
fuzzer-chosen chunks, with EOF at the end.

Input format: a configuration header of ``HEADER_SIZE`` bytes (taken with
``FuzzedDataProvider.ConsumeBytes`` and decoded here, as in fuzz_frames.py),
then the server's bytes.

    byte 0     flags: 0x01 offer subprotocols ("chat", "superchat"), 0x02
               offer permessage-deflate, 0x04 stream_messages, 0x08 echo every
               message (or chunk) back while sending is allowed; bits 4-6 pick
               the permessage-deflate offer (DEFLATE_OFFERS)
    byte 1     max_message_size: fuzz_frames.MAX_SIZES[byte % len(MAX_SIZES)]
    byte 2     max_header_size: HEADER_LIMITS[byte % len(HEADER_LIMITS)]
    bytes 3-4  chunk sizes, used in turn (fuzz_frames.CHUNK_SIZES)

The client's key is fixed (``FIXED_KEY``), so a fuzzed 101 can carry the right
``Sec-WebSocket-Accept``; the seeds do.

Contract checked, for every input:

1. Only :class:`HandshakeError` (:class:`HandshakeRejected` included) comes
   out of the handshake, raised again (the same object) by the next
   ``next_event``; its ``status_code`` is 0 (no or a broken response) or 101
   (an invalid 101) for a ``HandshakeError``, the response's final status
   (200-999, not 101) for a ``HandshakeRejected``. Nothing at all comes out
   of the connection: garbage is a ``ConnectionFailed`` event (1002, 1007 or
   1009). ``ACCEPTED_EXCEPTIONS`` is empty.
2. EOF ends the handshake: accepted or refused, never still waiting. An
   accepted handshake agrees with the offer: the subprotocol is one we
   offered, permessage-deflate only if offered, and its parameters within
   the offer (RFC 7692 §7.1: no larger window than we allowed, no context
   takeover where we asked for none).
3. The connection's events follow fuzz_frames' rules (one terminal event at
   the end, sizes within ``max_message_size``, chunks only in stream mode,
   control payloads <= 125 bytes).
4. What the client queued (pongs, close replies, echoed messages: masked,
   and compressed with the window and context rules the server chose)
   parses cleanly at a server peer: one pong per flush that had pings, with
   the latest ping's payload (RFC 6455 §5.5.3: at most one pong waits), one
   close frame with the terminal event's code, and the echoed messages
   intact and in order.
5. Split invariance: fed in the fuzzer's chunks, whole, and (inputs up to
   ``BYTEWISE_LIMIT`` bytes) one byte at a time, the outcome (the accepted
   handshake, or the error's type, status and headers) and the connection's
   events are the same (``ConnectionFailed`` by code). A refusal's body may
   be cut short when read in pieces (h11 bounds only incomplete events by
   ``max_header_size``, see ``_same``): one body must be a prefix of the
   other.
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Lean mode (FUZZ_LEAN=1, fuzz_frames.LEAN) instruments rfc6455 only, not h11: h11 parses every
# head, and its coverage callbacks took over half of a lean execution.
_instrument = (
    atheris.instrument_imports(include=["rfc6455"] if os.environ.get("FUZZ_LEAN", "") not in ("", "0") else None)
    if __name__ == "__main__"
    else contextlib.nullcontext()
)
with _instrument:
    import rfc6455
    from rfc6455 import (
        Close,
        ConnectionFailed,
        ConnectionLost,
        ConnectionState,
        Event,
        HandshakeError,
        HandshakeRejected,
        Ping,
        Pong,
        ServerConnection,
    )
    from rfc6455._handshake import ClientHandshake, HandshakeAccepted, accept_key
    from rfc6455.permessage_deflate import ClientPerMessageDeflate, PerMessageDeflate

from fuzz_frames import (
    CHUNK_SIZES,
    LEAN,
    MAX_SIZES,
    HarnessFailure,
    _check_events,
    _comparable,
    _echo,
    split,
)

#: Exceptions that may escape without being a bug. Empty on purpose.
ACCEPTED_EXCEPTIONS: tuple[type[BaseException], ...] = ()

HEADER_SIZE = 5

#: max_header_size choices: the default (16 KiB) and small ones, so that the
#: limit is reachable with short inputs.
HEADER_LIMITS = (16 * 1024, 64, 128, 256, 1024)

#: The permessage-deflate offers (ClientPerMessageDeflate arguments), picked
#: by bits 4-6 of byte 0: browsers' default, each parameter, tiny windows.
DEFLATE_OFFERS: tuple[dict[str, Any], ...] = (
    {},
    {"server_no_context_takeover": True, "client_no_context_takeover": True},
    {"server_max_window_bits": 10, "client_max_window_bits": 9},
    {"client_max_window_bits": None},
    {"server_max_window_bits": 8, "client_max_window_bits": 8},
    {"client_max_window_bits": 8, "level": 0, "compress_threshold": 16},
    {"client_no_context_takeover": True, "level": 9, "mem_level": 9},
    {"server_no_context_takeover": True, "server_max_window_bits": 15, "client_max_window_bits": 12},
)

SUBPROTOCOLS = ("chat", "superchat")

FIXED_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
FIXED_ACCEPT = accept_key(FIXED_KEY)

#: Inputs up to this size are also fed one byte at a time.
BYTEWISE_LIMIT = 1024

_RECEIVING = (ConnectionState.OPEN, ConnectionState.CLOSING)


@dataclass(frozen=True)
class Config:
    """The decoded configuration header."""

    subprotocols: bool
    deflate: bool
    stream: bool
    echo: bool
    deflate_offer: int
    max_size: int | None
    max_header_size: int
    chunk_sizes: tuple[int, ...]


def parse_input(data: bytes) -> tuple[Config, bytes]:
    """Split a fuzzer input into its configuration and the server's bytes."""
    fdp = atheris.FuzzedDataProvider(data)
    header = fdp.ConsumeBytes(HEADER_SIZE).ljust(HEADER_SIZE, b"\0")
    wire = fdp.ConsumeBytes(fdp.remaining_bytes())
    flags = header[0]
    config = Config(
        subprotocols=bool(flags & 0x01),
        deflate=bool(flags & 0x02),
        stream=bool(flags & 0x04),
        echo=bool(flags & 0x08),
        deflate_offer=(flags >> 4) & 7,
        max_size=MAX_SIZES[header[1] % len(MAX_SIZES)],
        max_header_size=HEADER_LIMITS[header[2] % len(HEADER_LIMITS)],
        chunk_sizes=tuple(CHUNK_SIZES[b % len(CHUNK_SIZES)] for b in header[3:5]),
    )
    return config, wire


def _new_handshake(config: Config) -> ClientHandshake:
    factories = []
    if config.deflate:
        factories.append(ClientPerMessageDeflate(**DEFLATE_OFFERS[config.deflate_offer]))
    hs = ClientHandshake(
        "example.com",
        "/chat",
        subprotocols=SUBPROTOCOLS if config.subprotocols else (),
        extensions=factories,
        max_header_size=config.max_header_size,
        max_message_size=config.max_size,
        stream_messages=config.stream,
    )
    hs.key = FIXED_KEY
    hs.request_bytes()
    return hs


@dataclass
class Outcome:
    """What one feeding produced."""

    result: Any
    events: list[Event]
    output: bytes
    echoed: list[str | bytes]
    #: The pong payloads the output must hold, in order.
    owed_pongs: list[bytes]
    extension: PerMessageDeflate | None
    state: ConnectionState | None


def _handshake_step(hs: ClientHandshake, chunk: bytes) -> Any:
    """Feed one chunk to the handshake; its event, or the HandshakeError it raised."""
    hs.receive_data(chunk)
    try:
        return hs.next_event()
    except HandshakeError as exc:
        try:
            hs.next_event()
        except HandshakeError as again:
            if again is not exc:
                raise HarnessFailure("a different error the second time") from None
        else:
            raise HarnessFailure("next_event did not raise the error again")
        return exc


def _feed(config: Config, chunks: Sequence[bytes], echo: bool = False) -> Outcome:
    """Feed ``chunks`` then EOF: to the handshake, then to its connection."""
    hs = _new_handshake(config)
    result: Any = rfc6455.NEED_DATA
    conn: Any = None
    events: list[Event] = []
    out: list[bytes] = []
    echoed: list[str | bytes] = []
    partial: list[Any] = []
    owed: list[bytes] = []
    for chunk in [*chunks, b""]:
        if conn is None:
            result = _handshake_step(hs, chunk)
            if not isinstance(result, HandshakeAccepted):
                if result is rfc6455.NEED_DATA:
                    continue
                break  # refused: the caller closes the connection
            conn = hs.connection  # it read the bytes that followed the head
            was_open = True  # before those bytes
            if not chunk:
                conn.receive_data(b"")
        else:
            # Pings are answered while OPEN: a chunk's pings all are or none is.
            was_open = conn.state is ConnectionState.OPEN
            conn.receive_data(chunk)
        start = len(events)
        events.extend(conn.events())
        pings = [e.payload for e in events[start:] if isinstance(e, Ping)]
        if was_open and pings:
            owed.append(pings[-1])
        if echo:
            _echo(conn, events[start:], out, echoed, partial)
        out.append(conn.data_to_send())
    extension = None
    state = None
    if conn is not None:
        conn.should_close_transport  # noqa: B018 - a property that must not raise
        extension = hs.extensions[0] if hs.extensions else None
        state = conn.state
    return Outcome(result, events, b"".join(out), echoed, owed, extension, state)


def _feed_bytewise(config: Config, wire: bytes) -> Outcome:
    """One byte at a time, to the handshake and then the connection; lean.

    Once the connection reads nothing more, the rest goes in one piece (the
    chunked feeding checks that it is ignored).
    """
    hs = _new_handshake(config)
    result: Any = rfc6455.NEED_DATA
    events: list[Event] = []
    n = len(wire)
    i = 0
    while i < n and result is rfc6455.NEED_DATA:
        result = _handshake_step(hs, wire[i : i + 1])
        i += 1
    if result is rfc6455.NEED_DATA:
        result = _handshake_step(hs, b"")
    elif isinstance(result, HandshakeAccepted):
        conn = hs.connection
        events.extend(conn.events())
        conn.data_to_send()
        while i < n:
            conn.receive_data(wire[i : i + 1])
            events.extend(conn.events())
            conn.data_to_send()
            i += 1
            if conn.state not in _RECEIVING:
                if i < n:
                    conn.receive_data(wire[i:])
                    events.extend(conn.events())
                break
        conn.receive_data(b"")
        events.extend(conn.events())
        conn.data_to_send()
    return Outcome(result, events, b"", [], [], None, None)


def _summary(result: Any) -> Any:
    if isinstance(result, HandshakeRejected):  # the body is compared apart (_same)
        return ("rejected", result.status_code, result.headers)
    if isinstance(result, HandshakeError):
        return ("error", result.status_code)
    if isinstance(result, HandshakeAccepted):  # extension objects compare by identity
        return ("accepted", result.subprotocol, list(map(repr, result.extensions)), result.headers)
    return result


def _check_result(config: Config, result: Any) -> None:
    if result is rfc6455.NEED_DATA:
        raise HarnessFailure("the handshake still waits after EOF")
    if isinstance(result, HandshakeRejected):
        if result.status_code == 101 or not 200 <= result.status_code <= 999:
            raise HarnessFailure(f"HandshakeRejected with status {result.status_code}")
        return
    if isinstance(result, HandshakeError):
        if result.status_code not in (0, 101):
            raise HarnessFailure(f"HandshakeError with status {result.status_code}")
        return
    assert isinstance(result, HandshakeAccepted)
    if result.subprotocol is not None and (
        not config.subprotocols or result.subprotocol not in SUBPROTOCOLS
    ):
        raise HarnessFailure(f"subprotocol {result.subprotocol!r} was not offered")
    if not result.extensions:
        return
    if not config.deflate or len(result.extensions) != 1:
        raise HarnessFailure(f"extensions not offered: {result.extensions!r}")
    ext = result.extensions[0]
    if not isinstance(ext, PerMessageDeflate):
        raise HarnessFailure(f"unexpected extension {ext!r}")
    offer = DEFLATE_OFFERS[config.deflate_offer]
    if offer.get("server_no_context_takeover") and not ext.remote_no_context_takeover:
        raise HarnessFailure("server_no_context_takeover asked for, not in force")
    if offer.get("client_no_context_takeover") and not ext.local_no_context_takeover:
        raise HarnessFailure("client_no_context_takeover offered, not in force")
    if ext.remote_max_window_bits > offer.get("server_max_window_bits", 15):
        raise HarnessFailure(f"server window over the offer: {ext!r}")
    client_bits = offer.get("client_max_window_bits", True)
    if isinstance(client_bits, int) and client_bits is not True and (
        ext.local_max_window_bits > client_bits
    ):
        raise HarnessFailure(f"client window over the offer: {ext!r}")
    if client_bits is None and ext.local_max_window_bits != 15:
        raise HarnessFailure(f"client window set although not offered: {ext!r}")


def _check_output(run: Outcome) -> None:
    """The client's queued output must parse cleanly at a server peer."""
    extensions = []
    ext = run.extension
    if ext is not None:
        # The server's view of the same negotiation: local and remote swapped.
        extensions.append(
            PerMessageDeflate(
                local_no_context_takeover=ext.remote_no_context_takeover,
                remote_no_context_takeover=ext.local_no_context_takeover,
                local_max_window_bits=ext.remote_max_window_bits,
                remote_max_window_bits=ext.local_max_window_bits,
            )
        )
    peer = ServerConnection(extensions=extensions, max_message_size=None)
    peer_events = [*peer.receive(run.output), *peer.receive(b"")]
    if any(isinstance(e, ConnectionFailed) for e in peer_events):
        raise HarnessFailure(f"our output is malformed for the server: {peer_events!r}")
    received = [e.data for e in peer_events if isinstance(e, (rfc6455.TextMessage, rfc6455.BinaryMessage))]
    if received != run.echoed:
        raise HarnessFailure(f"the server got {received!r}, we sent {run.echoed!r}")
    pongs = [e.payload for e in peer_events if isinstance(e, Pong)]
    if pongs != run.owed_pongs:
        raise HarnessFailure(f"pongs {pongs!r} do not answer pings as owed {run.owed_pongs!r}")
    closes = [e for e in peer_events if isinstance(e, Close)]
    terminal = run.events[-1]
    if isinstance(terminal, ConnectionLost):
        if closes:
            raise HarnessFailure("a close frame was sent although none was received")
        return
    assert isinstance(terminal, (Close, ConnectionFailed))
    if len(closes) != 1 or closes[0].code != terminal.code:
        raise HarnessFailure(f"close reply {closes!r} does not carry {terminal!r}'s code")


def _comparable_outcome(run: Outcome) -> Any:
    return _summary(run.result), _comparable(run.events)


def _same(a: Outcome, b: Outcome) -> bool:
    """The same outcome; refusal bodies may differ by being cut short.

    h11 applies ``max_header_size`` to an event still incomplete (a chunk-size
    or trailer line arriving in pieces), not to one that arrives whole, so a
    refusal read in small pieces may end earlier, with a shorter body. The
    handshake fails either way, with the same status: harmless.
    """
    if _comparable_outcome(a) != _comparable_outcome(b):
        return False
    if isinstance(a.result, HandshakeRejected):
        x, y = sorted((a.result.body, b.result.body), key=len)
        return y.startswith(x)
    return True


def TestOneInput(data: bytes) -> None:
    """Check the contract in the module docstring on one input."""
    config, wire = parse_input(data)
    try:
        _check(config, wire)
    except ACCEPTED_EXCEPTIONS:
        return


def _check_lean(config: Config, wire: bytes) -> None:
    """Lean mode (``FUZZ_LEAN=1``, see fuzz_frames.LEAN): the input fed once,
    whole, no echo; contract items 1-3, no peer parse, no split comparison."""
    whole = _feed(config, [wire] if wire else [])
    _check_result(config, whole.result)
    if isinstance(whole.result, HandshakeAccepted):
        _check_events(config, whole)  # type: ignore[arg-type]
        for event in whole.events:
            if isinstance(event, ConnectionFailed) and event.code not in (1002, 1007, 1009):
                raise HarnessFailure(f"unexpected failure code: {event!r}")
    elif whole.events or whole.output:
        raise HarnessFailure("events or output without an accepted handshake")


def _check(config: Config, wire: bytes) -> None:
    if LEAN:
        _check_lean(config, wire)
        return
    chunked = _feed(config, split(wire, config.chunk_sizes), config.echo)
    _check_result(config, chunked.result)
    if isinstance(chunked.result, HandshakeAccepted):
        _check_events(config, chunked)  # type: ignore[arg-type]
        for event in chunked.events:
            if isinstance(event, ConnectionFailed) and event.code not in (1002, 1007, 1009):
                raise HarnessFailure(f"unexpected failure code: {event!r}")
        _check_output(chunked)
    elif chunked.events or chunked.output:
        raise HarnessFailure("events or output without an accepted handshake")
    whole = _feed(config, [wire] if wire else [])
    if not _same(whole, chunked):
        raise HarnessFailure(f"whole vs chunked:\n{whole!r}\n{chunked!r}")
    if len(wire) <= BYTEWISE_LIMIT:
        bytewise = _feed_bytewise(config, wire)
        if not _same(bytewise, chunked):
            raise HarnessFailure(f"bytewise vs chunked:\n{bytewise!r}\n{chunked!r}")


def main() -> None:
    """Fuzz until libFuzzer's limits say stop."""
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Atheris harness: the opening handshake parsers (server, and client as a bonus).

Run it (see fuzz/README.md)::

    python fuzz/fuzz_handshake.py fuzz/corpus/handshake -max_total_time=60

Input format: a configuration header of ``HEADER_SIZE`` bytes (taken with
``FuzzedDataProvider.ConsumeBytes`` and decoded here, for the reason given in
fuzz_frames.py), then the bytes the peer sends: a request (server role) or a
response (client role), possibly followed by frames.

    byte 0     flags: 0x01 client role (else server), 0x02 subprotocols
               ("chat", "superchat") on our side, 0x04 permessage-deflate
               factory on our side, 0x08 a check_request hook that refuses
               targets starting with "/private" (403; server role), 0x10 EOF
               after the data
    byte 1     max_header_size: HEADER_LIMITS[byte % len(HEADER_LIMITS)]
    bytes 2-3  chunk sizes, used in turn (fuzz_frames.CHUNK_SIZES)

Contract checked, for every input:

1. ``receive_data`` / ``next_event`` give events or ``NEED_DATA``, or raise
   :class:`HandshakeError` (our type, with an HTTP status); anything else
   escaping is a bug (``ACCEPTED_EXCEPTIONS`` is empty). An error is raised
   again, the same object, by the next ``next_event``.
2. Every outcome can be answered without raising, and the answer is sane:
   server: ``accept`` gives a 101 with the right ``Sec-WebSocket-Accept``,
   ``reject_bytes`` a 4xx/5xx response (426 carries ``Sec-WebSocket-Version:
   13``) with a one-line reason, ``respond`` the status asked for; client: an
   accepted handshake yields a connection.
3. After acceptance the bytes that followed the head, and any later chunks,
   reach the WebSocket connection, which follows fuzz_frames' event rules.
4. Split invariance: fed whole and in the fuzzer's chunks (and byte by byte
   for short inputs), the outcome (event, or error type and status) and the
   connection's events are the same. 400 and 431 count as one status: which
   one an oversized *and* malformed head gets depends on how it arrives.
"""

from __future__ import annotations

import contextlib
import os
import re
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
    from rfc6455 import ConnectionFailed, Event, HandshakeError, HandshakeRejected
    from rfc6455._handshake import (
        ClientHandshake,
        HandshakeAccepted,
        HTTPRequest,
        ServerHandshake,
        UpgradeRequest,
        accept_key,
    )

    try:
        from rfc6455 import permessage_deflate
    except ImportError:  # pragma: no cover - optional module
        permessage_deflate = None  # type: ignore[assignment]

from fuzz_frames import CHUNK_SIZES, LEAN, HarnessFailure, split

#: Exceptions that may escape without being a bug. Empty on purpose: the
#: handshake turns every remote error into HandshakeError.
ACCEPTED_EXCEPTIONS: tuple[type[BaseException], ...] = ()

HEADER_SIZE = 4

#: max_header_size choices: the default (16 KiB) and small ones, so that the
#: 431 path is reachable with short inputs.
HEADER_LIMITS = (16 * 1024, 64, 128, 256, 1024)

#: The client's Sec-WebSocket-Key, fixed so a fuzzed 101 can carry the right
#: accept value (FIXED_ACCEPT); seeds use it.
FIXED_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
FIXED_ACCEPT = accept_key(FIXED_KEY)

BYTEWISE_LIMIT = 1024

_BLANK_LINE = re.compile(rb"\n\r?\n")

#: Core bug 4 (fuzz/README.md, "Findings"; fixed: the head is now measured to the
#: byte): max_header_size was not applied to a head that arrived whole. False:
#: every way of feeding must refuse an oversized head.
tolerate_known_bugs = False


@dataclass(frozen=True)
class Config:
    """The decoded configuration header."""

    client: bool
    subprotocols: bool
    deflate: bool
    check_request: bool
    eof: bool
    max_header_size: int
    chunk_sizes: tuple[int, ...]


def parse_input(data: bytes) -> tuple[Config, bytes]:
    """Split a fuzzer input into its configuration and the peer's bytes."""
    fdp = atheris.FuzzedDataProvider(data)
    header = fdp.ConsumeBytes(HEADER_SIZE).ljust(HEADER_SIZE, b"\0")
    wire = fdp.ConsumeBytes(fdp.remaining_bytes())
    flags = header[0]
    config = Config(
        client=bool(flags & 0x01),
        subprotocols=bool(flags & 0x02),
        deflate=bool(flags & 0x04),
        check_request=bool(flags & 0x08),
        eof=bool(flags & 0x10),
        max_header_size=HEADER_LIMITS[header[1] % len(HEADER_LIMITS)],
        chunk_sizes=tuple(CHUNK_SIZES[b % len(CHUNK_SIZES)] for b in header[2:4]),
    )
    return config, wire


def _refuse_private(request: UpgradeRequest) -> None:
    if request.target.startswith("/private"):
        raise HandshakeError("forbidden", 403)


def _subprotocols(config: Config) -> list[str]:
    return ["chat", "superchat"] if config.subprotocols else []


def _new_handshake(config: Config) -> Any:
    if config.client:
        factories = []
        if config.deflate and permessage_deflate is not None:
            factories.append(permessage_deflate.ClientPerMessageDeflate())
        client = ClientHandshake(
            "example.com",
            "/chat",
            subprotocols=_subprotocols(config),
            extensions=factories,
            max_header_size=config.max_header_size,
        )
        client.key = FIXED_KEY
        client.request_bytes()
        return client
    server_factories = []
    if config.deflate and permessage_deflate is not None:
        server_factories.append(permessage_deflate.ServerPerMessageDeflate())
    return ServerHandshake(
        subprotocols=_subprotocols(config),
        extensions=server_factories,
        check_request=_refuse_private if config.check_request else None,
        max_header_size=config.max_header_size,
    )


def _check_response(response: bytes, status: int) -> None:
    head, sep, _ = response.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 %d " % status):
        raise HarnessFailure(f"malformed response for status {status}: {response[:200]!r}")


def _answer(hs: Any, config: Config, outcome: Any) -> None:
    """Answer the server-side outcome and check the answer (contract 2)."""
    if isinstance(outcome, UpgradeRequest):
        response = hs.accept(outcome)
        _check_response(response, 101)
        if b"\r\nSec-WebSocket-Accept: %s\r\n" % accept_key(outcome.key).encode() not in response:
            raise HarnessFailure(f"101 without the right accept value: {response!r}")
    elif isinstance(outcome, HTTPRequest):
        _check_response(hs.respond(200, [("Content-Type", "text/plain")], b"ok\n"), 200)
    elif isinstance(outcome, HandshakeError):
        if not 400 <= outcome.status_code <= 599:
            raise HarnessFailure(f"HandshakeError with status {outcome.status_code}")
        response = hs.reject_bytes(outcome)
        _check_response(response, outcome.status_code)
        body = response.partition(b"\r\n\r\n")[2]
        if body.count(b"\n") != 1 or not body.endswith(b"\n"):
            raise HarnessFailure(f"rejection body is not one line: {body!r}")
        if outcome.status_code == 426 and b"\r\nSec-WebSocket-Version: 13" not in response:
            raise HarnessFailure("426 without Sec-WebSocket-Version: 13")


@dataclass
class Outcome:
    """What one feeding produced: the handshake result and the connection's events."""

    result: Any
    events: list[Event]


def _summary(result: Any) -> Any:
    if isinstance(result, HandshakeError):
        status: Any = result.status_code
        if not isinstance(result, HandshakeRejected) and status in (400, 431):
            # A head over max_header_size is refused with 431 while it arrives
            # (h11 bounds the incomplete head), but a head that arrives whole is
            # parsed first, and a malformed one is a 400: either is the
            # documented answer ("a huge header is a 431/400").
            status = "400|431"
        return ("error", type(result).__name__, status)
    if isinstance(result, HandshakeAccepted):  # extension objects compare by identity
        return ("accepted", result.subprotocol, list(map(repr, result.extensions)), result.headers)
    return result


def _feed(config: Config, chunks: Sequence[bytes]) -> Outcome:
    hs = _new_handshake(config)
    result: Any = rfc6455.NEED_DATA
    conn = None
    events: list[Event] = []
    pending = [*chunks, b""] if config.eof else list(chunks)
    for chunk in pending:
        if conn is not None:
            events.extend(conn.receive(chunk))
            continue
        if result is not rfc6455.NEED_DATA:
            break  # refused or plain HTTP: the caller closes the connection
        hs.receive_data(chunk)
        try:
            result = hs.next_event()
        except HandshakeError as exc:
            result = exc
            try:
                hs.next_event()
            except HandshakeError as again:
                if again is not exc:
                    raise HarnessFailure("a different error the second time") from None
            else:
                raise HarnessFailure("next_event did not raise the error again")
        if isinstance(result, (UpgradeRequest, HandshakeAccepted)):
            if not config.client:
                _answer(hs, config, result)
            conn = hs.connection
            events.extend(conn.receive(b"") if not chunk else conn.events())
        elif result is not rfc6455.NEED_DATA and not config.client:
            _answer(hs, config, result)
    if conn is not None:
        for event in events:
            if isinstance(event, ConnectionFailed) and event.code not in (1002, 1007, 1009):
                raise HarnessFailure(f"unexpected failure code: {event!r}")
    return Outcome(_summary(result), events)


def _comparable(outcome: Outcome) -> Any:
    events = [("failed", e.code) if isinstance(e, ConnectionFailed) else e for e in outcome.events]
    return outcome.result, events


def TestOneInput(data: bytes) -> None:
    """Check the contract in the module docstring on one input."""
    config, wire = parse_input(data)
    try:
        _check(config, wire)
    except ACCEPTED_EXCEPTIONS:
        return


def _head_sizes(wire: bytes) -> list[int]:
    """Sizes of the heads in ``wire`` (h11 ends a head at a blank line, CRLF or LF).

    Bodies are cut at blank lines too, which only over-counts: the caller uses
    the list to relax checks, and only the first size to assert.
    """
    sizes = []
    start = 0
    for match in _BLANK_LINE.finditer(wire):
        sizes.append(match.end() - start)
        start = match.end()
    if start < len(wire):
        sizes.append(len(wire) - start + 1)  # unfinished: at least one byte more
    return sizes


def _check_lean(config: Config, wire: bytes) -> None:
    """Lean mode (``FUZZ_LEAN=1``, see fuzz_frames.LEAN): the input fed once,
    whole; contract items 1-3 and the refusal of an oversized head, no split
    comparison."""
    whole = _feed(config, [wire] if wire else [])
    if isinstance(whole.result, HandshakeRejected) and not config.client:
        raise HarnessFailure("the server raised HandshakeRejected")
    sizes = _head_sizes(wire)
    refused = isinstance(whole.result, tuple) and whole.result[0] == "error"
    if sizes and sizes[0] > config.max_header_size + 1 and not tolerate_known_bugs and not refused:
        raise HarnessFailure(f"head of {sizes[0]} B over the limit: {whole!r}")


def _check(config: Config, wire: bytes) -> None:
    if LEAN:
        _check_lean(config, wire)
        return
    chunked = _feed(config, split(wire, config.chunk_sizes))
    if isinstance(chunked.result, HandshakeRejected) and not config.client:
        raise HarnessFailure("the server raised HandshakeRejected")
    whole = _feed(config, [wire] if wire else [])
    bytewise = _feed(config, split(wire, (1,))) if len(wire) <= BYTEWISE_LIMIT else None
    sizes = _head_sizes(wire)
    limit = config.max_header_size
    if sizes and sizes[0] > limit + 1:
        # Fed incrementally, an unfinished head over the limit is refused.
        for run in (bytewise, whole, chunked):
            if run is None:
                continue
            strict = run is bytewise or not tolerate_known_bugs
            refused = isinstance(run.result, tuple) and run.result[0] == "error"
            if strict and not refused:
                raise HarnessFailure(f"head of {sizes[0]} B over the limit {limit}: {run!r}")
    if any(size > limit for size in sizes):
        # Whether a head over the limit is refused as too large (431, or 0 on
        # the client) or as malformed, or (bug 4) accepted, depends on how it
        # arrives: only the refusal above is asserted.
        return
    if _comparable(whole) != _comparable(chunked):
        raise HarnessFailure(f"whole vs chunked:\n{whole!r}\n{chunked!r}")
    if bytewise is not None and _comparable(bytewise) != _comparable(chunked):
        raise HarnessFailure(f"bytewise vs chunked:\n{bytewise!r}\n{chunked!r}")


def main() -> None:
    """Fuzz until libFuzzer's limits say stop."""
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

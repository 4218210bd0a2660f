#!/usr/bin/env python3
"""Atheris harness: permessage-deflate's runtime (``PerMessageDeflate``), directly.

Run it (see fuzz/README.md)::

    python fuzz/fuzz_deflate.py fuzz/corpus/deflate -max_total_time=60

No frames, no connection: the extension objects of
``rfc6455/permessage_deflate.py`` get fuzzer bytes as compressed payloads
(``decode``) and fuzzer plaintext to compress (``encode``), with fuzzer-chosen
window bits (8-15), context takeover on or off, zlib level and memLevel,
``compress_threshold``, fragmentation and ``max_size``. Two channels run side
by side on one input:

- the *receive* channel: one ``PerMessageDeflate`` (``rx``) decodes the
  fuzzer's payloads, frame by frame, as a connection would (``max_size`` is
  what the message may still add); a plain-zlib reference decoder follows the
  same frames;
- the *round trip* channel: a sender (``tx``) compresses the fuzzer's
  plaintext, fragmented, and its peer (``peer``: remote and local swapped)
  decodes every frame.

After a ``decode`` raised, a connection would be failed: the channel starts
over with fresh objects (a new connection).

Input format: a configuration header of ``HEADER_SIZE`` bytes, then
operations, read in order (not with ``FuzzedDataProvider``'s integers, which
come from the end of the input: a seed file reads like what it does).

    byte 0     bits 0-2 rx's remote_max_window_bits (8 + n), bits 3-5 tx's
               local_max_window_bits (8 + n), bit 6 rx's
               remote_no_context_takeover, bit 7 tx's local_no_context_takeover
    byte 1     max_size: MAX_SIZES[byte % len(MAX_SIZES)]
    byte 2     tx's zlib level: LEVELS[(byte & 15) % 11]; memLevel 1 + (byte >> 4) % 9
    byte 3     tx's compress_threshold: THRESHOLDS[byte % len(THRESHOLDS)]

    operation: one op byte, one length byte L (255: the rest of the input),
    then L bytes.
      op bit 0 clear: a frame for rx: the L bytes are its payload, op bit 1
        is FIN.
      op bit 0 set: a message for tx: the L bytes are its plaintext, cut
        into fragments of FRAGMENT_SIZES[op bits 1-3] and
        FRAGMENT_SIZES[op bits 4-6] bytes in turn (0: the rest); op bit 7
        adds an empty last fragment.

Contract checked, for every input:

1. Only ``ExtensionError`` (invalid data, close 1002) and ``MessageTooBig``
   (over ``max_size``, 1009) come out of ``decode``; nothing out of
   ``encode``. ``ACCEPTED_EXCEPTIONS`` is empty.
2. The documented bound (docs/limits.md, "decompressed output per frame"):
   every zlib ``decompress`` call of a ``decode`` is given a ``max_length``
   of at most what the message may still add plus 1 (never 0, zlib's "no
   limit", unless ``max_size`` is unlimited), the calls of one ``decode``
   together inflate at most that many bytes, and what ``decode`` returns
   fits ``max_size``.
3. rx agrees with the reference decoder (zlib without a limit, the tail
   appended at FIN, the empty-payload and BFINAL rules of RFC 7692
   §7.2.3.4/§7.2.3.6): where the reference gets data within the limit, rx
   returns exactly that data; where it gets more, rx raises
   ``MessageTooBig``; where the data is invalid, rx raises.
4. Round trip: every frame tx sends decodes at the peer to exactly the
   fragment given, and ``MessageTooBig`` comes iff the message so far passed
   ``max_size``; never ``ExtensionError``. RSV1 is set on the first frame of
   a compressed message only, and a message is sent uncompressed iff it is one
   fragment shorter than ``compress_threshold``. A frame is at most its
   fragment + 1/64 + 1024 bytes (the slack docs/limits.md grants a
   compressed frame over ``max_message_size``).
5. State: no zlib object is held after a message when the parameters
   forbid context takeover (rx and peer drop their decompressor, tx its
   compressor), and a successful ``decode`` leaves no input pending in zlib.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
import zlib
from dataclasses import dataclass
from typing import Any

import atheris

if __name__ == "__main__":  # fuzz the checkout this file lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_instrument = atheris.instrument_imports() if __name__ == "__main__" else contextlib.nullcontext()
with _instrument:
    from rfc6455 import ExtensionError, MessageTooBig
    from rfc6455 import permessage_deflate as pmd
    from rfc6455.permessage_deflate import PerMessageDeflate

from fuzz_frames import LEAN, HarnessFailure, split

#: Exceptions that may escape without being a bug. Empty on purpose.
ACCEPTED_EXCEPTIONS: tuple[type[BaseException], ...] = ()

HEADER_SIZE = 4

#: What a connection passes as max_size without a limit (_frames.UNLIMITED).
UNLIMITED = (1 << 63) - 1

#: max_size choices: unlimited, and small values, around an empty message
#: (0, 1) and the 16-byte fragment charge.
MAX_SIZES = (UNLIMITED, 0, 1, 2, 15, 16, 17, 125, 1000, 4096, 65536)

LEVELS = (-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
THRESHOLDS = (0, 1, 16, 1000)
FRAGMENT_SIZES = (0, 1, 2, 3, 7, 16, 100, 1000)

#: §7.2.1: the empty stored block a sync flush ends with.
TAIL = b"\x00\x00\xff\xff"

def frame_bound(size: int) -> int:
    """The most one compressed frame of ``size`` bytes may take (docs/limits.md,
    "one frame's declared length": max_message_size + max_message_size / 64 + 1024)."""
    return size + size // 64 + 1024


@dataclass(frozen=True)
class Config:
    """The decoded configuration header."""

    rx_bits: int
    tx_bits: int
    rx_no_context: bool
    tx_no_context: bool
    max_size: int
    level: int
    mem_level: int
    threshold: int


def parse_input(data: bytes) -> tuple[Config, bytes]:
    """Split a fuzzer input into its configuration and its operations."""
    header = data[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0")
    config = Config(
        rx_bits=8 + (header[0] & 7),
        tx_bits=8 + ((header[0] >> 3) & 7),
        rx_no_context=bool(header[0] & 0x40),
        tx_no_context=bool(header[0] & 0x80),
        max_size=MAX_SIZES[header[1] % len(MAX_SIZES)],
        level=LEVELS[(header[2] & 15) % len(LEVELS)],
        mem_level=1 + (header[2] >> 4) % 9,
        threshold=THRESHOLDS[header[3] % len(THRESHOLDS)],
    )
    return config, data[HEADER_SIZE:]


def operations(body: bytes) -> list[tuple[int, bytes]]:
    """The (op, data) pairs of the input body."""
    ops = []
    pos = 0
    while pos + 2 <= len(body):
        op, length = body[pos], body[pos + 1]
        pos += 2
        end = len(body) if length == 255 else pos + length
        ops.append((op, body[pos:end]))
        pos = end
    return ops


# ------------------------------------------------------------ zlib recorder


#: (max_length, output size) of each inflate since the harness last cleared it.
_LOG: list[tuple[int, int]] = []


class _RecordingDecompressor:
    """A zlib decompressor that logs (max_length, output size) of each call in _LOG."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self._inner.decompress(data, max_length)
        _LOG.append((max_length, len(out)))
        return out  # type: ignore[no-any-return]

    @property
    def eof(self) -> bool:
        return self._inner.eof  # type: ignore[no-any-return]

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data  # type: ignore[no-any-return]

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail  # type: ignore[no-any-return]


def _recording_decompressobj(*args: Any, **kwargs: Any) -> _RecordingDecompressor:
    return _RecordingDecompressor(zlib.decompressobj(*args, **kwargs))


#: What permessage_deflate sees as ``zlib`` while an input runs.
_ZLIB = types.SimpleNamespace(**{name: getattr(zlib, name) for name in dir(zlib) if not name.startswith("__")})
_ZLIB.decompressobj = _recording_decompressobj


@contextlib.contextmanager
def _recording() -> Any:
    saved = pmd.zlib
    pmd.zlib = _ZLIB  # type: ignore[assignment]
    try:
        yield
    finally:
        pmd.zlib = saved


# --------------------------------------------------------------- reference


class Reference:
    """RFC 7692 §7.2.2 decoding with plain zlib and no size limit."""

    def __init__(self, bits: int, no_context: bool) -> None:
        self.bits = bits
        self.no_context = no_context
        self.decompressor: Any = None
        self.received = False

    def decode(self, payload: bytes, fin: bool) -> bytes | None:
        """The frame's data, or None for invalid data."""
        if not payload and (not fin or not self.received):
            # §7.2.3.6: a compressed message is at least one byte; an empty
            # payload (RSV1 set anyway) adds nothing.
            return b""
        d = self.decompressor
        if d is None:
            d = self.decompressor = zlib.decompressobj(-self.bits)
        try:
            data = d.decompress(payload + TAIL if fin else payload)
        except zlib.error:
            return None
        if d.eof:
            # §7.2.3.4: a BFINAL block ends the stream; after it only the
            # RFC's example 0x00 octet (then the tail we appended) may come.
            allowed = (TAIL, b"\x00" + TAIL) if fin else (b"", b"\x00")
            if d.unused_data not in allowed:
                return None
        if fin:
            self.received = False
            if self.no_context or d.eof:
                self.decompressor = None
        else:
            self.received = True
        return data


# ------------------------------------------------------------------ channels


class Receiver:
    """The receive channel: rx against the reference, frame by frame."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._reset()

    def _reset(self) -> None:
        config = self.config
        self.rx = PerMessageDeflate(
            remote_no_context_takeover=config.rx_no_context,
            remote_max_window_bits=config.rx_bits,
        )
        self.ref = Reference(config.rx_bits, config.rx_no_context)
        self.message = 0  # bytes of the current message so far

    def frame(self, payload: bytes, fin: bool) -> None:
        if LEAN:
            self._frame_lean(payload, fin)
            return
        limit = self.config.max_size - self.message
        expected = self.ref.decode(payload, fin)
        log = _LOG
        log.clear()
        try:
            data = self.rx.decode(payload, rsv=0x40, fin=fin, max_size=limit)
        except MessageTooBig:
            _check_calls(log, limit)
            if expected is not None and len(expected) <= limit:
                raise HarnessFailure(
                    f"MessageTooBig for {len(expected)} B within the limit {limit}"
                ) from None
            self._reset()
            return
        except ExtensionError:
            _check_calls(log, limit)
            if expected is not None:
                raise HarnessFailure(
                    f"ExtensionError on valid data ({len(expected)} B, limit {limit})"
                ) from None
            self._reset()
            return
        _check_calls(log, limit)
        if not isinstance(data, bytes):
            raise HarnessFailure(f"decode returned {type(data).__name__}")
        if len(data) > limit:
            raise HarnessFailure(f"decode returned {len(data)} B over the limit {limit}")
        if expected is None:
            raise HarnessFailure(f"invalid data decoded to {data[:50]!r}")
        if data != expected:
            raise HarnessFailure(f"decode returned {data[:50]!r}, zlib gives {expected[:50]!r}")
        _check_idle_decompressor(self.rx)
        if fin:
            self.message = 0
            if self.config.rx_no_context and self.rx.holds_zlib_state:
                raise HarnessFailure("rx keeps zlib state after a message without context takeover")
        else:
            self.message += len(data)


    def _frame_lean(self, payload: bytes, fin: bool) -> None:
        """Lean mode (``FUZZ_LEAN=1``, see fuzz_frames.LEAN): no reference
        decoder, no zlib call log; only contract item 1 and the output bound."""
        limit = self.config.max_size - self.message
        try:
            data = self.rx.decode(payload, rsv=0x40, fin=fin, max_size=limit)
        except (MessageTooBig, ExtensionError):
            self._reset()
            return
        if not isinstance(data, bytes) or len(data) > limit:
            raise HarnessFailure(f"decode returned {type(data).__name__} of {len(data)} B, limit {limit}")
        self.message = 0 if fin else self.message + len(data)


class RoundTrip:
    """The round trip channel: tx compresses, peer decodes, frame by frame."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._reset()

    def _reset(self) -> None:
        config = self.config
        self.tx = PerMessageDeflate(
            local_no_context_takeover=config.tx_no_context,
            local_max_window_bits=config.tx_bits,
            level=config.level,
            mem_level=config.mem_level,
            compress_threshold=config.threshold,
        )
        # The peer's view of the same negotiation: local and remote swapped.
        self.peer = PerMessageDeflate(
            remote_no_context_takeover=config.tx_no_context,
            remote_max_window_bits=config.tx_bits,
        )

    def message(self, op: int, plaintext: bytes) -> None:
        config = self.config
        sizes = (FRAGMENT_SIZES[(op >> 1) & 7], FRAGMENT_SIZES[(op >> 4) & 7])
        fragments = split(plaintext, sizes) or [b""]
        if op & 0x80:
            fragments.append(b"")
        last = len(fragments) - 1
        if LEAN:
            # Lean mode: tx compresses, nothing decodes it (contract item 1 for
            # encode, and the frame bound); the peer's side is the deep mode's.
            for i, fragment in enumerate(fragments):
                payload = self.tx.encode(fragment, first=i == 0, fin=i == last)[1]
                if len(payload) > frame_bound(len(fragment)):
                    raise HarnessFailure(f"a {len(fragment)} B fragment compressed to {len(payload)} B")
            return
        compressed = False
        so_far = 0
        failed = False
        for i, fragment in enumerate(fragments):
            rsv, payload = self.tx.encode(fragment, first=i == 0, fin=i == last)
            if i == 0:
                compressed = rsv == 0x40
                plain = last == 0 and len(fragment) < config.threshold
                if rsv not in (0, 0x40) or compressed == plain:
                    raise HarnessFailure(
                        f"RSV {rsv:#x} on a {len(fragments)}-fragment message of "
                        f"{len(plaintext)} B (threshold {config.threshold})"
                    )
            elif rsv:
                raise HarnessFailure(f"RSV {rsv:#x} on fragment {i}")
            if not compressed:
                if payload != fragment:
                    raise HarnessFailure("an uncompressed message was changed")
                continue
            if len(payload) > frame_bound(len(fragment)):
                raise HarnessFailure(
                    f"a {len(fragment)} B fragment compressed to {len(payload)} B"
                )
            if failed:
                continue  # the peer failed the connection; tx goes on to the end
            limit = config.max_size - so_far  # what the message may still add
            so_far += len(fragment)
            log = _LOG
            log.clear()
            try:
                data = self.peer.decode(payload, rsv=0x40, fin=i == last, max_size=limit)
            except MessageTooBig:
                _check_calls(log, limit)
                if so_far <= config.max_size:
                    raise HarnessFailure(
                        f"MessageTooBig on our own {so_far} B within {config.max_size}"
                    ) from None
                failed = True
                continue
            except ExtensionError as exc:
                raise HarnessFailure(f"our own compressed data is invalid: {exc}") from None
            _check_calls(log, limit)
            if so_far > config.max_size:
                raise HarnessFailure(f"{so_far} B decoded, over the limit {config.max_size}")
            if data != fragment:
                raise HarnessFailure(f"round trip: {fragment[:50]!r} came back as {data[:50]!r}")
            _check_idle_decompressor(self.peer)
        if config.tx_no_context and self.tx.holds_zlib_state:
            raise HarnessFailure("tx keeps its compressor after a message without context takeover")
        if failed:
            self._reset()
        elif compressed and config.tx_no_context and self.peer.holds_zlib_state:
            raise HarnessFailure("peer keeps zlib state after a message without context takeover")


def _check_calls(log: list[tuple[int, int]], limit: int) -> None:
    """Every inflate of one decode was bounded by ``limit + 1`` bytes, together too."""
    bounded = limit < UNLIMITED
    total = 0
    for max_length, size in log:
        if bounded and not 0 < max_length <= limit + 1:
            raise HarnessFailure(f"inflate with max_length={max_length}, limit {limit}")
        if max_length and size > max_length:
            raise HarnessFailure(f"zlib inflated {size} B past max_length={max_length}")
        total += size
    if bounded and total > limit + 1:
        raise HarnessFailure(f"one decode inflated {total} B, limit {limit}")


def _check_idle_decompressor(ext: PerMessageDeflate) -> None:
    d = ext._decompressor
    if d is not None and d.unconsumed_tail:
        raise HarnessFailure(f"{len(d.unconsumed_tail)} B of input left pending in zlib")


def TestOneInput(data: bytes) -> None:
    """Check the contract in the module docstring on one input."""
    config, body = parse_input(data)
    try:
        if LEAN:  # no zlib call log
            _check(config, body)
            return
        with _recording():
            _check(config, body)
    except ACCEPTED_EXCEPTIONS:
        return


def _check(config: Config, body: bytes) -> None:
    receiver: Receiver | None = None
    sender: RoundTrip | None = None
    for op, data in operations(body):
        if op & 1:
            if sender is None:
                sender = RoundTrip(config)
            sender.message(op, data)
        else:
            if receiver is None:
                receiver = Receiver(config)
            receiver.frame(data, bool(op & 2))


def main() -> None:
    """Fuzz until libFuzzer's limits say stop."""
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

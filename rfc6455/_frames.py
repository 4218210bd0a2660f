"""Frame decoding and encoding (RFC 6455 §5.2).

Strategy: the decoder keeps one ``bytearray`` receive buffer. Each
:meth:`FrameDecoder.feed` first drops the bytes consumed by the previous call,
appends the new chunk, then makes *one* call to ``scan_frames`` (of the
:class:`~rfc6455._kernels.Kernels` it was given) that decodes every complete frame
header in the buffer, checks it, unmasks the payload in place and reports
``(first byte, payload start, payload end)``. Offsets stay valid until the
next ``feed``, so the connection copies each payload exactly once, straight
out of the receive buffer (and then drops the consumed bytes itself, so an
idle connection holds only the frame still arriving). An invalid header is
reported after the frames before it, so events keep wire order.
"""

from __future__ import annotations

import os
from collections import deque
from struct import Struct
from typing import Final

from ._constants import MAX_CONTROL_PAYLOAD
from ._errors import LocalProtocolError, MessageTooBig, ProtocolError, RemoteProtocolError
from ._kernels import KERNELS, Kernels, bind_scan
from ._kernels_py import (
    ERR_CONTROL_FRAGMENTED,
    ERR_CONTROL_TOO_LONG,
    ERR_LENGTH_MSB,
    ERR_MASKED,
    ERR_NON_MINIMAL_LENGTH,
    ERR_RESERVED_OPCODE,
    ERR_RSV_BITS,
    ERR_TOO_BIG,
    ERR_UNMASKED,
    ScanResult,
)

__all__ = [
    "FrameDecoder",
    "encode_frame",
    "frame_header",
    "mask_key",
    "parse_header",
    "scan_error",
]

#: Frames reported per native call; bounds the result array, not the input.
MAX_FRAMES_PER_SCAN: Final = 4096

#: 2**63 - 1: "the most significant bit MUST be 0" (§5.2), so nothing is larger.
UNLIMITED: Final = (1 << 63) - 1

_ERRORS: dict[int, tuple[type[RemoteProtocolError], str]] = {
    ERR_RESERVED_OPCODE: (ProtocolError, "reserved opcode"),
    ERR_RSV_BITS: (ProtocolError, "reserved bits set without a negotiated extension"),
    ERR_CONTROL_TOO_LONG: (
        ProtocolError,
        f"control frame payload over {MAX_CONTROL_PAYLOAD} bytes",
    ),
    ERR_CONTROL_FRAGMENTED: (ProtocolError, "fragmented control frame"),
    ERR_LENGTH_MSB: (ProtocolError, "64-bit payload length with the top bit set"),
    ERR_NON_MINIMAL_LENGTH: (ProtocolError, "payload length not minimally encoded"),
    # §5.1: "The server MUST close the connection upon receiving a frame that is
    # not masked"; "A client MUST close a connection if it detects a masked frame".
    ERR_UNMASKED: (ProtocolError, "unmasked frame from a client"),
    ERR_MASKED: (ProtocolError, "masked frame from a server"),
    ERR_TOO_BIG: (MessageTooBig, "frame over the message size limit"),
}


def scan_error(code: int) -> RemoteProtocolError:
    """The exception for a ``scan_frames`` error code."""
    cls, reason = _ERRORS[code]
    return cls(reason)


#: A frame at least this large whose header is in but whose payload is not is received
#: straight into a buffer sized for it (:meth:`FrameDecoder.receive_buffer`), not in chunks.
DIRECT_MIN: Final = 128 * 1024

# Buffers of large frames, reused across decoders (and connections) so that a stream of
# large messages does not fault in fresh pages for each. ``list.pop``/``append`` are
# atomic under the GIL. Bounded in count and in total size: what they hold stays resident.
_POOL: list[bytearray] = []
_POOL_MAX = 4
_POOL_MAX_BYTES = 32 << 20


def _take_buffer(size: int) -> bytearray:
    """A buffer of at least ``size`` bytes (its contents are garbage)."""
    try:
        buf = _POOL.pop()
    except IndexError:
        return bytearray(size)
    if len(buf) < size:
        return bytearray(size)  # the small one is dropped: the next large frame reuses this
    if len(buf) > 4 * size:
        _POOL.append(buf)  # much too big: keep it for a frame its size
        return bytearray(size)
    return buf


def _give_back(buf: bytearray) -> None:
    """Return a large-frame buffer for reuse, if the pool has room."""
    if len(_POOL) < _POOL_MAX and len(buf) + sum(map(len, _POOL)) <= _POOL_MAX_BYTES:
        _POOL.append(buf)


class FrameDecoder:
    """Incremental frame decoder for one direction of one connection.

    Args:
        expect_masked: True on the server side (client frames are masked).
        allowed_rsv: RSV bits claimed by negotiated extensions (0x70 mask).
        max_payload: the largest payload a single frame may declare.
        kernels: the masking and scanning kernels to decode with (default: the
            native ones when built, see :data:`rfc6455._kernels.KERNELS`);
            ``PYTHON_KERNELS`` or ``native_kernels()`` pick one explicitly.

    Bytes held are ``buffer[consumed:end]``. Normally ``len(buffer) == end``; while a
    frame of at least :data:`DIRECT_MIN` bytes is arriving, ``buffer`` is a buffer sized
    for the whole frame (taken from a small shared pool) and ``end`` is how much of it is
    filled: :meth:`feed` copies into it without reallocating, :meth:`receive_buffer`
    lets the caller ``recv_into`` it directly, and nothing is scanned again until the
    frame is complete.
    """

    __slots__ = (
        "_allowed_rsv",
        "_bound",
        "_direct",
        "_expect_masked",
        "_max_payload",
        "_scan",
        "buffer",
        "consumed",
        "end",
        "kernels",
        "needed",
        "take_frame",
    )

    def __init__(
        self,
        *,
        expect_masked: bool,
        allowed_rsv: int = 0,
        max_payload: int = UNLIMITED,
        kernels: Kernels = KERNELS,
    ):
        #: The kernels given; ``scan_frames`` is bound once, here, for the per-chunk path.
        self.kernels = kernels
        self._scan = kernels.scan_frames
        #: The kernels' ``take_frame``: the caller's whole read as one frame, decoded in
        #: place, when nothing is buffered (``end == 0``; see Connection.receive_one).
        self.take_frame = kernels.take_frame
        self.buffer = bytearray()
        # True while buffer is a large frame's own buffer (from the pool).
        self._direct = False
        #: Bytes at the start of :attr:`buffer` that belong to frames already
        #: reported; dropped at the next :meth:`feed` (or by :meth:`release`).
        self.consumed = 0
        #: Bytes of :attr:`buffer` filled (== its length but while a large frame arrives);
        #: 0 means nothing is buffered at all (never in large-frame mode).
        self.end = 0
        self._expect_masked = expect_masked
        self._allowed_rsv = allowed_rsv
        self._max_payload = max_payload
        self._bound = bind_scan(kernels.scan_frames, expect_masked, allowed_rsv, max_payload)
        #: Size of the incomplete frame at ``consumed``, if its header is in.
        self.needed = 0

    @property
    def allowed_rsv(self) -> int:
        """RSV bits claimed by negotiated extensions."""
        return self._allowed_rsv

    @allowed_rsv.setter
    def allowed_rsv(self, value: int) -> None:
        self._allowed_rsv = value
        self._rebind()

    @property
    def max_payload(self) -> int:
        """The largest payload a single frame may declare."""
        return self._max_payload

    @max_payload.setter
    def max_payload(self, value: int) -> None:
        self._max_payload = value
        self._rebind()

    def _rebind(self) -> None:
        self._bound = bind_scan(
            self._scan, self._expect_masked, self._allowed_rsv, self._max_payload
        )

    def _scan_from(self, buf: bytearray, start: int, end: int) -> ScanResult:
        bound = self._bound
        if bound is not None:
            return bound(buf, start, end)
        return self._scan(
            buf,
            start,
            end,
            self._expect_masked,
            self._allowed_rsv,
            self._max_payload,
            MAX_FRAMES_PER_SCAN,
        )

    def feed(self, data: bytes) -> tuple[list[int], int]:
        """Add ``data`` and decode the frames now complete.

        Returns the flat records list (three ints per frame, offsets into
        :attr:`buffer`, valid until the next call) and a ``scan_frames``
        error code (0 if none). After an error the decoder must not be fed.
        """
        if self.consumed:
            self.release()
        buffer = self.buffer
        end = self.end
        if not self._direct:
            buffer += data
        else:  # a large frame's buffer: fill it in place (it grows only past its size)
            buffer[end : end + len(data)] = data
        self.end = end + len(data)
        return self._scan_buffer()

    def feed_from(self, buf: bytearray, nbytes: int) -> tuple[list[int], int, bytearray]:
        """Like :meth:`feed` with ``buf[:nbytes]``, but decoding in ``buf`` itself when
        nothing is buffered (the usual case: a read that holds whole frames), so that
        no byte is copied but the payloads and an incomplete frame at the end.

        ``buf`` is modified (payloads unmasked in place) and not kept. Returns the
        records, the error code and the buffer the records' offsets point into
        (``buf`` or :attr:`buffer`), valid until the next call.
        """
        if self.end or self._direct:
            records, error = self.feed(memoryview(buf)[:nbytes])  # type: ignore[arg-type]
            return records, error, self.buffer
        bound = self._bound
        if bound is not None:
            records, consumed, error, needed = bound(buf, 0, nbytes)
        else:
            records, consumed, error, needed = self._scan(
                buf,
                0,
                nbytes,
                self._expect_masked,
                self._allowed_rsv,
                self._max_payload,
                MAX_FRAMES_PER_SCAN,
            )
        while len(records) % (3 * MAX_FRAMES_PER_SCAN) == 0 and records and not error:
            if consumed == nbytes:
                break
            more, consumed, error, needed = self._scan_from(buf, consumed, nbytes)
            records += more
            if len(more) < 3 * MAX_FRAMES_PER_SCAN:
                break
        self.needed = needed
        if error:
            return records, error, buf  # nothing after it is decoded
        if consumed < nbytes:
            self.buffer += memoryview(buf)[consumed:nbytes]
            self.end = nbytes - consumed
            if needed >= DIRECT_MIN:
                self._maybe_go_direct()
        return records, error, buf

    def receive_buffer(self) -> memoryview | None:
        """Where the rest of a large frame still arriving goes, or None.

        Only while a frame of :data:`DIRECT_MIN` bytes or more is incomplete: a writable
        view of exactly the bytes it still lacks. Fill a prefix of it (``recv_into``),
        release the view, then call :meth:`filled` with the count.
        """
        if not self._direct or self.end - self.consumed >= self.needed:
            return None
        return memoryview(self.buffer)[self.end : self.consumed + self.needed]

    def filled(self, nbytes: int) -> tuple[list[int], int]:
        """``nbytes`` were written at the start of :meth:`receive_buffer`'s view: like
        :meth:`feed` with those bytes, without copying them."""
        if not 0 < nbytes <= self.consumed + self.needed - self.end:
            raise ValueError("filled() needs 0 < nbytes <= what receive_buffer() offered")
        self.end += nbytes
        return self._scan_buffer()

    def _scan_buffer(self) -> tuple[list[int], int]:
        needed = self.needed
        if needed and self.end - self.consumed < needed:
            # The frame whose header was checked is still incomplete: nothing new to scan.
            if needed >= DIRECT_MIN and not self._direct:
                self._maybe_go_direct()
            return [], 0
        buffer = self.buffer
        end = self.end
        scan_frames = self._scan_from
        records, consumed, error, needed = scan_frames(buffer, self.consumed, end)
        if len(records) == 3 * MAX_FRAMES_PER_SCAN:
            while not error and consumed < end:
                more, consumed, error, needed = scan_frames(buffer, consumed, end)
                records += more
                if len(more) < 3 * MAX_FRAMES_PER_SCAN:
                    break
        self.consumed = consumed
        self.needed = needed
        if needed >= DIRECT_MIN and not records and not error:
            # A large frame has begun: give it a buffer of its size, filled in place from
            # now on. (With records, the caller first reads them; release() does this.)
            self._maybe_go_direct()
        return records, error

    def _maybe_go_direct(self) -> None:
        pending = self.end - self.consumed
        # Only once a quarter of the frame is in, unless a pooled buffer (memory already
        # held) fits: a peer that declares a large frame and sends little of it makes us
        # allocate at most 4x what it sent, not the declared size.
        if self._direct:
            return
        if pending * 4 < self.needed:
            pool = _POOL
            if not pool or len(pool[-1]) < self.needed:
                return
        big = _take_buffer(self.needed)
        big[:pending] = memoryview(self.buffer)[self.consumed : self.end]
        self.buffer = big
        self._direct = True
        self.consumed = 0
        self.end = pending

    def release(self) -> None:
        """Drop the bytes of the frames already reported (their offsets become invalid).

        Safe while a memoryview of :attr:`buffer` is alive only in large-frame mode (the
        buffer is then replaced, not resized).
        """
        consumed = self.consumed
        if not consumed:
            return
        buffer = self.buffer
        self.consumed = 0
        self.end -= consumed
        if not self._direct:
            del buffer[:consumed]
        else:
            # A large frame's buffer: keep the rest in a fresh small one, reuse the big one.
            self.buffer = bytearray(memoryview(buffer)[consumed : consumed + self.end])
            self._direct = False
            _give_back(buffer)
        if self.needed >= DIRECT_MIN:
            self._maybe_go_direct()

    def clear(self) -> None:
        """Forget everything buffered, for when nothing more will be read.

        Safe while a memoryview of :attr:`buffer` is alive: the buffer is
        replaced, not resized, and the old one goes when its views do.
        """
        self.buffer = bytearray()
        self._direct = False  # a large frame's buffer is not reused: views of it may live
        self.consumed = 0
        self.end = 0
        self.needed = 0

    @property
    def pending(self) -> int:
        """Bytes buffered that belong to frames not complete yet."""
        return self.end - self.consumed

    @property
    def held(self) -> int:
        """Bytes of memory held for input beyond the frames reported: :attr:`pending`, or
        the whole size of a large frame still arriving (its buffer is allocated before it
        is filled)."""
        if self._direct:
            return max(self.end, self.consumed + self.needed) - self.consumed
        return self.end - self.consumed

    def pending_view(self) -> memoryview:
        """The bytes of the incomplete frame(s) at the end of the buffer."""
        return memoryview(self.buffer)[self.consumed : self.end]


_SENDABLE_OPCODES: Final = frozenset({0x0, 0x1, 0x2, 0x8, 0x9, 0xA})

_U16: Final = Struct("!BBH")
_U64: Final = Struct("!BBQ")


def frame_header(first_byte: int, length: int, mask_bit: int = 0) -> bytes:
    """Encode a frame header without the masking key (§5.2).

    ``first_byte`` holds FIN, RSV and the opcode; ``mask_bit`` is 0x80 or 0.
    """
    if length < 126:
        return bytes((first_byte, mask_bit | length))
    if length < 65536:
        return _U16.pack(first_byte, mask_bit | 126, length)
    return _U64.pack(first_byte, mask_bit | 127, length)


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
    kernels: Kernels = KERNELS,
) -> bytes:
    """Serialize one frame.

    Args:
        opcode: the frame opcode.
        payload: the (unmasked) payload.
        fin: the FIN bit.
        rsv: RSV bits as they sit in the first byte (0x40 = RSV1).
        mask: mask the payload with a fresh random key (client frames, §5.3:
            "the masking key MUST be ... unpredictable", so a new one per frame).
        kernels: the kernels whose ``apply_mask`` masks the payload (default:
            :data:`rfc6455._kernels.KERNELS`).
    """
    if opcode not in _SENDABLE_OPCODES:
        raise LocalProtocolError(f"opcode {opcode:#x} is reserved (RFC 6455 §5.2)")
    if opcode & 0x8 and (len(payload) > MAX_CONTROL_PAYLOAD or not fin):
        raise LocalProtocolError(
            f"control frames have at most {MAX_CONTROL_PAYLOAD} bytes and are never fragmented"
        )
    if rsv & ~0x70:
        raise LocalProtocolError("rsv holds only the RSV1-3 bits (0x70)")
    first = (0x80 if fin else 0) | rsv | opcode
    if not mask:
        return frame_header(first, len(payload)) + payload
    key = mask_key()
    return frame_header(first, len(payload), 0x80) + key + kernels.apply_mask(payload, key)


# Masking keys ready to use, 4 bytes each, drawn from os.urandom 4 KiB at a time.
# deque.popleft is atomic, so threads never share a key; a forked child starts afresh.
_MASK_KEYS: deque[bytes] = deque()
_MASK_KEY_BATCH = 4096
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_MASK_KEYS.clear)


def mask_key() -> bytes:
    """A fresh masking key: 4 bytes from the operating system's CSPRNG (RFC 6455 §5.3: the
    key "MUST be derived from a strong source of entropy" and be unpredictable).

    Drawn in batches, so a client does not make a system call (getrandom) per frame.
    """
    while True:
        try:
            return _MASK_KEYS.popleft()
        except IndexError:
            pool = os.urandom(_MASK_KEY_BATCH)
            _MASK_KEYS.extend([pool[i : i + 4] for i in range(0, _MASK_KEY_BATCH, 4)])


def parse_header(view: memoryview) -> tuple[int, int, int, bytes | None] | None:
    """(first byte, payload length, header size, key) of a frame header, if complete."""
    if len(view) < 2:
        return None
    first = view[0]
    second = view[1]
    length = second & 0x7F
    size = 2
    if length == 126:
        size = 4
        if len(view) < size:
            return None
        length = int.from_bytes(view[2:4], "big")
    elif length == 127:
        size = 10
        if len(view) < size:
            return None
        length = int.from_bytes(view[2:10], "big")
    key = None
    if second & 0x80:
        if len(view) < size + 4:
            return None
        key = view[size : size + 4].tobytes()
        size += 4
    return first, length, size, key

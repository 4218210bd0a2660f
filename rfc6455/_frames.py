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
from struct import Struct
from typing import Final

from ._constants import MAX_CONTROL_PAYLOAD
from ._errors import LocalProtocolError, MessageTooBig, ProtocolError, RemoteProtocolError
from ._kernels import KERNELS, Kernels
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
)

__all__ = ["FrameDecoder", "encode_frame", "frame_header", "scan_error"]

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


class FrameDecoder:
    """Incremental frame decoder for one direction of one connection.

    Args:
        expect_masked: True on the server side (client frames are masked).
        allowed_rsv: RSV bits claimed by negotiated extensions (0x70 mask).
        max_payload: the largest payload a single frame may declare.
        kernels: the masking and scanning kernels to decode with (default: the
            native ones when built, see :data:`rfc6455._kernels.KERNELS`);
            ``PYTHON_KERNELS`` or ``native_kernels()`` pick one explicitly.
    """

    __slots__ = (
        "_expect_masked",
        "_scan",
        "allowed_rsv",
        "buffer",
        "consumed",
        "kernels",
        "max_payload",
        "needed",
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
        self.buffer = bytearray()
        #: Bytes at the start of :attr:`buffer` that belong to frames already
        #: reported; dropped at the next :meth:`feed`. An owner done with the
        #: offsets may drop them sooner (``del buffer[:consumed]``, then 0).
        self.consumed = 0
        self._expect_masked = expect_masked
        self.allowed_rsv = allowed_rsv
        self.max_payload = max_payload
        #: Size of the incomplete frame at the end of the buffer, if its header is in.
        self.needed = 0

    def feed(self, data: bytes) -> tuple[list[int], int]:
        """Add ``data`` and decode the frames now complete.

        Returns the flat records list (three ints per frame, offsets into
        :attr:`buffer`, valid until the next call) and a ``scan_frames``
        error code (0 if none). After an error the decoder must not be fed.
        """
        buffer = self.buffer
        if self.consumed:
            del buffer[: self.consumed]
            self.consumed = 0
        buffer += data
        scan_frames = self._scan
        records, consumed, error, needed = scan_frames(
            buffer,
            0,
            len(buffer),
            self._expect_masked,
            self.allowed_rsv,
            self.max_payload,
            MAX_FRAMES_PER_SCAN,
        )
        if len(records) == 3 * MAX_FRAMES_PER_SCAN:
            end = len(buffer)
            while not error and consumed < end:
                more, consumed, error, needed = scan_frames(
                    buffer,
                    consumed,
                    end,
                    self._expect_masked,
                    self.allowed_rsv,
                    self.max_payload,
                    MAX_FRAMES_PER_SCAN,
                )
                records += more
                if len(more) < 3 * MAX_FRAMES_PER_SCAN:
                    break
        self.consumed = consumed
        self.needed = needed
        return records, error

    def clear(self) -> None:
        """Forget everything buffered, for when nothing more will be read.

        Safe while a memoryview of :attr:`buffer` is alive: the buffer is
        replaced, not resized, and the old one goes when its views do.
        """
        self.buffer = bytearray()
        self.consumed = 0
        self.needed = 0

    @property
    def pending(self) -> int:
        """Bytes buffered that belong to frames not complete yet."""
        return len(self.buffer) - self.consumed

    def pending_view(self) -> memoryview:
        """The bytes of the incomplete frame(s) at the end of the buffer."""
        return memoryview(self.buffer)[self.consumed :]


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
    key = os.urandom(4)
    return frame_header(first, len(payload), 0x80) + key + kernels.apply_mask(payload, key)

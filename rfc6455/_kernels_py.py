"""Pure-Python twins of the native kernels in ``native/``.

Strategy: same signatures, same results and same error codes as the C
functions, so :mod:`rfc6455._kernels` can offer either (its ``PYTHON_KERNELS``
bundles these three functions) and one test matrix covers both. Masking XORs
whole payloads as big integers, which is the fastest thing pure Python can do
(a per-byte loop is ~100x slower).
"""

from __future__ import annotations

from ._constants import MAX_CONTROL_PAYLOAD

__all__ = [
    "apply_mask",
    "apply_mask_inplace",
    "encode_masked",
    "scan_frames",
    "take_frame",
    "xor_bytes",
]

Buffer = bytes | bytearray | memoryview

#: What ``scan_frames`` returns: ``(records, consumed, error, needed)``.
ScanResult = tuple[list[int], int, int, int]

# Error codes returned by scan_frames; must match native/rfc6455_native.h.
ERR_NONE = 0
ERR_RESERVED_OPCODE = 1
ERR_RSV_BITS = 2
ERR_CONTROL_TOO_LONG = 3
ERR_CONTROL_FRAGMENTED = 4
ERR_LENGTH_MSB = 5
ERR_NON_MINIMAL_LENGTH = 6
ERR_UNMASKED = 7
ERR_MASKED = 8
ERR_TOO_BIG = 9

_RESERVED_OPCODES = frozenset({3, 4, 5, 6, 7, 11, 12, 13, 14, 15})


def _check_key(key: Buffer) -> bytes:
    key = bytes(key)
    if len(key) != 4:
        raise ValueError("mask key must be 4 bytes")
    return key


def xor_bytes(data: Buffer, key: bytes, offset: int) -> bytes:
    """``data`` XOR the repeated ``key`` from key byte ``offset``; no checks (the kernels'
    shared step: callers have validated ``key``)."""
    n = len(data)
    if n == 0:
        return b""
    offset &= 3
    if offset:
        key = key[offset:] + key[:offset]
    repeated = key * ((n >> 2) + 1)
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated[:n], "little")
    return value.to_bytes(n, "little")


def apply_mask(data: Buffer, key: Buffer, offset: int = 0) -> bytes:
    """Mask or unmask ``data`` (RFC 6455 §5.3): XOR it with the repeated 4-byte ``key``.

    Args:
        data: any bytes-like object; it is not modified.
        key: the 4-byte masking key.
        offset: the key byte that applies to ``data[0]`` (taken modulo 4), so a payload
            can be masked in pieces: pass the number of payload bytes before this piece.

    Returns:
        A new ``bytes`` object of the same length.

    Raises:
        ValueError: ``key`` is not 4 bytes long.
    """
    return xor_bytes(data, _check_key(key), offset)


def encode_masked(first: int, payload: bytes, key: bytes) -> bytes:
    """A whole masked frame (a client's, RFC 6455 §5.2-5.3): the header with first byte
    ``first``, the mask bit and the payload length (7, 16 or 64 bits, minimally), then
    the 4-byte ``key``, then ``payload`` masked with it."""
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = bytes((first, 0xFE)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 0xFF)) + n.to_bytes(8, "big")
    return header + key + xor_bytes(payload, key, 0)


def apply_mask_inplace(data: bytearray | memoryview, key: Buffer, offset: int = 0) -> None:
    """Mask or unmask the writable buffer ``data`` in place (RFC 6455 §5.3).

    Args:
        data: a ``bytearray`` or writable ``memoryview``.
        key: the 4-byte masking key.
        offset: the key byte that applies to ``data[0]`` (taken modulo 4).

    Raises:
        TypeError: ``data`` is not a writable buffer (checked before the key).
        ValueError: ``key`` is not 4 bytes long.
    """
    if isinstance(data, memoryview) and data.readonly:
        raise TypeError("apply_mask_inplace needs a writable buffer")
    if not isinstance(data, (bytearray, memoryview)):
        raise TypeError("apply_mask_inplace needs a writable buffer")
    data[:] = xor_bytes(data, _check_key(key), offset)


def scan_frames(buf: bytearray, start: int, end: int, expect_masked: bool,
                allowed_rsv: int, max_payload: int, max_frames: int, /) -> ScanResult:
    """Decode the headers of the complete frames in ``buf[start:end]``.

    Masked payloads are unmasked in place. Returns ``(records, consumed,
    error, needed)``: ``records`` holds three ints per complete frame (first
    header byte, payload start, payload end, offsets into ``buf``);
    ``consumed`` is the offset just past the last complete frame; ``error`` is
    ``ERR_NONE`` or the reason the frame at ``consumed`` is invalid; ``needed``
    is, when the next frame is incomplete and its header is known, the total
    size of that frame, else 0. At most ``max_frames`` frames are reported.

    Raises:
        ValueError: unless ``0 <= start <= end <= len(buf)``.
    """
    if not 0 <= start <= end <= len(buf):
        raise ValueError("scan_frames needs 0 <= start <= end <= len(buf)")
    records: list[int] = []
    pos = start
    frames = 0
    while frames < max_frames:
        if end - pos < 2:
            return records, pos, ERR_NONE, 0
        b0 = buf[pos]
        b1 = buf[pos + 1]
        opcode = b0 & 0x0F
        if opcode in _RESERVED_OPCODES:
            return records, pos, ERR_RESERVED_OPCODE, 0
        if b0 & 0x70 & ~allowed_rsv:
            return records, pos, ERR_RSV_BITS, 0
        masked = b1 & 0x80
        if expect_masked and not masked:
            return records, pos, ERR_UNMASKED, 0
        if masked and not expect_masked:
            return records, pos, ERR_MASKED, 0
        length = b1 & 0x7F
        if opcode & 0x8:
            if length > MAX_CONTROL_PAYLOAD:
                return records, pos, ERR_CONTROL_TOO_LONG, 0
            if not b0 & 0x80:
                return records, pos, ERR_CONTROL_FRAGMENTED, 0
        header = 2
        if length == 126:
            if end - pos < 4:
                return records, pos, ERR_NONE, 0
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            if length < 126:
                return records, pos, ERR_NON_MINIMAL_LENGTH, 0
            header = 4
        elif length == 127:
            if end - pos < 10:
                return records, pos, ERR_NONE, 0
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            if length >> 63:
                return records, pos, ERR_LENGTH_MSB, 0
            if length < 65536:
                return records, pos, ERR_NON_MINIMAL_LENGTH, 0
            header = 10
        if length > max_payload:
            return records, pos, ERR_TOO_BIG, 0
        if masked:
            header += 4
        total = header + length
        if end - pos < total:
            return records, pos, ERR_NONE, total
        payload_start = pos + header
        payload_end = pos + total
        if masked and length:
            key = bytes(buf[payload_start - 4 : payload_start])
            buf[payload_start:payload_end] = xor_bytes(buf[payload_start:payload_end], key, 0)
        records += (b0, payload_start, payload_end)
        pos = payload_end
        frames += 1
    return records, pos, ERR_NONE, 0


def take_frame(buf: bytearray, end: int, expect_masked: bool, max_payload: int, /) -> int:
    """The usual read in one step: whether ``buf[:end]`` is exactly one whole data frame.

    That is: nothing before or after it, FIN set, no RSV bit, opcode text (1) or binary
    (2), masked iff ``expect_masked``, its length minimally encoded in 7 or 16 bits and at
    most ``max_payload``. If so, its payload is unmasked in place and the result is
    ``(header length << 4) | opcode`` (the payload is ``buf[header length:end]``);
    otherwise -1 and ``buf`` is untouched: decode it with :func:`scan_frames`, which
    also reports any error.
    """
    if not 0 <= end <= len(buf):
        raise ValueError("take_frame needs 0 <= end <= len(buf)")
    if end < 2:
        return -1
    b0 = buf[0]
    b1 = buf[1]
    if (b0 != 0x81 and b0 != 0x82) or bool(b1 & 0x80) != bool(expect_masked):
        return -1
    length = b1 & 0x7F
    header = 2
    if length == 126:
        if end < 4:
            return -1
        length = (buf[2] << 8) | buf[3]
        if length < 126:
            return -1
        header = 4
    elif length == 127:
        return -1
    if expect_masked:
        header += 4
    if max_payload < 0 or length > max_payload or header + length != end:
        return -1
    if expect_masked and length:
        buf[header:end] = xor_bytes(memoryview(buf)[header:end], bytes(buf[header - 4 : header]), 0)
    return (header << 4) | (b0 & 0x0F)

"""permessage-deflate (RFC 7692): per-message DEFLATE compression, both roles.

Strategy: the runtime (:class:`PerMessageDeflate`) and the negotiation
(:class:`ServerPerMessageDeflate`, :class:`ClientPerMessageDeflate`) are split
as the extension interface asks. The runtime keeps one raw-DEFLATE compressor
and one decompressor per connection, both created lazily on first use (an
idle connection holds no zlib state) and dropped after every message when the
negotiated parameters forbid context takeover, so such connections hold zlib
memory only while a message is in flight.

Invariants:

- receiving never inflates more than ``max_size + 1`` bytes per call: zlib's
  ``max_length`` bounds the output, so a compression bomb costs at most the
  message size limit before the connection fails with 1009.
- RSV1 is set only on the first frame of a compressed message (§6); a message
  sent uncompressed (under ``compress_threshold``) leaves the compressor and
  its sliding window untouched.
- negotiation follows RFC 7692 §7.1 to the letter: a server declines an
  invalid offer (§5: unknown or duplicate parameter, bad value) and answers
  only with parameters the offer allows; a client fails the handshake on any
  response it did not allow.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable
from typing import Final

from rfc6455._errors import ExtensionError, HandshakeError, MessageTooBig
from rfc6455._extensions import Extension, ExtensionParams, serialize_extension

__all__ = [
    "ClientPerMessageDeflate",
    "PerMessageDeflate",
    "ServerPerMessageDeflate",
    "compress_message",
]

#: The extension token (RFC 7692 §7).
NAME: Final = "permessage-deflate"

#: §7.2.1: the empty stored block a sync flush ends with; stripped when
#: sending, appended before inflating (§7.2.2).
_TAIL: Final = b"\x00\x00\xff\xff"

#: Below this size, appending the tail (one copy) is cheaper than a second
#: ``decompress`` call.
_CONCAT_BELOW: Final = 2048

#: What may follow a block with BFINAL set (§7.2.3.4) in a message: nothing,
#: or the one octet 0x00 of the RFC's own example (the header bits of the
#: empty stored block that the appended tail completes), then the tail we
#: append ourselves at the end of the message. Anything else is data after
#: the end of the DEFLATE stream: invalid, not dropped.
_AFTER_FINAL_BLOCK: Final = (b"", b"\x00")
_AFTER_FINAL_BLOCK_WITH_TAIL: Final = (_TAIL, b"\x00" + _TAIL)

_PARAMS: Final = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)

#: §7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15".
_WINDOW_VALUES: Final = {str(bits): bits for bits in range(8, 16)}

#: Compression level when the factories are not told otherwise: zlib's own
#: default (Z_DEFAULT_COMPRESSION is level 6), as websockets and Node's ws use.
DEFAULT_LEVEL: Final = 6

#: zlib memLevel for the factories: 5 instead of zlib's 8 shrinks the
#: compressor's hash table and pending buffer from 128 KiB to 16 KiB at a small
#: cost in ratio on short messages (websockets picks 5 for the same reason).
DEFAULT_MEM_LEVEL: Final = 5

#: The server's default window for both directions: 4 KiB instead of 32 KiB
#: (websockets' default too). Typical messages (JSON events, chat) are much
#: shorter than 4 KiB and repeat recent ones, so the ratio barely changes while
#: each connection's compressor and decompressor shrink several-fold.
DEFAULT_SERVER_WINDOW_BITS: Final = 12


def _zlib_wbits(bits: int) -> int:
    """The raw-DEFLATE ``wbits`` for a compressor allowed ``bits`` of window.

    zlib refuses windowBits=8 for raw deflate (it had a bug with 256-byte
    windows and now rejects them, madler/zlib#171). Using 9 is still correct
    for a peer that only has a 256-byte window: zlib's deflate never emits a
    distance above ``w_size - MIN_LOOKAHEAD`` = 512 - 262 = 250 bytes, which
    is within 256. zlib itself silently maps 8 to 9 for zlib-wrapped streams.
    """
    return -max(bits, 9)


class PerMessageDeflate(Extension):
    """The negotiated permessage-deflate extension of one connection.

    Usually built by :class:`ServerPerMessageDeflate` or
    :class:`ClientPerMessageDeflate` from the handshake; "local" is this
    endpoint, "remote" the peer.

    Args:
        local_no_context_takeover: reset our compressor after each message.
        remote_no_context_takeover: the peer resets its compressor after each
            message, so our decompressor is dropped after each message too.
        local_max_window_bits: LZ77 window of our compressor (8-15).
        remote_max_window_bits: LZ77 window the peer compresses with (8-15).
        level: zlib compression level, 0-9 (or -1 for zlib's default, 6).
        mem_level: zlib memLevel, 1-9: memory of the compressor's hash table.
        compress_threshold: messages shorter than this many bytes are sent
            uncompressed (RSV1 clear, RFC 7692 §6); fragmented messages are
            always compressed.
    """

    name = NAME
    rsv_mask = 0x40

    __slots__ = (
        "_compressing",
        "_compressor",
        "_decompressor",
        "_received",
        "compress_threshold",
        "level",
        "local_max_window_bits",
        "local_no_context_takeover",
        "mem_level",
        "remote_max_window_bits",
        "remote_no_context_takeover",
    )

    def __init__(
        self,
        *,
        local_no_context_takeover: bool = False,
        remote_no_context_takeover: bool = False,
        local_max_window_bits: int = 15,
        remote_max_window_bits: int = 15,
        level: int = DEFAULT_LEVEL,
        mem_level: int = 8,
        compress_threshold: int = 0,
    ) -> None:
        _check_bits("local_max_window_bits", local_max_window_bits)
        _check_bits("remote_max_window_bits", remote_max_window_bits)
        _check_zlib_settings(level, mem_level, compress_threshold)
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.level = level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        # True while a fragmented message we send is being compressed.
        self._compressing = False
        # True once the message being received has had compressed bytes.
        self._received = False

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_max_window_bits={self.local_max_window_bits}, "
            f"remote_max_window_bits={self.remote_max_window_bits})"
        )

    # ---------------------------------------------------------------- receive

    def decode(self, payload: bytes, *, rsv: int, fin: bool, max_size: int) -> bytes:
        """Inflate one frame of a compressed message (RFC 7692 §7.2.2).

        Raises:
            MessageTooBig: the frame inflates to more than ``max_size`` bytes.
            ExtensionError: the payload is not valid DEFLATE data (1002).
        """
        if not payload:
            if not fin:
                return b""
            if not self._received:
                # A compressed message is at least one byte (§7.2.3.6: an empty
                # message compresses to 0x00); some senders set RSV1 on an empty
                # payload anyway. Inflating the bare tail would leave zlib in the
                # middle of a stored block, so take it for an empty message.
                return b""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(
                -self.remote_max_window_bits
            )
        # max_length = 0 means "no limit" to zlib; max_size + 1 must also fit a
        # Py_ssize_t. One byte over the limit is enough to know it is passed.
        max_length = max_size + 1 if max_size < sys.maxsize else 0
        try:
            if fin and len(payload) < _CONCAT_BELOW:
                data = decompressor.decompress(payload + _TAIL, max_length)
            else:
                data = decompressor.decompress(payload, max_length)
                if fin and len(data) <= max_size:
                    rest = max_length - len(data) if max_length else 0
                    more = decompressor.decompress(_TAIL, rest)
                    if more:
                        data += more
        except zlib.error:
            raise ExtensionError("invalid compressed data") from None
        if len(data) > max_size or decompressor.unconsumed_tail:
            raise MessageTooBig("message over the size limit after decompression")
        if decompressor.eof and decompressor.unused_data not in (
            _AFTER_FINAL_BLOCK_WITH_TAIL if fin else _AFTER_FINAL_BLOCK
        ):
            # zlib keeps the bytes after the final block (of this frame and of
            # earlier ones) in unused_data rather than inflating them.
            raise ExtensionError("data after the final DEFLATE block")
        if fin:
            self._received = False
            # A BFINAL block (§7.2.3.4) ends the DEFLATE stream (what follows
            # it was checked above), so the next message needs a new
            # decompressor even with context takeover (a sender that ends its
            # stream cannot refer back to it anyway).
            if self.remote_no_context_takeover or decompressor.eof:
                self._decompressor = None
        else:
            self._received = True
        return data

    # ------------------------------------------------------------------- send

    def encode(self, payload: bytes, *, first: bool, fin: bool) -> tuple[int, bytes]:
        """Deflate one frame of a message to send (RFC 7692 §7.2.1).

        Returns RSV1 on the first frame of a compressed message, 0 otherwise.
        """
        if first:
            if fin and len(payload) < self.compress_threshold:
                return 0, payload
            self._compressing = True
        elif not self._compressing:
            return 0, payload
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                self.level,
                zlib.DEFLATED,
                _zlib_wbits(self.local_max_window_bits),
                self.mem_level,
            )
        data = compressor.compress(payload)
        # Z_SYNC_FLUSH: every frame carries all its data (no fragment waits for
        # the next); it ends with an empty stored block, 00 00 ff ff.
        flushed = compressor.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            # §7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the
            # tail end." An empty message leaves the single octet 0x00 (§7.2.3.6).
            if not flushed.endswith(_TAIL):  # pragma: no cover - zlib guarantees it
                raise AssertionError("zlib sync flush did not end with an empty stored block")
            flushed = flushed[:-4]
            self._compressing = False
            if self.local_no_context_takeover:
                self._compressor = None
        data = data + flushed if data else flushed
        return (0x40 if first else 0), data

    @property
    def shared_key(self) -> tuple[int, int, int, int] | None:
        """Connections with equal keys compress a whole message to the same bytes.

        Only without context takeover on our side (each message starts from a
        fresh compressor): then :func:`compress_message` with this key gives
        exactly what :meth:`encode` would send, so one compressed payload can
        serve many connections (pub/sub fan-out). None with context takeover.
        """
        if not self.local_no_context_takeover:
            return None
        return (self.local_max_window_bits, self.level, self.mem_level, self.compress_threshold)

    @property
    def holds_zlib_state(self) -> bool:
        """True while a compressor or decompressor is allocated (for memory tests)."""
        return self._compressor is not None or self._decompressor is not None


def compress_message(payload: bytes, key: tuple[int, int, int, int]) -> tuple[int, bytes]:
    """RSV bits and payload of a whole message for every connection with ``key``.

    ``key`` is a :attr:`PerMessageDeflate.shared_key`; the result is what that
    connection's :meth:`PerMessageDeflate.encode` sends for the message in one frame.
    """
    bits, level, mem_level, threshold = key
    if len(payload) < threshold:
        return 0, payload
    compressor = zlib.compressobj(level, zlib.DEFLATED, _zlib_wbits(bits), mem_level)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return 0x40, data[:-4]  # §7.2.1: without the 00 00 ff ff tail


# ------------------------------------------------------------------ negotiation


class _Invalid(Exception):
    """An offer or response that RFC 7692 §5 says to decline or fail."""


class _Params:
    """The four parameters of one offer or response, validated."""

    __slots__ = (
        "client_max_window_bits",
        "client_no_context_takeover",
        "names",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    def __init__(self) -> None:
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_max_window_bits: int | None = None
        # True: offered without a value ("I support it"), int: with a value.
        self.client_max_window_bits: int | bool | None = None
        self.names: set[str] = set()


def _parse_params(params: ExtensionParams, *, response: bool) -> _Params:
    """Validate the parameters of an offer (server side) or a response (client).

    Raises:
        _Invalid: an unknown or duplicate parameter, or an invalid value (§5).
    """
    parsed = _Params()
    for name, value in params:
        if name not in _PARAMS:
            raise _Invalid(f"unknown parameter {name!r}")
        if name in parsed.names:
            raise _Invalid(f"duplicate parameter {name!r}")
        parsed.names.add(name)
        if name.endswith("_no_context_takeover"):
            # §7.1.1.1, §7.1.1.2: "This extension parameter has no value."
            if value is not None:
                raise _Invalid(f"{name} takes no value")
            if name == "server_no_context_takeover":
                parsed.server_no_context_takeover = True
            else:
                parsed.client_no_context_takeover = True
            continue
        if value is None:
            # §7.1.2.2: only an offer's client_max_window_bits may come bare.
            if name == "client_max_window_bits" and not response:
                parsed.client_max_window_bits = True
                continue
            raise _Invalid(f"{name} needs a value")
        bits = _WINDOW_VALUES.get(value)
        if bits is None:
            raise _Invalid(f"invalid {name} value {value!r}")
        if name == "server_max_window_bits":
            parsed.server_max_window_bits = bits
        else:
            parsed.client_max_window_bits = bits
    return parsed


def _check_bits(name: str, bits: int | None) -> None:
    if bits is not None and not (8 <= bits <= 15):
        raise ValueError(f"{name} must be between 8 and 15, not {bits!r}")


def _check_zlib_settings(level: int, mem_level: int, compress_threshold: int) -> None:
    if not -1 <= level <= 9:
        raise ValueError(f"level must be between -1 and 9, not {level!r}")
    if not 1 <= mem_level <= 9:
        raise ValueError(f"mem_level must be between 1 and 9, not {mem_level!r}")
    if compress_threshold < 0:
        raise ValueError("compress_threshold must be >= 0")


def _build_element(
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: int | None,
    client_max_window_bits: int | bool | None,
) -> str:
    params: list[tuple[str, str | None]] = []
    if server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if server_max_window_bits is not None:
        params.append(("server_max_window_bits", str(server_max_window_bits)))
    if client_max_window_bits is True:
        params.append(("client_max_window_bits", None))
    elif client_max_window_bits:
        params.append(("client_max_window_bits", str(client_max_window_bits)))
    return serialize_extension(NAME, params)


class ServerPerMessageDeflate:
    """Server side of permessage-deflate negotiation (RFC 7692 §7.1).

    The handshake tries the client's offers in order; :meth:`accept` answers
    each one, declining those that are invalid (§5) or that this
    configuration refuses.

    Args:
        server_no_context_takeover: always reset our compressor after each
            message (and say so). Saves our compressor's memory between
            messages; costs ratio. A client may also ask for it.
        client_no_context_takeover: always ask the client to reset its
            compressor, so our decompressor is freed between messages. When
            the client offers it on its own, it is accepted either way.
        server_max_window_bits: the largest window our compressor uses (8-15);
            smaller if the client asks. None: 15 unless the client asks.
        client_max_window_bits: the largest window the client may use (8-15),
            which sizes our decompressor; only a client that offered
            ``client_max_window_bits`` can be told (§7.1.2.2). None: no limit.
        require_client_max_window_bits: decline offers without
            ``client_max_window_bits`` (needs ``client_max_window_bits``), to
            never decompress with a window over that size.
        refuse: parameter names whose presence in an offer makes the server
            decline it, e.g. ``("server_no_context_takeover",)`` to keep
            context takeover at the cost of not compressing with such clients.
        level: zlib compression level (0-9, -1 for zlib's default).
        mem_level: zlib memLevel (1-9).
        compress_threshold: send messages shorter than this uncompressed.

    The defaults (12-bit windows both ways, memLevel 5, level 6) are
    websockets' server defaults; see the README for the memory they cost.
    """

    name = NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = DEFAULT_SERVER_WINDOW_BITS,
        client_max_window_bits: int | None = DEFAULT_SERVER_WINDOW_BITS,
        require_client_max_window_bits: bool = False,
        refuse: Iterable[str] = (),
        level: int = DEFAULT_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        compress_threshold: int = 0,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        _check_bits("client_max_window_bits", client_max_window_bits)
        _check_zlib_settings(level, mem_level, compress_threshold)
        if require_client_max_window_bits and client_max_window_bits is None:
            raise ValueError("require_client_max_window_bits needs client_max_window_bits")
        refused = frozenset(refuse)
        unknown = refused - _PARAMS
        if unknown:
            raise ValueError(f"unknown parameters in refuse: {sorted(unknown)}")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.require_client_max_window_bits = require_client_max_window_bits
        self.refuse = refused
        self.level = level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold

    def accept(self, params: ExtensionParams) -> tuple[str, Extension] | None:
        """Answer one offer: the response element and the extension, or None."""
        try:
            offer = _parse_params(params, response=False)
        except _Invalid:
            return None  # §5: "A server MUST decline an extension negotiation offer"
        if offer.names & self.refuse:
            return None

        # §7.1.1.1: accepting an offer with server_no_context_takeover means
        # including it; a server may include it unasked.
        server_nct = offer.server_no_context_takeover or self.server_no_context_takeover
        # §7.1.1.2: a server may include client_no_context_takeover, asked or not.
        client_nct = offer.client_no_context_takeover or self.client_no_context_takeover

        # §7.1.2.1: answer an offered value with "the same or smaller value";
        # a server may include the parameter unasked.
        server_bits = offer.server_max_window_bits
        cap = self.server_max_window_bits
        if cap is not None and (server_bits is None or server_bits > cap):
            server_bits = cap

        # §7.1.2.2: client_max_window_bits only if offered; with "a value
        # equal to or smaller than the received value" if it had one.
        offered = offer.client_max_window_bits
        client_bits: int | None
        if offered is None:
            if self.require_client_max_window_bits:
                return None
            client_bits = None
        elif offered is True:
            client_bits = self.client_max_window_bits
        else:
            assert isinstance(offered, int)
            client_bits = offered
            if self.client_max_window_bits is not None:
                client_bits = min(client_bits, self.client_max_window_bits)

        element = _build_element(server_nct, client_nct, server_bits, client_bits)
        extension = PerMessageDeflate(
            local_no_context_takeover=server_nct,
            remote_no_context_takeover=client_nct,
            local_max_window_bits=server_bits or 15,
            remote_max_window_bits=client_bits or 15,
            level=self.level,
            mem_level=self.mem_level,
            compress_threshold=self.compress_threshold,
        )
        return element, extension


class ClientPerMessageDeflate:
    """Client side of permessage-deflate negotiation (RFC 7692 §7.1).

    Offers one configuration and fails the handshake (§5) on a response that
    it does not allow. The default offer is browsers':
    ``permessage-deflate; client_max_window_bits``.

    Args:
        server_no_context_takeover: ask the server to reset its compressor
            after each message (our decompressor is then freed between
            messages); the response must agree.
        client_no_context_takeover: reset our compressor after each message,
            and tell the server (§7.1.1.2: a hint it may echo).
        server_max_window_bits: ask the server for a window of at most this
            many bits (8-15), which sizes our decompressor.
        client_max_window_bits: True to offer the parameter without a value
            (the server may then pick our window), an int (8-15) to offer and
            use at most that window, None not to offer it.
        level: zlib compression level (0-9, -1 for zlib's default).
        mem_level: zlib memLevel (1-9).
        compress_threshold: send messages shorter than this uncompressed.
    """

    name = NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = True,
        level: int = DEFAULT_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        compress_threshold: int = 0,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        if client_max_window_bits is False:
            client_max_window_bits = None
        if client_max_window_bits is not True:
            _check_bits("client_max_window_bits", client_max_window_bits)
        _check_zlib_settings(level, mem_level, compress_threshold)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.level = level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold

    def offer(self) -> str:
        """The ``Sec-WebSocket-Extensions`` element to send."""
        return _build_element(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            self.client_max_window_bits,
        )

    def accept_response(self, params: ExtensionParams) -> Extension:
        """Check the server's answer against our offer; build the extension.

        Raises:
            HandshakeError: the response is invalid or not what we allowed
                (RFC 7692 §5: the client must fail the connection).
        """
        try:
            response = _parse_params(params, response=True)
        except _Invalid as exc:
            raise HandshakeError(f"permessage-deflate response: {exc}") from None

        def fail(reason: str) -> HandshakeError:
            return HandshakeError(f"permessage-deflate response: {reason}")

        # §7.1.1.1: the server must echo server_no_context_takeover.
        if self.server_no_context_takeover and not response.server_no_context_takeover:
            raise fail("server_no_context_takeover was requested but not accepted")
        # §7.1.2.1: "the same or smaller value as the offer".
        server_bits = response.server_max_window_bits
        if self.server_max_window_bits is not None:
            if server_bits is None:
                raise fail("server_max_window_bits was requested but not accepted")
            if server_bits > self.server_max_window_bits:
                raise fail(f"server_max_window_bits={server_bits} exceeds the offered value")
        # §7.1.2.2: only if offered; no larger than an offered value.
        client_bits = response.client_max_window_bits
        assert client_bits is not True  # a response needs a value
        if client_bits is not None:
            if self.client_max_window_bits is None:
                raise fail("client_max_window_bits was not offered")
            if self.client_max_window_bits is not True and client_bits > self.client_max_window_bits:
                raise fail(f"client_max_window_bits={client_bits} exceeds the offered value")
        elif isinstance(self.client_max_window_bits, int) and self.client_max_window_bits is not True:
            client_bits = self.client_max_window_bits

        return PerMessageDeflate(
            local_no_context_takeover=(
                response.client_no_context_takeover or self.client_no_context_takeover
            ),
            remote_no_context_takeover=response.server_no_context_takeover,
            local_max_window_bits=int(client_bits) if client_bits else 15,
            remote_max_window_bits=server_bits or 15,
            level=self.level,
            mem_level=self.mem_level,
            compress_threshold=self.compress_threshold,
        )

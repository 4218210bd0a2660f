"""The sans-I/O WebSocket connection (after the opening handshake).

Strategy: bytes in, events out; events in, bytes out. ``receive_data`` runs
the frame decoder over the new bytes at once and turns every complete frame
into events, in wire order, so a message that precedes a protocol error in
the same chunk is reported before the failure. Replies the protocol requires
(pong for ping, close for close, close after a failure) wait in the
connection; ``data_to_send`` returns them and every ``send_*`` call returns
a waiting pong first, so bytes always leave in the order they were produced.
The one exception is our closing frame once the peer's close (or a failure)
is in: it waits in ``_final`` (state REPLYING) until ``data_to_send``, so the
application can still answer the messages that came before it.

The hot path is an unfragmented, unextended text or binary frame: one
comparison on the first header byte, one copy of the payload out of the
receive buffer, one event built without validation. Everything else
(fragments, control frames, extensions, limits) takes ``_slow_frame``.

How a fragmented message is held and checked, and why at most one automatic pong
waits: docs/state.md, "Inside the connection".

Invariants:

- once the peer's close frame is in, or the connection failed, no further
  input is decoded (§5.5.1: nothing after a close); after EOF, nothing at all,
  and nothing received is held any more (``buffered_bytes`` is 0).
- message size is counted after extensions decode, across fragments (plus
  ``FRAGMENT_OVERHEAD`` per fragment), and checked before a fragment's
  payload is kept (and, for a fragment still arriving, as soon as its header
  declares a length over the limit).
- bytes received are held only while they are needed: the frame still
  arriving and the fragmented message being assembled (``buffered_bytes``);
  a complete frame's bytes are dropped once its event is built.
- only ``WebSocketError`` subclasses escape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from ._close import build_close_payload, parse_close_payload, truncate_reason
from ._constants import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FRAGMENT_OVERHEAD,
    MAX_CONTROL_PAYLOAD,
    CloseCode,
)
from ._errors import (
    ConnectionClosed,
    InvalidUTF8,
    LocalProtocolError,
    MessageTooBig,
    ProtocolError,
    RemoteProtocolError,
    connection_closed,
)
from ._events import (
    NEED_DATA,
    BinaryChunk,
    BinaryMessage,
    Close,
    ConnectionFailed,
    ConnectionLost,
    Event,
    NeedData,
    Ping,
    Pong,
    TextChunk,
    TextMessage,
    make_binary,
    make_binary_chunk,
    make_text,
    make_text_chunk,
)
from ._extensions import Extension, rsv_mask_of
from ._frames import (
    UNLIMITED,
    FrameDecoder,
    frame_header,
    mask_key,
    parse_header,
    scan_error,
)
from ._kernels import KERNELS, Kernels, PinnedTakeFrame, pinned_take_frame
from ._state import RECEIVING, SENDING, ConnectionState, Trigger, next_state
from ._utf8 import decode_utf8

__all__ = ["ClientConnection", "Connection", "ConnectionState", "ServerConnection"]

_OPEN = ConnectionState.OPEN
_CLOSING = ConnectionState.CLOSING
_REPLYING = ConnectionState.REPLYING
_CLOSED = ConnectionState.CLOSED

_OP_CONT, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_OP_CLOSE, _OP_PING, _OP_PONG = 0x8, 0x9, 0xA

# The 2-byte headers of unmasked final text / binary frames with payloads under 126 bytes,
# by opcode then length: a lookup instead of building one per message.
_SHORT_HEADERS = {
    op: tuple(bytes((0x80 | op, n)) for n in range(126)) for op in (_OP_TEXT, _OP_BINARY)
}

# Payloads up to this size are copied twice (cheaper than a memoryview), larger ones once.
_SMALL_COPY = 2048
# receive_one's mark for a buffer that is not pinned (never a caller's buffer).
_NOT_PINNED: Final = bytearray()


class Connection:
    """A WebSocket connection in one role, with no I/O of its own.

    Use :class:`ServerConnection` or :class:`ClientConnection` (usually made
    by the handshake objects).

    Args:
        extensions: negotiated extensions, in the order of the handshake response.
        max_message_size: the largest message accepted, in bytes, after
            decompression and across fragments; larger ones fail the
            connection with 1009. A message of N bytes in F fragments
            counts N + F * ``FRAGMENT_OVERHEAD`` (16) bytes (an unfragmented
            one counts N), so a message cannot be held open by an endless
            run of empty fragments. None for no limit.
        stream_messages: report data as :class:`TextChunk` /
            :class:`BinaryChunk` events, one per frame, instead of whole
            messages (the size limit still applies per message).
        trailing_data: bytes received after the handshake, fed first.
        kernels: the masking and frame-scanning kernels, for decoding, for
            masking what a client sends and for checking UTF-8 in a masked
            text frame still arriving. None (the default) for
            :data:`rfc6455._kernels.KERNELS` (native when built, unless
            ``RFC6455_NO_EXTENSIONS`` is set); ``PYTHON_KERNELS`` or
            ``native_kernels()`` from :mod:`rfc6455._kernels` to pick one.

    Input: ``receive_data(data)``; ``receive_data(b"")`` means EOF. Then
    ``next_event()`` until it returns ``NEED_DATA`` (or iterate
    ``events()``, or call ``receive(data)`` for a list). Output: every
    ``send_*`` method and ``send(event)`` returns the bytes to write,
    including any replies queued before; ``data_to_send()`` returns queued
    replies alone. Call it after handling the events of each chunk: when
    the peer closed (or broke the protocol) it also sends our close frame,
    after any answers to the messages that preceded it (state REPLYING,
    then CLOSED). Pings are answered automatically, with at most one pong
    per flush: the one for the latest ping received since the last flush
    (RFC 6455 §5.5.3).

    For the I/O layer's budgets: :attr:`buffered_bytes` (memory held for
    input) and :attr:`receiving` (a frame or a fragmented message is
    incomplete), both O(1).
    """

    is_server: bool = True

    __slots__ = (
        "_decoder",
        "_eof",
        "_event_pos",
        "_events",
        "_extensions",
        "_final",
        "_kernels",
        "_mask_frames",
        "_max_size",
        "_msg_buf",
        "_msg_opcode",
        "_msg_rsv",
        "_msg_size",
        "_msg_tail",
        "_partial_checked",
        "_partial_tail",
        "_pong",
        "_rx_buf",
        "_rx_take",
        "_send_opcode",
        "_stream",
        "close_received",
        "close_sent",
        "failure",
        "state",
    )

    def __init__(
        self,
        *,
        extensions: Sequence[Extension] = (),
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        stream_messages: bool = False,
        trailing_data: bytes = b"",
        kernels: Kernels | None = None,
    ) -> None:
        self._kernels = kernels = KERNELS if kernels is None else kernels
        self._extensions = tuple(extensions)
        # Capped to 63 bits (no message is larger) so that it can go to the native kernels.
        self._max_size = (
            UNLIMITED if max_message_size is None else min(max_message_size, UNLIMITED)
        )
        self._stream = stream_messages
        self._mask_frames = not self.is_server
        max_payload = self._max_size
        if self._extensions and max_payload < UNLIMITED:
            # A compressed frame of incompressible data is a little larger than
            # the message; the decoded size is checked against the real limit.
            max_payload = min(UNLIMITED, max_payload + (max_payload >> 6) + 1024)
        self._decoder = FrameDecoder(
            expect_masked=self.is_server,
            allowed_rsv=rsv_mask_of(self._extensions),
            max_payload=max_payload,
            kernels=kernels,
        )
        self._events: list[Event] = []
        self._event_pos = 0
        # The payload of the pong owed for the latest ping, until it is sent.
        self._pong: bytes | None = None
        # Our close frame while REPLYING: it leaves with the next data_to_send().
        self._final = b""
        #: OPEN, CLOSING (our close sent), REPLYING (our answering close queued) or CLOSED.
        self.state = _OPEN
        #: The peer's close frame, once received.
        self.close_received: Close | None = None
        #: Our close frame, once sent.
        self.close_sent: Close | None = None
        #: The error that failed the connection, if the peer broke the protocol.
        self.failure: RemoteProtocolError | None = None
        # The fragmented message being received: its opcode and RSV bits (from
        # its first frame), its size as charged against the limit, its payload
        # so far (unless streaming), and for text the bytes of a UTF-8 sequence
        # that the fragments so far leave incomplete.
        self._msg_opcode = 0
        self._msg_rsv = 0
        self._msg_size = 0
        # The fragments of the message being assembled; b"" (shared) until the first one.
        self._msg_buf: bytearray | bytes = b""
        self._msg_tail = b""
        # A text frame still arriving: payload bytes checked so far, and the
        # incomplete UTF-8 sequence they end with (None: not started).
        self._partial_checked = 0
        self._partial_tail: bytes | None = None
        self._send_opcode = 0
        self._eof = False
        # receive_one's buffer once seen (None: none yet; _NOT_PINNED: not a pinned one)
        # and, when pinned, take_frame bound to it.
        self._rx_buf: bytearray | None = None
        self._rx_take: PinnedTakeFrame | None = None
        if trailing_data:
            self.receive_data(trailing_data)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer; ``b""`` signals EOF."""
        if not data:
            self._receive_eof()
            return
        if self._eof or self.state not in RECEIVING:
            return  # §5.5.1: nothing after a close frame (or a failure) is read
        self._decoded(*self._decoder.feed(data))

    def receive_messages(self, buf: bytearray, nbytes: int) -> list[Event | str | bytes]:
        """``receive(buf[:nbytes])`` for an I/O layer that reads into a buffer of its own,
        with less work per message.

        ``buf`` is decoded in place when nothing is buffered (its payloads are unmasked
        in it: it must be writable, and its contents are garbage afterwards); it is not
        kept. A whole data message comes back as its data alone (``str``: a text message,
        ``bytes``: a binary one) instead of a ``TextMessage`` / ``BinaryMessage``; every
        other event is an :class:`Event`. ``nbytes`` 0 means EOF.
        """
        if not nbytes:
            self._receive_eof()
        elif not self._eof and self.state in RECEIVING:
            decoder = self._decoder
            records, error, buffer = decoder.feed_from(buf, nbytes)
            if records and not error and not decoder.needed and not decoder.consumed:
                # The usual read: whole frames, nothing left over (_decoded, inlined).
                self._partial_checked = 0
                self._partial_tail = None
                try:
                    self._process(records, buffer, True)
                except RemoteProtocolError as exc:
                    self._fail(exc)
            else:
                self._decoded(records, error, buffer, True)
        return self._take_events()  # type: ignore[return-value]

    def receive_one(self, buf: bytearray, nbytes: int) -> str | bytes | None:
        """The usual read in one step, for an I/O layer that reads into a buffer of its own:
        if ``buf[:nbytes]`` is one whole unfragmented text or binary frame (no extension
        bit set) and nothing is pending, its message (``str``: text, ``bytes``: binary).

        None otherwise: then call :meth:`receive_messages` with the same arguments (``buf``
        is untouched, unless the text was invalid UTF-8: then the connection has failed,
        and ``receive_messages`` reports it).
        """
        if (
            self._msg_opcode
            or self._stream
            or self._events
            or self._eof
            or self.state is not _OPEN
        ):
            return None
        decoder = self._decoder
        if decoder.end:
            return None  # the start of a frame waits in the decoder
        if buf is self._rx_buf:
            # An event loop's pinned buffer: one C call.
            taken = self._rx_take(nbytes, self.is_server, self._max_size)  # type: ignore[misc]
            if taken < 0:
                if taken == -1:
                    return None
                raise ValueError("receive_one needs 0 <= nbytes <= len(buf)")
        else:
            taken = decoder.take_frame(buf, nbytes, self.is_server, self._max_size)
            if self._rx_buf is None:
                self._rx_take = take = pinned_take_frame(self._kernels, buf)
                self._rx_buf = _NOT_PINNED if take is None else buf
            if taken < 0:
                return None
        # No partial-frame state to reset: with nothing buffered no frame was arriving.
        start = taken >> 4
        if taken & 0xF == _OP_BINARY:
            if nbytes - start <= _SMALL_COPY:
                return bytes(buf[start:nbytes])
            with memoryview(buf) as view:
                return view[start:nbytes].tobytes()
        try:
            if nbytes - start <= _SMALL_COPY:
                return buf[start:nbytes].decode()
            with memoryview(buf) as view:
                return str(view[start:nbytes], "utf-8")
        except UnicodeDecodeError:
            self._fail(InvalidUTF8("invalid UTF-8 in text message"))
            return None

    def receive_buffer(self) -> memoryview | None:
        """Where to read the rest of a large frame still arriving, or None.

        A zero-copy alternative to ``receive_data`` for an I/O layer that reads with
        ``recv_into``: while a frame of ``rfc6455._frames.DIRECT_MIN`` bytes or more is
        incomplete (and a quarter of it is in), a writable view of exactly the bytes it
        still lacks, in a buffer sized for the whole frame. Read into a prefix of it,
        release the view, then call :meth:`receive_filled` with the count. None
        otherwise: read into any buffer and call ``receive_data``.
        """
        if self._eof or self.state not in RECEIVING:
            return None
        return self._decoder.receive_buffer()

    def receive_filled(self, nbytes: int) -> None:
        """``nbytes`` (> 0) were read into the start of :meth:`receive_buffer`'s view (now
        released): like ``receive_data`` with those bytes."""
        if self._eof or self.state not in RECEIVING:
            return
        self._decoded(*self._decoder.filled(nbytes))

    def _decoded(
        self,
        records: list[int],
        error: int,
        buffer: bytearray | None = None,
        raw: bool = False,
    ) -> None:
        """Events for the frames just decoded (``records``: offsets into ``buffer``, by
        default the decoder's), then the checks on the one still arriving."""
        decoder = self._decoder
        try:
            if records:
                # A frame completed, so any frame still arriving is a new one.
                self._partial_checked = 0
                self._partial_tail = None
                if not self._process(records, buffer, raw):
                    return
                # The payloads are copied out: hold only the frame still arriving,
                # now rather than at the next feed (an idle connection holds nothing).
                if decoder.consumed:
                    decoder.release()
            if error:
                self._fail(scan_error(error))
            elif decoder.needed:
                self._check_incomplete_frame()
        except RemoteProtocolError as exc:
            self._fail(exc)

    def next_event(self) -> Event | NeedData:
        """The next event, or ``NEED_DATA`` when more bytes are needed."""
        events = self._events
        pos = self._event_pos
        if pos < len(events):
            event = events[pos]
            pos += 1
            if pos == len(events):
                events.clear()
                pos = 0
            self._event_pos = pos
            return event
        return NEED_DATA

    def events(self) -> Iterator[Event]:
        """Iterate over the events available now."""
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            assert isinstance(event, Event)
            yield event

    def receive(self, data: bytes) -> list[Event]:
        """``receive_data(data)`` and return every event available."""
        self.receive_data(data)
        return self._take_events()

    def _take_events(self) -> list[Event]:
        """Every event not yet handed out (``receive_messages``' list also holds whole
        messages as their data), leaving the connection none."""
        events = self._events
        if self._event_pos:
            events = events[self._event_pos :]
            self._events.clear()
        else:
            self._events = []
        self._event_pos = 0
        return events

    def data_to_send(self) -> bytes:
        """Bytes queued by the connection itself (pongs, close frames).

        While REPLYING, this is what sends our close frame and ends the
        connection's output (state CLOSED): call it after answering the
        events received so far.
        """
        data = b"" if self._pong is None else self._take_pong()
        if self._final:
            data += self._final
            self._final = b""
            self.state = next_state(self.state, Trigger.FLUSH_CLOSE)
        return data

    @property
    def extensions(self) -> tuple[Extension, ...]:
        """The negotiated extensions, in the order of the handshake response."""
        return self._extensions

    @property
    def buffered_bytes(self) -> int:
        """Bytes of input this connection holds now, for a memory budget.

        The frame still arriving (as much of it as is buffered) plus the
        payload so far of a fragmented message being assembled (after
        decompression). Not counted: the bytearray's slack (at most an eighth),
        an incomplete UTF-8 sequence (3 bytes at most) and zlib's own state
        (fixed per connection by the window size, see
        :attr:`~rfc6455.permessage_deflate.PerMessageDeflate.holds_zlib_state`).
        Streamed messages hold nothing between frames. 0 once nothing more
        will be read (close received, failure, EOF). O(1).
        """
        return self._decoder.held + len(self._msg_buf)

    @property
    def receiving(self) -> bool:
        """True while a frame or a fragmented message has started and not ended.

        That is: some bytes of a frame are buffered (a header, or part of one),
        or a data frame without FIN was received and its final fragment was
        not. False between messages and once nothing more will be read. For a
        deadline on completing a message once it started. O(1).
        """
        return bool(self._msg_opcode) or self._decoder.pending > 0

    @property
    def should_close_transport(self) -> bool:
        """True once the transport should be closed after writing pending output.

        RFC 6455 §7.1.1: the server closes the TCP connection first once the
        closing handshake is done; a client waits for the server to do so (the
        I/O layer closes it itself after a timeout), except after a failure.
        """
        if self.state is not _CLOSED:
            return False
        return self.is_server or self.failure is not None or self._eof

    # ------------------------------------------------------------ processing

    def _process(
        self, records: list[int], buffer: bytearray | None = None, raw: bool = False
    ) -> bool:
        """Turn decoded frames into events. False once processing must stop.

        ``raw``: a whole data message is reported as its ``str`` / ``bytes`` alone.
        """
        if buffer is None:
            buffer = self._decoder.buffer
        # A small payload is copied out of a bytearray slice (cheaper than a memoryview
        # for a few bytes); a large one through a memoryview (one copy, not two).
        view: memoryview | None = None
        try:
            append = self._events.append
            max_size = self._max_size
            simple = not (self._msg_opcode or self._stream)
            for i in range(0, len(records), 3):
                first = records[i]
                start = records[i + 1]
                end = records[i + 2]
                if simple and end - start <= max_size:
                    if first == 0x82:
                        if end - start <= _SMALL_COPY:
                            data = bytes(buffer[start:end])
                        else:
                            if view is None:
                                view = memoryview(buffer)
                            data = view[start:end].tobytes()
                        append(data if raw else make_binary(data))  # type: ignore[arg-type]
                        continue
                    if first == 0x81:
                        try:
                            if end - start <= _SMALL_COPY:
                                text = buffer[start:end].decode()
                            else:
                                if view is None:
                                    view = memoryview(buffer)
                                text = str(view[start:end], "utf-8")
                            append(text if raw else make_text(text))  # type: ignore[arg-type]
                        except UnicodeDecodeError:
                            self._fail(InvalidUTF8("invalid UTF-8 in text message"))
                            return False
                        continue
                if view is None:
                    view = memoryview(buffer)
                if not self._slow_frame(first, view[start:end]):
                    return False
                simple = not (self._msg_opcode or self._stream)
            return True
        finally:
            if view is not None:
                view.release()

    def _slow_frame(self, first: int, payload: memoryview) -> bool:
        opcode = first & 0x0F
        rsv = first & 0x70
        fin = bool(first & 0x80)
        if opcode >= 0x8:
            if rsv:
                raise ProtocolError("reserved bits set on a control frame")
            return self._control_frame(opcode, payload.tobytes())
        self._check_sequence(opcode, rsv)
        if opcode == _OP_CONT:
            rsv = self._msg_rsv
            size = self._msg_size + FRAGMENT_OVERHEAD
        else:
            self._msg_opcode = opcode
            self._msg_rsv = rsv
            size = 0 if fin else FRAGMENT_OVERHEAD
        limit = self._max_size - size
        if limit < 0:
            raise MessageTooBig("message over the size limit")
        data: bytes | memoryview = payload
        if rsv:
            data = payload.tobytes()
            for extension in reversed(self._extensions):
                if extension.rsv_mask & rsv:
                    data = extension.decode(data, rsv=rsv, fin=fin, max_size=limit)
        if len(data) > limit:
            raise MessageTooBig("message over the size limit")
        self._msg_size = size + len(data)
        if self._msg_opcode == _OP_TEXT:
            self._text_frame(data, fin, opcode == _OP_CONT)
        elif self._stream:
            self._events.append(make_binary_chunk(_to_bytes(data), fin))
        elif fin and opcode != _OP_CONT:
            # A whole message in one frame (compressed, usually).
            self._events.append(make_binary(_to_bytes(data)))
        else:
            buf = self._fragments()
            buf += data
            if fin:
                self._events.append(make_binary(bytes(buf)))
                self._msg_buf = b""
        if fin:
            self._msg_opcode = 0
        return True

    def _fragments(self) -> bytearray:
        """The buffer of the fragmented message being assembled (made on first use, so
        that a connection between fragmented messages holds none)."""
        buf = self._msg_buf
        if type(buf) is not bytearray:
            buf = self._msg_buf = bytearray()
        return buf

    def _text_frame(self, data: bytes | memoryview, fin: bool, continuing: bool) -> None:
        """A text frame's payload, after extensions: validated, kept or reported."""
        if self._stream:
            raw = _to_bytes(data)
            tail = self._msg_tail
            if tail:
                raw = tail + raw
            text, used = decode_utf8(raw, fin)
            self._msg_tail = raw[used:] if used < len(raw) else b""
            self._events.append(make_text_chunk(text, fin))
        elif fin and not continuing:
            # A whole message in one frame (compressed, usually).
            try:
                self._events.append(make_text(str(data, "utf-8")))
            except UnicodeDecodeError:
                raise InvalidUTF8("invalid UTF-8 in text message") from None
        elif fin:
            buf = self._fragments()
            buf += data
            self._msg_tail = b""
            self._msg_buf = b""
            try:
                text = str(buf, "utf-8")
            except UnicodeDecodeError:
                raise InvalidUTF8("invalid UTF-8 in text message") from None
            self._events.append(make_text(text))
        else:
            raw = _to_bytes(data)
            self._fragments().extend(raw)
            tail = self._msg_tail
            # §8.1 fail fast, but an ASCII fragment after complete characters
            # is valid whatever follows: no need to decode it.
            if tail or not raw.isascii():
                if tail:
                    raw = tail + raw
                _, used = decode_utf8(raw, False)
                self._msg_tail = raw[used:]

    def _check_sequence(self, opcode: int, rsv: int) -> None:
        """Fragmentation rules for a data frame (§5.4)."""
        if opcode == _OP_CONT:
            if not self._msg_opcode:
                raise ProtocolError("continuation frame without a message to continue")
            if rsv:
                # RFC 7692 §6.1: RSV1 marks a message on its first frame only.
                raise ProtocolError("reserved bits set on a continuation frame")
        elif self._msg_opcode:
            raise ProtocolError("new data frame inside a fragmented message")

    def _control_frame(self, opcode: int, payload: bytes) -> bool:
        if opcode == _OP_PING:
            self._events.append(Ping(payload=payload))
            if self.state is _OPEN:
                # §5.5.3: one pong for the latest ping; it replaces any still waiting.
                self._pong = payload
            return True
        if opcode == _OP_PONG:
            self._events.append(Pong(payload=payload))
            return True
        code, reason = parse_close_payload(payload)
        close = Close(code=code, reason=reason)
        self.close_received = close
        self._events.append(close)
        self._stop_reading()
        if self.state is _OPEN:
            # §5.5.1: "the endpoint MUST send a Close frame in response ...
            # It SHOULD do so as soon as practical"; echo the code. It waits
            # in _final until the application answered what came before.
            reply_code = None if code == CloseCode.NO_STATUS_RCVD else code
            self.close_sent = Close(code=code, reason="")
            self._final = self._encode(0x80 | _OP_CLOSE, build_close_payload(reply_code))
        self.state = next_state(self.state, Trigger.RECEIVE_CLOSE)
        return False

    def _check_incomplete_frame(self) -> None:
        """Checks on a frame whose header arrived but whose payload has not.

        Nothing that can be decided from the header waits for the payload: a
        frame out of sequence (1002), a frame whose fragment charge and (if
        uncompressed) declared length pass the message size limit (1009, so
        the excess is never buffered), and invalid UTF-8 in a text frame
        still arriving (§8.1 fail fast: 1007 as soon as the invalid sequence
        is seen), in the same order as for a complete frame.
        """
        header = parse_header(self._decoder.pending_view())
        if header is None:
            return
        first, length, header_size, key = header
        opcode = first & 0x0F
        if opcode >= 0x8:
            return
        self._check_sequence(opcode, first & 0x70)
        continuing = opcode == _OP_CONT
        if continuing:
            size = self._msg_size + FRAGMENT_OVERHEAD
            compressed = bool(self._msg_rsv)
        else:
            size = 0 if first & 0x80 else FRAGMENT_OVERHEAD
            compressed = bool(first & 0x70)
        if compressed:
            # Only the decoded size counts; the fragment's charge is known now.
            if size > self._max_size:
                raise MessageTooBig("message over the size limit")
            return
        if size + length > self._max_size:
            raise MessageTooBig("message over the size limit")
        if not (opcode == _OP_TEXT or (continuing and self._msg_opcode == _OP_TEXT)):
            return
        available = self._decoder.pending - header_size
        if available <= self._partial_checked:
            return
        tail = self._partial_tail
        if tail is None:
            tail = self._msg_tail if continuing else b""
        with self._decoder.pending_view() as view:
            chunk = view[header_size + self._partial_checked : header_size + available]
            if key is not None:
                raw = self._kernels.apply_mask(chunk, key, self._partial_checked)
            else:
                raw = chunk.tobytes()
            chunk.release()
        if tail or not raw.isascii():
            if tail:
                raw = tail + raw
            _, used = decode_utf8(raw, False)
            tail = raw[used:]
        self._partial_tail = tail
        self._partial_checked = available

    def _receive_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        self._stop_reading()
        if self.state is _OPEN or self.state is _CLOSING:
            self._events.append(ConnectionLost())
        # While REPLYING the peer's close (or our failure) was already reported.
        self.state = next_state(self.state, Trigger.EOF)

    def _fail(self, exc: RemoteProtocolError) -> None:
        """Fail the connection (§7.1.7): queue a close frame, report it, stop."""
        if self.state is _CLOSED or self.state is _REPLYING:
            return
        # A traceback would pin views of the receive buffer (the caller's, with
        # receive_messages) for the connection's life: the chained ones too (a
        # UnicodeDecodeError behind an InvalidUTF8 raised "from None" is still its context).
        chained: BaseException | None = exc
        seen: set[int] = set()
        while chained is not None and id(chained) not in seen:
            seen.add(id(chained))
            chained.__traceback__ = None
            chained = chained.__cause__ or chained.__context__
        self.failure = exc
        self._stop_reading()
        reason = truncate_reason(exc.reason)
        if self.state is _OPEN:
            self.close_sent = Close(code=exc.close_code, reason=reason)
            payload = build_close_payload(exc.close_code, reason)
            self._final = self._encode(0x80 | _OP_CLOSE, payload)
        self.state = next_state(self.state, Trigger.FAIL)
        self._events.append(ConnectionFailed(code=exc.close_code, reason=reason))

    def _stop_reading(self) -> None:
        """Nothing more will be decoded: let go of everything held for input.

        Safe in the middle of ``_process`` (the decoder replaces its buffer
        rather than resizing the one being read).
        """
        self._decoder.clear()
        self._msg_opcode = 0
        self._msg_buf = b""
        self._msg_tail = b""
        self._partial_tail = None

    # ----------------------------------------------------------------- output

    def _encode(self, first: int, payload: bytes) -> bytes:
        if self._mask_frames:
            return self._kernels.encode_masked(first, payload, mask_key())
        return frame_header(first, len(payload)) + payload

    def _take_pong(self) -> bytes:
        """The waiting pong, encoded now (a replaced one is never encoded)."""
        payload = self._pong
        assert payload is not None
        self._pong = None
        return self._encode(0x80 | _OP_PONG, payload)

    def _emit(self, frame: bytes) -> bytes:
        """``frame`` after the waiting pong, if any."""
        if self._pong is None:
            return frame
        return self._take_pong() + frame

    def _check_can_send(self, what: str) -> None:
        """Sending is allowed until our close frame has left (OPEN or REPLYING)."""
        if self.state not in SENDING:
            raise self.closed_error(f"cannot send {what}: connection is {self.state.value}")

    def closed_error(self, message: str | None = None) -> ConnectionClosed:
        """The :class:`ConnectionClosed` that says how this connection ended (or is ending).

        The code is the peer's close code, else the code of a failure, else 1006
        after EOF, else the code of the close frame we sent.
        """
        if self.close_received is not None:
            code, reason = self.close_received.code, self.close_received.reason
        elif self.failure is not None:
            code, reason = self.failure.close_code, self.failure.reason
        elif self._eof or self.close_sent is None:
            code, reason = int(CloseCode.ABNORMAL_CLOSURE), ""
        else:
            code, reason = self.close_sent.code, self.close_sent.reason
        return connection_closed(code, reason, message)

    def _send_data(self, opcode: int, payload: bytes) -> bytes:
        if self.state is not _OPEN:
            self._check_can_send("data")
        if self._send_opcode:
            raise LocalProtocolError("a fragmented message is being sent; finish it first")
        first = 0x80 | opcode
        if self._extensions:
            for extension in self._extensions:
                rsv, payload = extension.encode(payload, first=True, fin=True)
                first |= rsv
        elif not self._mask_frames:
            n = len(payload)
            if n < 126:
                frame = bytes((first, n)) + payload
            else:
                frame = frame_header(first, n) + payload
            return frame if self._pong is None else self._take_pong() + frame
        return self._emit(self._encode(first, payload))

    def send_data_parts(self, data: str | bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """Encode a message (``str``: text, ``bytes``: binary) as two buffers to write in
        order, so that a large payload is never copied to join it to its header.

        ``head + body`` is exactly what ``send_text`` / ``send_binary`` return: ``head``
        is any waiting pong and the frame header, ``body`` the payload, unless the frame
        had to be built whole (a client masks its payload; then ``body`` is ``b""``).
        Write both with one gathering write (``socket.sendmsg``).
        """
        if isinstance(data, str):
            try:
                payload = data.encode("utf-8")
            except UnicodeEncodeError:
                raise LocalProtocolError(
                    "text with lone surrogates cannot be sent as UTF-8"
                ) from None
            opcode = _OP_TEXT
        else:
            payload = _to_bytes(data)
            opcode = _OP_BINARY
        if self.state is not _OPEN:
            self._check_can_send("data")
        if self._send_opcode:
            raise LocalProtocolError("a fragmented message is being sent; finish it first")
        first = 0x80 | opcode
        for extension in self._extensions:
            rsv, payload = extension.encode(payload, first=True, fin=True)
            first |= rsv
        if self._mask_frames:
            return self._emit(self._encode(first, payload)), b""
        head = frame_header(first, len(payload))
        if self._pong is not None:
            head = self._take_pong() + head
        return head, payload

    def send_message(self, data: str | bytes) -> bytes:
        """``send_text(data)`` for a ``str``, else ``send_binary(data)``, in one call."""
        if type(data) is bytes:
            opcode = _OP_BINARY
        elif type(data) is str:
            try:
                data = data.encode("utf-8")
            except UnicodeEncodeError:
                raise LocalProtocolError(
                    "text with lone surrogates cannot be sent as UTF-8"
                ) from None
            opcode = _OP_TEXT
        elif isinstance(data, str):
            return self.send_text(data)
        else:
            return self.send_binary(data)
        # _send_data, inlined for the common case: open, no extension, unmasked.
        if self.state is _OPEN and not (self._send_opcode or self._extensions or self._mask_frames):
            n = len(data)
            if n < 126:
                frame = _SHORT_HEADERS[opcode][n] + data
            else:
                frame = frame_header(0x80 | opcode, n) + data
            return frame if self._pong is None else self._take_pong() + frame
        return self._send_data(opcode, data)

    def send_text(self, text: str) -> bytes:
        """Encode a text message; returns the bytes to write."""
        try:
            payload = text.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError("text with lone surrogates cannot be sent as UTF-8") from None
        return self._send_data(_OP_TEXT, payload)

    def send_binary(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encode a binary message; returns the bytes to write."""
        return self._send_data(_OP_BINARY, data if type(data) is bytes else _to_bytes(data))

    def send_fragment(self, data: str | bytes, *, final: bool) -> bytes:
        """Encode one fragment of a message (§5.4).

        The first fragment's type (str: text, bytes: binary) sets the message
        type; later fragments must have the same type; ``final`` ends it.
        """
        self._check_can_send("data")
        opcode = _OP_TEXT if isinstance(data, str) else _OP_BINARY
        if isinstance(data, str):
            try:
                payload = data.encode("utf-8")
            except UnicodeEncodeError:
                raise LocalProtocolError("text with lone surrogates cannot be sent as UTF-8") from None
        else:
            payload = _to_bytes(data)
        first_fragment = not self._send_opcode
        if first_fragment:
            wire_opcode = opcode
        elif opcode != self._send_opcode:
            raise LocalProtocolError("fragments of one message must all be text or all binary")
        else:
            wire_opcode = _OP_CONT
        first = (0x80 if final else 0) | wire_opcode
        for extension in self._extensions:
            rsv, payload = extension.encode(payload, first=first_fragment, fin=final)
            first |= rsv
        self._send_opcode = 0 if final else opcode
        return self._emit(self._encode(first, payload))

    def send_ping(self, payload: bytes = b"") -> bytes:
        """Encode a ping (at most 125 bytes of payload)."""
        return self._send_control(_OP_PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """Encode an unsolicited pong (a heartbeat, §5.5.3)."""
        return self._send_control(_OP_PONG, payload)

    def _send_control(self, opcode: int, payload: bytes) -> bytes:
        self._check_can_send("a control frame")
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError(
                f"control frame payloads are at most {MAX_CONTROL_PAYLOAD} bytes (RFC 6455 §5.5)"
            )
        return self._emit(self._encode(0x80 | opcode, _to_bytes(payload)))

    def close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """Start the closing handshake; returns the bytes to write.

        Does nothing but return queued output if a close frame was already
        sent or the connection is closed.

        Raises:
            LocalProtocolError: a code that may not be sent, or a reason over
                123 bytes of UTF-8.
        """
        if self.state is not _OPEN:
            return self.data_to_send()
        payload = build_close_payload(code, reason)
        self.close_sent = Close(
            code=int(CloseCode.NO_STATUS_RCVD) if code is None else code, reason=reason
        )
        self.state = next_state(self.state, Trigger.SEND_CLOSE)
        return self._emit(self._encode(0x80 | _OP_CLOSE, payload))

    def send(self, event: Event) -> bytes:
        """Encode an event: a message, a chunk, a ping, a pong or a close."""
        if isinstance(event, TextMessage):
            return self.send_text(event.data)
        if isinstance(event, BinaryMessage):
            return self.send_binary(event.data)
        if isinstance(event, (TextChunk, BinaryChunk)):
            return self.send_fragment(event.data, final=event.final)
        if isinstance(event, Ping):
            return self.send_ping(event.payload)
        if isinstance(event, Pong):
            return self.send_pong(event.payload)
        if isinstance(event, Close):
            return self.close(event.code, event.reason)
        raise LocalProtocolError(f"cannot send a {type(event).__name__} event")


class ServerConnection(Connection):
    """The server side: expects masked frames, sends unmasked ones."""

    __slots__ = ()
    is_server = True


class ClientConnection(Connection):
    """The client side: expects unmasked frames, masks what it sends (§5.3)."""

    __slots__ = ()
    is_server = False


def _to_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """Bytes of a bytes-like object; TypeError for anything else (``bytes(5)`` is five zeros)."""
    if type(data) is bytes:
        return data
    return memoryview(data).tobytes()

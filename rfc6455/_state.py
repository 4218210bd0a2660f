"""The connection state table (after the opening handshake).

Strategy: everything that moves the connection between states lives in
:data:`TRANSITIONS`; the connection only looks transitions up. A missing
entry means the trigger cannot happen in that state. The closing handshake
(RFC 6455 §7) from either side::

    OPEN --send close--> CLOSING --receive close------------------> CLOSED
    OPEN --receive close, or fail--> REPLYING --our close flushed--> CLOSED
    OPEN/CLOSING/REPLYING --EOF-----------------------------------> CLOSED

REPLYING exists so that an application can still answer the messages that
arrived before the peer's close frame (or before a protocol error) in the same
chunk: our close frame is queued, and leaves with the next ``data_to_send()``,
after those answers (Autobahn 7.1.1: "echoed message followed by clean close").
"""

from __future__ import annotations

import enum

from ._errors import LocalProtocolError

__all__ = [
    "RECEIVING",
    "SENDING",
    "TRANSITIONS",
    "ConnectionState",
    "Trigger",
    "next_state",
]


class ConnectionState(enum.Enum):
    """Where the closing handshake stands."""

    #: Data may flow both ways.
    OPEN = "OPEN"
    #: We sent a close frame and wait for the peer's (§7.1.2).
    CLOSING = "CLOSING"
    #: The peer's close frame arrived (or the peer broke the protocol); our close
    #: frame is queued. Data may still be sent until ``data_to_send()`` flushes it.
    REPLYING = "REPLYING"
    #: Close frames went both ways, or the connection failed or was lost.
    CLOSED = "CLOSED"


class Trigger(enum.Enum):
    """What can happen to a connection."""

    SEND_CLOSE = "send close"
    RECEIVE_CLOSE = "receive close"
    FAIL = "fail"
    FLUSH_CLOSE = "flush close"
    EOF = "eof"


_S = ConnectionState
_T = Trigger

TRANSITIONS: dict[tuple[ConnectionState, Trigger], ConnectionState] = {
    (_S.OPEN, _T.SEND_CLOSE): _S.CLOSING,
    (_S.OPEN, _T.RECEIVE_CLOSE): _S.REPLYING,
    (_S.OPEN, _T.FAIL): _S.REPLYING,
    (_S.OPEN, _T.EOF): _S.CLOSED,
    (_S.REPLYING, _T.FLUSH_CLOSE): _S.CLOSED,
    # close() while replying just sends the close frame already queued.
    (_S.REPLYING, _T.SEND_CLOSE): _S.CLOSED,
    (_S.REPLYING, _T.EOF): _S.CLOSED,
    # EOF came before our answering close was flushed: it still goes out.
    (_S.CLOSED, _T.FLUSH_CLOSE): _S.CLOSED,
    (_S.CLOSING, _T.RECEIVE_CLOSE): _S.CLOSED,
    (_S.CLOSING, _T.FAIL): _S.CLOSED,
    (_S.CLOSING, _T.EOF): _S.CLOSED,
    (_S.CLOSED, _T.EOF): _S.CLOSED,
}


#: The guards: states in which we may still send (our close frame has not left) ...
SENDING: tuple[ConnectionState, ...] = (_S.OPEN, _S.REPLYING)
#: ... and states in which received bytes are decoded (§5.5.1: nothing after a close).
RECEIVING: tuple[ConnectionState, ...] = (_S.OPEN, _S.CLOSING)


def next_state(state: ConnectionState, trigger: Trigger) -> ConnectionState:
    """The state after ``trigger``.

    Raises:
        LocalProtocolError: ``trigger`` cannot happen in ``state``.
    """
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise LocalProtocolError(f"cannot {trigger.value} in state {state.value}") from None

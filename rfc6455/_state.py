"""The connection state table (after the opening handshake).

Strategy: everything that moves the connection between states lives in
:data:`TRANSITIONS`; the connection only looks transitions up. A missing
entry means the trigger cannot happen in that state. The closing handshake
(RFC 6455 §7) from either side::

    OPEN --send close--> CLOSING --receive close--> CLOSED
    OPEN --receive close (reply queued at once)---> CLOSED
    OPEN/CLOSING --fail (close queued) or EOF-----> CLOSED
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "ConnectionState", "Trigger", "next_state"]


class ConnectionState(enum.Enum):
    """Where the closing handshake stands."""

    #: Data may flow both ways.
    OPEN = "OPEN"
    #: We sent a close frame and wait for the peer's (§7.1.2).
    CLOSING = "CLOSING"
    #: Close frames went both ways, or the connection failed or was lost.
    CLOSED = "CLOSED"


class Trigger(enum.Enum):
    """What can happen to a connection."""

    SEND_CLOSE = "send close"
    RECEIVE_CLOSE = "receive close"
    FAIL = "fail"
    EOF = "eof"


_S = ConnectionState
_T = Trigger

TRANSITIONS: dict[tuple[ConnectionState, Trigger], ConnectionState] = {
    (_S.OPEN, _T.SEND_CLOSE): _S.CLOSING,
    (_S.OPEN, _T.RECEIVE_CLOSE): _S.CLOSED,
    (_S.OPEN, _T.FAIL): _S.CLOSED,
    (_S.OPEN, _T.EOF): _S.CLOSED,
    (_S.CLOSING, _T.RECEIVE_CLOSE): _S.CLOSED,
    (_S.CLOSING, _T.FAIL): _S.CLOSED,
    (_S.CLOSING, _T.EOF): _S.CLOSED,
    (_S.CLOSED, _T.EOF): _S.CLOSED,
}


def next_state(state: ConnectionState, trigger: Trigger) -> ConnectionState:
    """The state after ``trigger``; KeyError if it cannot happen in ``state``."""
    return TRANSITIONS[(state, trigger)]

"""Tests for rfc6455._state: the transition table, and the connection following it (§7)."""

from __future__ import annotations

import itertools

import pytest
from helpers import OP_CLOSE, OP_TEXT, close_payload, frame

from rfc6455 import (
    ClientConnection,
    Connection,
    ConnectionState,
    LocalProtocolError,
    ServerConnection,
)
from rfc6455._state import TRANSITIONS, Trigger, next_state

S = ConnectionState
T = Trigger

#: Written from RFC 6455 §7.1: the closing handshake from either side, failure, EOF.
EXPECTED = {
    (S.OPEN, T.SEND_CLOSE): S.CLOSING,  # §7.1.2 we start the closing handshake
    # §5.5.1 we answer "as soon as practical": after what arrived before the close
    (S.OPEN, T.RECEIVE_CLOSE): S.REPLYING,
    (S.OPEN, T.FAIL): S.REPLYING,  # §7.1.7, our close frame queued
    (S.OPEN, T.EOF): S.CLOSED,  # §7.1.5 1006
    (S.REPLYING, T.FLUSH_CLOSE): S.CLOSED,  # our close frame left
    (S.REPLYING, T.SEND_CLOSE): S.CLOSED,  # close() flushes the queued close frame
    (S.REPLYING, T.EOF): S.CLOSED,
    (S.CLOSED, T.FLUSH_CLOSE): S.CLOSED,  # EOF came first; the close frame still goes out
    (S.CLOSING, T.RECEIVE_CLOSE): S.CLOSED,  # §7.1.3 handshake complete
    (S.CLOSING, T.FAIL): S.CLOSED,
    (S.CLOSING, T.EOF): S.CLOSED,
    (S.CLOSED, T.EOF): S.CLOSED,
}


def test_table_is_the_rfc_table() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(S, T)))
def test_next_state(state: ConnectionState, trigger: Trigger) -> None:
    if (state, trigger) in EXPECTED:
        assert next_state(state, trigger) is EXPECTED[(state, trigger)]
    else:
        with pytest.raises(LocalProtocolError):
            next_state(state, trigger)


def test_closed_is_terminal() -> None:
    for (state, _), target in TRANSITIONS.items():
        if state is S.CLOSED:
            assert target is S.CLOSED


def _in_state(cls: type[Connection], state: ConnectionState) -> Connection:
    conn = cls()
    if state is S.CLOSING:
        conn.close(1000)
    elif state is S.REPLYING:
        conn.receive(_peer(conn, OP_CLOSE, close_payload(1000)))
    elif state is S.CLOSED:
        conn.receive(_peer(conn, OP_CLOSE, close_payload(1000)))
        conn.data_to_send()
    assert conn.state is state
    return conn


def _peer(conn: Connection, opcode: int, payload: bytes) -> bytes:
    return frame(opcode, payload, mask=conn.is_server)


def _trigger(conn: Connection, trigger: Trigger) -> None:
    if trigger is T.SEND_CLOSE:
        conn.close(1000)
    elif trigger is T.RECEIVE_CLOSE:
        conn.receive(_peer(conn, OP_CLOSE, close_payload(1000)))
    elif trigger is T.FAIL:
        conn.receive(_peer(conn, OP_TEXT, b"\xff"))
    elif trigger is T.FLUSH_CLOSE:
        conn.data_to_send()
    else:
        conn.receive(b"")


@pytest.mark.parametrize("cls", [ServerConnection, ClientConnection])
@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(S, T)))
def test_connection_follows_table(
    cls: type[Connection], state: ConnectionState, trigger: Trigger
) -> None:
    conn = _in_state(cls, state)
    _trigger(conn, trigger)
    # A trigger the table does not list cannot change the state (it is ignored).
    assert conn.state is TRANSITIONS.get((state, trigger), state)

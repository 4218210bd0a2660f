"""What both connection classes share: the selectors endpoint's and the asyncio binding's.

Strategy:

* :class:`ConnCommon` is a mixin (no slots of its own) for the endpoint's
  ``WebSocket`` (``_endpoint.py``) and the asyncio ``Connection``
  (``_aio_connection.py``). It holds the logic that does not differ between them and
  is off the per-message path: the phase table, the deadline sweep
  (:meth:`ConnCommon.check_deadlines`), counting and logging incidents, the
  "connection is closed" error, failing a connection, releasing the memory budget.
* What differs is left to small hooks each class implements (how to log, how to send
  the keepalive ping, how to start the closing handshake, the slow-consumer rule).
"""

from __future__ import annotations

import enum
import logging
from typing import Any, ClassVar, Protocol

from ._connection import Connection
from ._errors import ConnectionClosed, LocalProtocolError, connection_closed
from ._limits import EndpointSettings, Incident

__all__ = [
    "FAILURE_LINGER",
    "PHASE_TRANSITIONS",
    "ConnCommon",
    "Phase",
    "PhaseTrigger",
]

#: After failing a connection, how long to keep reading (and discarding) what the
#: peer still sends before closing, so that the kernel does not answer it with a
#: reset that could destroy our close frame. Bounded: the peer may never stop.
FAILURE_LINGER = 2.0


class Phase(enum.Enum):
    """Where one connection stands on the loop (the value is :attr:`WebSocket.state`)."""

    #: TCP (and TLS) up, opening handshake in progress (a client: also connecting).
    HANDSHAKE = "handshake"
    #: Messages flow both ways.
    OPEN = "open"
    #: A close frame went out or came in (or the peer broke the protocol).
    CLOSING = "closing"
    #: The socket is closed; nothing more happens.
    CLOSED = "closed"
    #: A plain HTTP answer or a refusal is being written; then the socket closes.
    HTTP = "http"


class PhaseTrigger(enum.Enum):
    """What moves a connection from one phase to the next."""

    ACCEPTED = "complete the handshake"
    RESPOND = "answer with plain HTTP"
    CLOSE = "start closing"
    LOST = "lose the socket"


_H, _O, _C, _X, _P = Phase.HANDSHAKE, Phase.OPEN, Phase.CLOSING, Phase.CLOSED, Phase.HTTP

#: Every legal phase change; anything else is a bug and raises LocalProtocolError.
PHASE_TRANSITIONS: dict[tuple[Phase, PhaseTrigger], Phase] = {
    (_H, PhaseTrigger.ACCEPTED): _O,
    (_H, PhaseTrigger.RESPOND): _P,
    (_H, PhaseTrigger.LOST): _X,
    (_P, PhaseTrigger.LOST): _X,
    (_O, PhaseTrigger.CLOSE): _C,
    (_O, PhaseTrigger.LOST): _X,
    (_C, PhaseTrigger.LOST): _X,
}


class _Closable(Protocol):
    """What :meth:`ConnCommon._fail` needs of a transport (ours or asyncio's)."""

    def close(self) -> None: ...


class ConnCommon:
    """The shared half of a connection; the class that mixes it in sets the state."""

    # The state both classes keep (each class adds its own slots). The other bases,
    # _transport.Protocol and asyncio.BufferedProtocol, have no slots.
    __slots__ = (
        "_conn",
        "_held",
        "_holds",
        "_logged",
        "_loop",
        "_partial",
        "_phase",
        "_settings",
        "_t_close",
        "_t_msg",
        "_t_over",
        "_t_ping",
        "_t_rx",
        "_t_start",
        "_t_tokens",
        "_tokens",
        "_transport",
        "bytes_in",
        "bytes_out",
        "close_code",
        "close_reason",
        "id",
        "messages_in",
        "messages_out",
        "remote_address",
        "subprotocol",
    )

    #: The message of the error a closed connection raises (None: the core's default).
    _closed_message: ClassVar[str | None] = None

    # The types of the state it works on (the class that mixes it in sets them).
    _settings: EndpointSettings
    _phase: Phase
    _conn: Connection | None
    _transport: _Closable | None
    _logged: set[Incident] | None
    _partial: tuple[float, int] | None
    _held: int
    _t_start: float
    _t_rx: float
    _t_msg: float
    _t_close: float
    _t_ping: float | None
    _t_tokens: float
    _tokens: float
    close_code: int | None
    close_reason: str
    messages_in: int

    # -- hooks ---------------------------------------------------------------------------

    def _log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _start_closing(self) -> None:
        """Move to CLOSING (a close frame went out or came in) and start the close clock."""
        raise NotImplementedError

    def _close_with(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code`` (a deadline ran out)."""
        raise NotImplementedError

    def _account(self, conn: Connection) -> None:
        """Report what the connection holds to the memory budget."""
        raise NotImplementedError

    def _send_keepalive(self, conn: Connection) -> None:
        """The heartbeat's empty ping is due."""
        raise NotImplementedError

    def _check_slow_consumer(self, now: float) -> None:
        """The slow-consumer rule, last in the sweep of an open connection."""
        raise NotImplementedError

    def _handshake_data(self, data: bytes) -> None:
        """Bytes before the connection is open: feed the role's handshake."""
        raise NotImplementedError

    def _handshake_eof(self) -> None:
        """EOF before the connection is open."""
        if self._transport is not None:
            self._transport.close()

    def _handshake_timed_out(self) -> None:
        """The handshake (or the HTTP answer) took longer than ``handshake_timeout``."""
        self._incident(Incident.HANDSHAKE_TIMEOUT, "handshake timeout; dropping")
        self.abort()

    # -- shared --------------------------------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        """Enforce the deadlines at loop time ``now`` (the server's sweep calls this)."""
        settings = self._settings
        phase = self._phase
        if phase is _O:
            conn = self._conn
            assert conn is not None
            interval = settings.ping_interval
            if interval is not None:
                if self._t_ping is not None:
                    # Silent for interval + timeout since we last heard from it (not
                    # since the ping went out): the sweep's lag does not add up.
                    timeout = settings.ping_timeout
                    if timeout is not None and now - self._t_rx >= interval + timeout:
                        self._incident(Incident.PING_TIMEOUT, "no answer to ping; dropping (1006)")
                        self.close_code = 1006
                        self.abort()
                        return
                elif now - self._t_rx >= interval:
                    self._t_ping = now
                    self._send_keepalive(conn)
            if settings.budget is not None:
                self._account(conn)
                if self._phase is not _O:
                    return
            if settings.message_timeout is not None and self._message_late(conn, now):
                self._incident(Incident.MESSAGE_TIMEOUT, "message not completed in time; 1008")
                self._fail(1008, "message timeout")
                return
            if settings.idle_timeout is not None and now - self._t_msg >= settings.idle_timeout:
                self._incident(Incident.IDLE_TIMEOUT, "idle timeout; closing", level=logging.INFO)
                self._close_with(1000, "idle timeout")
                return
            self._check_slow_consumer(now)
        elif phase is _C:
            timeout = settings.close_timeout
            if timeout is not None and now - self._t_close >= timeout:
                self._incident(
                    Incident.CLOSE_TIMEOUT, "no answer to our close; dropping", level=logging.INFO
                )
                self.abort()
        elif phase is not _X:
            timeout = settings.handshake_timeout
            if timeout is not None and now - self._t_start >= timeout:
                self._handshake_timed_out()

    def _take_token(self, now: float) -> bool:
        """The rate limit (a token bucket): take a token for a message or ping at loop
        time ``now``; none left: close with 1008 and return False."""
        settings = self._settings
        assert settings.rate is not None
        tokens = min(self._tokens + (now - self._t_tokens) * settings.rate, settings.burst)
        self._t_tokens = now
        if tokens < 1.0:
            self._tokens = tokens
            self._incident(Incident.RATE_LIMIT, "rate limit exceeded; closing with 1008")
            self._close_with(1008, "rate limit exceeded")
            return False
        self._tokens = tokens - 1.0
        return True

    def _message_late(self, conn: Connection, now: float) -> bool:
        """True once the same frame or message has been arriving for ``message_timeout``.

        Checked by the deadline sweep, not per chunk (the hot path pays nothing): the
        clock starts when a check first sees a message in progress, and restarts
        whenever a data message completed since (``messages_in`` moved), so the
        deadline fires between ``message_timeout`` and that plus one check interval
        after the message began.
        """
        if not conn.receiving:
            self._partial = None
            return False
        partial = self._partial
        if partial is None or partial[1] != self.messages_in:
            self._partial = (now, self.messages_in)
            return False
        timeout = self._settings.message_timeout
        return timeout is not None and now - partial[0] >= timeout

    def _fail(self, code: int, reason: str) -> None:
        """Send a close frame and close the socket without waiting for the answer."""
        if self._phase is _O:
            conn = self._conn
            assert conn is not None
            data = conn.close(code, reason)
            self.close_code, self.close_reason = code, reason
            self._start_closing()
            self._write(data)
        transport = self._transport
        if transport is not None:
            transport.close()

    def _release_budget(self) -> None:
        if self._held:
            self._held = 0
            budget = self._settings.budget
            if budget is not None:
                budget.update(self, 0)

    def _move(self, trigger: PhaseTrigger) -> None:
        """Change phase by the table; an illegal change is a bug in the binding."""
        try:
            self._phase = PHASE_TRANSITIONS[(self._phase, trigger)]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {trigger.value} in phase {self._phase.value}"
            ) from None

    def _closed_error(self) -> ConnectionClosed:
        """What a call on a connection that is not open raises."""
        message = self._closed_message
        conn = self._conn
        if conn is not None and self.close_code is None:
            return conn.closed_error(message)
        return connection_closed(self.close_code or 1006, self.close_reason, message)

    def _incident(
        self,
        incident: Incident,
        msg: str,
        *args: Any,
        level: int = logging.WARNING,
        exc_info: bool = False,
    ) -> None:
        """Count ``incident`` (every time) and log it (once per connection and kind)."""
        self._settings.incidents.add(incident)
        logged = self._logged
        if logged is None:
            logged = self._logged = set()
        elif incident in logged:
            return
        logged.add(incident)
        self._log(level, msg, *args, exc_info=exc_info)

"""What bounds a connection on the loop: its settings, the incidents counted when a bound
is hit, and the memory budget all connections of a server share.

Strategy: one :class:`EndpointSettings` object is shared by every connection of
a server (or made per client), so a connection costs one pointer for all of
its limits. Hitting a limit is an *incident*: counted in :class:`Incidents`
(exported as metrics) every time, logged once per connection. The
:class:`MemoryBudget` adds up the incoming bytes every connection holds
(partial frames and messages) and names the largest holders when the total
goes over, so the server can close those first. Every limit, its default and
what it produces: docs/limits.md and docs/security.md.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

__all__ = [
    "MESSAGES_PER_TICK",
    "UNLIMITED_BUFFER",
    "EndpointSettings",
    "Incident",
    "Incidents",
    "MemoryBudget",
]

#: A write-buffer limit that is never reached (``write_buffer_limit=None``).
UNLIMITED_BUFFER = 1 << 62

#: Most events one connection hands its handler per loop tick; the rest wait for the
#: next tick (reading paused meanwhile), so one flooding peer cannot delay the others
#: by more than this many callbacks. 256 small messages take well under a millisecond.
MESSAGES_PER_TICK = 256

logger = logging.getLogger("rfc6455.endpoint")


class Incident(enum.Enum):
    """A bound that was hit (the value is the metric label)."""

    RATE_LIMIT = "rate_limit"
    WRITE_LIMIT = "write_buffer_limit"
    SLOW_CONSUMER = "slow_consumer"
    PING_TIMEOUT = "ping_timeout"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    MESSAGE_TIMEOUT = "message_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    CLOSE_TIMEOUT = "close_timeout"
    HANDLER_ERROR = "handler_error"
    HOOK_ERROR = "check_request_error"
    MEMORY_BUDGET = "memory_budget"
    PER_IP_LIMIT = "per_ip_limit"


class Incidents:
    """How often each :class:`Incident` happened (one object per server)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[Incident, int] = dict.fromkeys(Incident, 0)

    def add(self, incident: Incident) -> None:
        """Count one occurrence."""
        self.counts[incident] += 1

    def __getitem__(self, incident: Incident) -> int:
        return self.counts[incident]


class EndpointSettings:
    """The per-connection settings, one object shared by every connection of a server.

    ``None`` disables a timeout; see :class:`rfc6455.Config` for their meaning.
    """

    __slots__ = (
        "budget",
        "burst",
        "close_timeout",
        "debug",
        "handshake_timeout",
        "high_water",
        "idle_timeout",
        "incidents",
        "inline_messages",
        "logger",
        "low_water",
        "message_timeout",
        "ping_interval",
        "ping_timeout",
        "rate",
        "write_buffer_limit",
        "write_buffer_timeout",
    )

    def __init__(
        self,
        *,
        handshake_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        idle_timeout: float | None = None,
        close_timeout: float | None = 10.0,
        message_timeout: float | None = None,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
        write_buffer_limit: int | None = None,
        write_buffer_timeout: float = 5.0,
        high_water: int = 64 * 1024,
        low_water: int = 16 * 1024,
        memory_budget: int | None = None,
        log: logging.Logger = logger,
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        self.message_timeout = message_timeout
        self.rate = rate_limit
        self.burst = rate_burst if rate_burst is not None else max(1.0, rate_limit or 0.0)
        self.write_buffer_limit = (
            write_buffer_limit if write_buffer_limit is not None else UNLIMITED_BUFFER
        )
        self.write_buffer_timeout = write_buffer_timeout
        self.high_water = high_water
        self.low_water = low_water
        self.budget = MemoryBudget(memory_budget) if memory_budget is not None else None
        self.incidents = Incidents()
        self.logger = log
        # Read once: per-message DEBUG records cost one attribute test when off.
        self.debug = log.isEnabledFor(logging.DEBUG)
        #: No rate limit and no per-message log: a whole message may go straight to the
        #: handler (the endpoint's one-message path tests this one flag).
        self.inline_messages = rate_limit is None and not self.debug

    def check_interval(self) -> float:
        """How often deadlines are checked: a quarter of the shortest, in [0.05, 1]."""
        spans = [
            t
            for t in (
                self.handshake_timeout,
                self.ping_interval,
                self.ping_timeout,
                self.idle_timeout,
                self.close_timeout,
                self.message_timeout,
                self.write_buffer_timeout
                if self.write_buffer_limit < UNLIMITED_BUFFER
                else None,
            )
            if t is not None
        ]
        if not spans:
            return 1.0
        return min(1.0, max(0.05, min(spans) / 4))


class MemoryBudget:
    """Incoming bytes held by all connections together, against one limit.

    Connections report what they hold after every chunk (:meth:`update`); only
    connections that hold something are tracked, so an idle server tracks none.
    """

    __slots__ = ("holders", "limit", "total")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"memory_budget must be positive, not {limit}")
        self.limit = limit
        self.total = 0
        #: Connection -> bytes it holds (only connections holding more than 0). A
        #: connection is the selectors endpoint's or the asyncio binding's: each side
        #: fails the offenders it gets back, which are its own.
        self.holders: dict[Any, int] = {}

    def update(self, ws: Any, held: int) -> bool:
        """Record that ``ws`` now holds ``held`` bytes; True if the total is over the limit."""
        before = self.holders.pop(ws, 0)
        if held:
            self.holders[ws] = held
        self.total += held - before
        return self.total > self.limit

    def offenders(self) -> list[Any]:
        """The largest holders, biggest first, that bring the total back under the limit."""
        excess = self.total - self.limit
        chosen: list[Any] = []
        for ws, held in sorted(self.holders.items(), key=lambda item: -item[1]):
            if excess <= 0:
                break
            chosen.append(ws)
            excess -= held
        return chosen

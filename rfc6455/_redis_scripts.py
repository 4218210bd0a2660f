"""The Redis broker's keys, Lua scripts and reply parsers (docs/broker.md, "The Redis mapping").

Strategy: every key of a topic carries the hash tag ``{topic}`` (topic names cannot
contain braces), so a cluster keeps them in one slot and one script may touch them all.
Each operation is ONE script, run with ``EVALSHA`` (``EVAL`` again after a
``NOSCRIPT``: a restarted Redis forgot its script cache): atomic on the server, one
round trip, pipelined with the other operations of the same batch. Time is the Redis
server's (``TIME``), so every worker ages history and presence by one clock. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ._broker_types import (
    ClientInfo,
    HistoryPolicy,
    HistoryResult,
    Position,
    PresenceChange,
    PresenceResult,
    Publication,
)

__all__ = [
    "HISTORY",
    "PRESENCE",
    "PRESENCE_JOIN",
    "PRESENCE_LEAVE",
    "PRESENCE_PREFIX",
    "PUBLISH",
    "TOUCH",
    "Script",
    "channel",
    "history_args",
    "meta_key",
    "parse_history",
    "parse_message",
    "parse_presence",
    "parse_publish",
    "presence_keys",
    "publish_args",
    "topic_keys",
    "topic_of_channel",
    "user_json",
]

PREFIX = "rfc6455:"


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1 (what ``EVALSHA`` names it by)."""

    name: str
    source: str
    sha: str


def _script(name: str, source: str) -> Script:
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def meta_key(topic: str) -> str:
    return f"{PREFIX}{{{topic}}}:meta"


def topic_keys(topic: str) -> list[str]:
    """``meta`` (epoch, offset) and ``stream`` (the history) of ``topic``."""
    return [meta_key(topic), f"{PREFIX}{{{topic}}}:stream"]


def presence_keys(topic: str) -> list[str]:
    """The presence hash and the sorted set of its entries' expiries."""
    return [f"{PREFIX}{{{topic}}}:presence", f"{PREFIX}{{{topic}}}:presence:exp"]


def channel(topic: str) -> str:
    return f"{PREFIX}{{{topic}}}"


def topic_of_channel(name: str) -> str:
    return name[len(PREFIX) + 1:-1]


# The epoch: read it, or make the one the caller drew (scripts have no good randomness)
# and drop a stream left from a lost epoch. Shared by publish and history.
_EPOCH = """
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
local offset = 0
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
else
  offset = tonumber(redis.call('HGET', meta, 'offset'))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('XTRIM', stream, 'MINID', string.format('%d', now - ttl + 1))
end
redis.call('PEXPIRE', meta, ARGV[4])
"""

#: KEYS meta, stream; ARGV new epoch, size, ttl ms (0: none), meta ttl ms, payload,
#: channel, publish command. Returns {offset, epoch, ts}.
PUBLISH = _script("publish", _EPOCH + """
offset = redis.call('HINCRBY', meta, 'offset', 1)
local size = tonumber(ARGV[2])
local ts = string.format('%d', now)
if size > 0 then
  redis.call('XADD', stream, 'MAXLEN', size, '*', 'o', offset, 't', ts, 'p', ARGV[5])
  if ttl > 0 then
    redis.call('PEXPIRE', stream, ttl)
  else
    redis.call('PEXPIRE', stream, ARGV[4])
  end
else
  redis.call('DEL', stream)
end
redis.call(ARGV[7], ARGV[6], offset .. ':' .. epoch .. ':' .. ts .. ':' .. ARGV[5])
return {offset, epoch, ts}
""")

#: KEYS meta, stream; ARGV new epoch, since offset (-1: none), ttl ms, meta ttl ms,
#: since epoch, limit (-1: none). Returns {epoch, offset, recovered, complete,
#: o1, t1, p1, o2, ...} oldest first.
HISTORY = _script("history", _EPOCH + """
local k, limit = tonumber(ARGV[2]), tonumber(ARGV[6])
local out = {epoch, offset, 0, 0}
local entries = {}
if k >= 0 then
  local need = offset - k
  if ARGV[5] ~= epoch or need < 0 then
    return out
  end
  if need == 0 then
    out[3] = 1; out[4] = 1
    return out
  end
  if redis.call('XLEN', stream) < need then
    return out
  end
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', need)
  if #newest < need or tonumber(newest[#newest][2][2]) ~= k + 1 then
    return out
  end
  out[3] = 1
  local n = need
  if limit >= 0 and limit < need then n = limit else out[4] = 1 end
  for i = #newest, #newest - n + 1, -1 do entries[#entries + 1] = newest[i] end
else
  local kept = redis.call('XLEN', stream)
  if limit < 0 or limit >= kept then
    entries = redis.call('XRANGE', stream, '-', '+')
    out[4] = 1
  elseif limit > 0 then
    local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', limit)
    for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
  end
end
for _, e in ipairs(entries) do
  local f = e[2]
  out[#out + 1] = f[2]; out[#out + 1] = f[4]; out[#out + 1] = f[6]
end
return out
""")

#: KEYS meta; ARGV meta ttl ms: keep a topic that is in use remembered.
TOUCH = _script("touch", """
return redis.call('PEXPIRE', KEYS[1], ARGV[1])
""")

# Drop the expired presence entries first: ZRANGEBYSCORE then HDEL.
_PRESENCE = """
local h, z = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
if #gone > 0 then
  redis.call('HDEL', h, unpack(gone))
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
end
"""

#: KEYS hash, zset; ARGV client, user JSON, ttl ms, channel, publish command, announce
#: ("1": a new entry is also announced on the channel, see PRESENCE_PREFIX). Returns 1
#: if it was not present.
PRESENCE_JOIN = _script("presence_join", _PRESENCE + """
local ttl = tonumber(ARGV[3])
local new = redis.call('HSETNX', h, ARGV[1], string.format('%d', now) .. ':' .. ARGV[2])
redis.call('ZADD', z, now + ttl, ARGV[1])
redis.call('PEXPIRE', h, ttl)
redis.call('PEXPIRE', z, ttl)
if new == 1 and ARGV[6] == '1' then
  redis.call(ARGV[5], ARGV[4], 'P:join\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
end
return new
""")

#: KEYS hash, zset; ARGV client, channel, publish command, announce. Returns 1 if it
#: was present.
PRESENCE_LEAVE = _script("presence_leave", _PRESENCE + """
redis.call('ZREM', z, ARGV[1])
local entry = redis.call('HGET', h, ARGV[1])
local gone = redis.call('HDEL', h, ARGV[1])
if gone == 1 and ARGV[4] == '1' then
  local user = string.match(entry, '^%d+:(.*)$')
  redis.call(ARGV[3], ARGV[2], 'P:leave\\n' .. ARGV[1] .. '\\n' .. user)
end
return gone
""")

#: KEYS hash, zset. Returns {client, value, ...}.
PRESENCE = _script("presence", _PRESENCE + """
return redis.call('HGETALL', h)
""")


# -- arguments and replies ---------------------------------------------------------------

def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(1, int(seconds * 1000))


def publish_args(epoch: str, policy: HistoryPolicy, topic_ttl: float, payload_json: str,
                 topic: str, sharded: bool) -> list[Any]:
    return [epoch, policy.size, _ms(policy.ttl), _ms(topic_ttl), payload_json, channel(topic),
            "SPUBLISH" if sharded else "PUBLISH"]


def history_args(epoch: str, policy: HistoryPolicy, topic_ttl: float, since: Position | None,
                 limit: int | None) -> list[Any]:
    return [epoch, -1 if since is None else since.offset, _ms(policy.ttl), _ms(topic_ttl),
            "" if since is None else since.epoch, -1 if limit is None else limit]


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_publish(topic: str, payload_json: str, reply: Any) -> Publication:
    offset, epoch, ts = reply
    return Publication(topic, int(offset), _str(epoch), payload_json, int(ts))


def parse_history(topic: str, since: Position | None, reply: Any) -> HistoryResult:
    epoch, offset = _str(reply[0]), int(reply[1])
    recovered, complete = bool(reply[2]), bool(reply[3])
    rest = reply[4:]
    pubs = tuple(
        Publication(topic, int(rest[i]), epoch, _str(rest[i + 2]), int(rest[i + 1]))
        for i in range(0, len(rest), 3)
    )
    return HistoryResult(topic, epoch, offset, pubs, since is not None and recovered, complete)


def parse_message(topic: str, data: bytes) -> Publication | PresenceChange:
    """A message on ``topic``'s channel: a publication ``offset:epoch:ts:payload`` (split
    at the first three colons), or a presence change (:data:`PRESENCE_PREFIX`).

    Raises:
        ValueError, UnicodeDecodeError: not a message of ours.
    """
    if data.startswith(PRESENCE_PREFIX):
        return _parse_presence_change(topic, data)
    offset, epoch, ts, payload = data.split(b":", 3)
    return Publication(topic, int(offset), epoch.decode(), payload.decode(), int(ts))


#: A channel message that starts so is a presence change, not a publication (whose
#: messages start with a decimal offset).
PRESENCE_PREFIX = b"P:"


def _parse_presence_change(topic: str, data: bytes) -> PresenceChange:
    """A channel message ``P:<kind>`` newline ``<client>`` newline ``<user JSON>``."""
    head, client, user = data.split(b"\n", 2)
    kind = head[len(PRESENCE_PREFIX):].decode()
    if kind not in ("join", "leave"):
        raise ValueError(f"unknown presence change {kind!r}")
    return PresenceChange(topic, kind, ClientInfo(client.decode(), json.loads(user)))


def user_json(info: ClientInfo) -> str:
    return json.dumps(info.user)


def parse_presence(topic: str, reply: Any) -> PresenceResult:
    entries = []
    for i in range(0, len(reply), 2):
        arrived, _, user = _str(reply[i + 1]).partition(":")
        entries.append((int(arrived), _str(reply[i]), json.loads(user)))
    entries.sort()
    return PresenceResult(topic, tuple(ClientInfo(c, u) for _, c, u in entries))

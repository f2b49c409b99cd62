"""The event write: one Lua script per shard and round (see ``feature_store.ingest``).

``KEYS``: the shard's event stream, the shard's erased set, then for each customer ``i`` (1-based)
:data:`CUSTOMER_KEYS` keys from ``5i - 2``: their live record, event-id set, contacts, online
state and offer sends (``feature_store.offer_attribution``); then, when the script writes offer
counts (one server, a request with offer events or purchases), the offers' keys.

``ARGV``: the stream cap (0: none), the number of customers ``n``, the contacts cutoff (Unix s) and
horizon (s), now (Unix s), the event-id window (s) and cap; the attribution window (s), the offer
sends' and the budget day's TTL, whether the script writes the counts (1) or returns them (0:
Redis Cluster), the number of offers and their ids; then per customer: the digest of the
id (``feature_store.tombstones``: what the erased set holds), the revision the update was computed
from, and three counted lists (a count, then that many values): the event ids to
add, the live-record fields to set (name, value, ...: only those that changed) and the contacts to
add (score, member, ...), the new online state (JSON; empty: unchanged), and a counted list of
offer ops (``offer_attribution.Attribution.ops``); then the number of events and per event: the
index of its customer, a count and the stream entry's field names and values.

Per customer, in order, the script decides and applies at once: ``e`` when the customer is in the
erased set (nothing written), ``c`` (conflict, nothing written) when the live record's revision is
no longer the one read or one of the event ids was applied meanwhile (one ``ZMSCORE``), else
``a``: the ids are added
(scored ``now``; those older than the window or beyond the cap trimmed, the key expiring a window
after the write), the changed fields set, the online state set in its own key (and the live hash's
legacy ``agg`` field, where a store written before kept it, deleted: the migration of
``feature_store.keys``), the revision bumped, the contacts added and trimmed to the
horizon (the key expires a horizon after its newest entry), and the customer's offer events and
purchases attributed and counted (``feature_store.offer_attribution``). Then every event of an
``a`` customer is appended to the stream in the request's order (``XADD MAXLEN ~ cap``). Returns
the status characters, one per customer, then the counts to write (Redis Cluster; none when the
script wrote them).

Idempotency window: the ``ids`` sorted set keeps the ids applied in the last ``event_id_ttl_s``
(``serving.event_id_ttl_days``, 30 days by default) and at most ``max_event_ids``
(``serving.max_event_ids``, 10,000) of them, the newest; older ones are trimmed on each write and
the key expires a window after the last write. So the per-customer state is bounded: a repeat of
an event id older than that window (or beyond that many newer ids) is applied again. (Stores
written before kept every id, unbounded, in a plain set ``evt``: it is no longer read or written,
only exported and erased.)
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from feature_store import keys, offer_attribution
from feature_store.offer_attribution import NO_ATTRIBUTION_ARGS, Attribution
from feature_store.tombstones import Tombstones

#: Keys per customer in a call (module docstring).
CUSTOMER_KEYS = 5

WRITE = string.Template("""
local maxlen = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local cutoff = ARGV[3]
local horizon = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local id_ttl = tonumber(ARGV[6])
local id_cap = tonumber(ARGV[7])
local window = tonumber(ARGV[8])
local sends_ttl = tonumber(ARGV[9])
local day_ttl = tonumber(ARGV[10])
local apply = ARGV[11] == '1'
local noffers = tonumber(ARGV[12])
local idx = {}
for j = 1, noffers do idx[ARGV[12 + j]] = j end
local okeys = 2 + $PER * n
local bumps = {}
$ATTRIBUTE
local pos = 13 + noffers
local function take_list()
  local count = tonumber(ARGV[pos])
  local list = {}
  for j = 1, count do list[j] = ARGV[pos + j] end
  pos = pos + count + 1
  return list
end
local status = {}
for i = 1, n do
  local base = $PER * i - 2
  local live, evt, contacts, online = KEYS[base], KEYS[base + 1], KEYS[base + 2], KEYS[base + 3]
  local tombstone, rev = ARGV[pos], ARGV[pos + 1]
  pos = pos + 2
  local ids = take_list()
  local fields = take_list()
  local sent = take_list()
  local state_json = ARGV[pos]
  pos = pos + 1
  local ops = take_list()
  local state = 'a'
  if redis.call('SISMEMBER', KEYS[2], tombstone) == 1 then
    state = 'e'
  elseif (redis.call('HGET', live, '$REVISION') or '0') ~= rev then
    state = 'c'
  elseif #ids > 0 then
    local seen = redis.call('ZMSCORE', evt, unpack(ids))
    for j = 1, #ids do
      if seen[j] then state = 'c' break end
    end
  end
  if state == 'a' then
    if #ids > 0 then
      local scored = {}
      for j = 1, #ids do
        scored[2 * j - 1] = now
        scored[2 * j] = ids[j]
      end
      redis.call('ZADD', evt, unpack(scored))
      redis.call('ZREMRANGEBYSCORE', evt, '-inf', '(' .. (now - id_ttl))
      redis.call('ZREMRANGEBYRANK', evt, 0, -(id_cap + 1))
      redis.call('EXPIRE', evt, math.ceil(id_ttl))
    end
    if #fields > 0 then redis.call('HSET', live, unpack(fields)) end
    if state_json ~= '' then
      redis.call('SET', online, state_json)
      redis.call('HDEL', live, '$LEGACY_ONLINE')
    end
    redis.call('HINCRBY', live, '$REVISION', 1)
    if #sent > 0 then
      redis.call('ZADD', contacts, unpack(sent))
      redis.call('ZREMRANGEBYSCORE', contacts, '-inf', '(' .. cutoff)
      local newest = redis.call('ZRANGE', contacts, -1, -1, 'WITHSCORES')
      if #newest > 0 then
        redis.call('EXPIREAT', contacts, math.ceil(tonumber(newest[2]) + horizon))
      end
    end
    if #ops > 0 then attribute(KEYS[base + 4], ops) end
  end
  status[i] = state
end
local nevents = tonumber(ARGV[pos])
pos = pos + 1
for j = 1, nevents do
  local owner, nkv = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
  pos = pos + 2
  if status[owner] == 'a' then
    local args
    if maxlen > 0 then
      args = {KEYS[1], 'MAXLEN', '~', maxlen, '*'}
    else
      args = {KEYS[1], '*'}
    end
    for k = 0, nkv - 1 do args[#args + 1] = ARGV[pos + k] end
    redis.call('XADD', unpack(args))
  end
  pos = pos + nkv
end
return {table.concat(status), unpack(bumps)}
""").substitute(
    REVISION=keys.LIVE_REVISION,
    LEGACY_ONLINE=keys.LEGACY_LIVE_ONLINE,
    PER=CUSTOMER_KEYS,
    ATTRIBUTE=offer_attribution.LUA,
)

APPLIED, CONFLICT, ERASED = "a", "c", "e"


@dataclass(frozen=True)
class CustomerWrite:
    """One customer's part of a script call."""

    customer_id: str
    revision: bytes
    event_ids: Sequence[str]
    fields: Mapping[str, bytes]  # only the changed ones
    contacts: Mapping[str, float]  # member -> send time (Unix s)
    online: bytes = b""  # the new online state (JSON); empty: unchanged
    offer_ops: Sequence[str] = ()  # offer_attribution.Attribution.ops


@dataclass(frozen=True)
class ScriptCall:
    """The keys and arguments of one script call, and the customers it writes, in order."""

    keys: list[str]
    args: list[Any]
    customers: list[str]


def script_call(
    prefix: str,
    shard: str | None,
    maxlen: int,
    cutoff: float,
    horizon_s: float,
    writes: Sequence[CustomerWrite],
    rows: Sequence[tuple[int, Mapping[str, str]]],
    *,
    now: float,
    event_id_ttl_s: float,
    max_event_ids: int,
    tombstones: Tombstones,
    attribution: Attribution | None = None,
    apply_counts: bool = True,
) -> ScriptCall:
    """The call writing ``writes`` (customers of one shard) and the stream ``rows``: (index of
    the row's customer in ``writes``, 0-based; events-format text columns), in stream order.
    ``attribution``: the offers the customers' ``offer_ops`` name; ``apply_counts``: the script
    writes the counts (one server), else returns them (Redis Cluster)."""
    script_keys = [keys.event_stream(prefix, shard), keys.erased_customers(prefix, shard)]
    args: list[Any] = [maxlen, len(writes), repr(cutoff), repr(float(horizon_s))]
    args += [repr(now), repr(float(event_id_ttl_s)), int(max_event_ids)]
    counting = attribution is not None and any(w.offer_ops for w in writes)
    if attribution is not None and counting:
        args += attribution.args(apply_counts)
    else:
        args += NO_ATTRIBUTION_ARGS
    for write in writes:
        c = write.customer_id
        script_keys += [
            keys.customer_live(prefix, c),
            keys.customer_event_ids(prefix, c),
            keys.customer_contacts(prefix, c),
            keys.customer_online(prefix, c),
            keys.customer_offer_sends(prefix, c),
        ]
        args += [tombstones.of(c), write.revision, len(write.event_ids), *write.event_ids]
        args.append(2 * len(write.fields))
        for name, value in write.fields.items():
            args += [name, value]
        args.append(2 * len(write.contacts))
        for member, score in write.contacts.items():
            args += [repr(score), member]
        args += [write.online, len(write.offer_ops), *write.offer_ops]
    if attribution is not None and counting and apply_counts:
        script_keys += attribution.keys(prefix)
    args.append(len(rows))
    for owner, row in rows:
        args += [owner + 1, 2 * len(row)]
        for column, text in row.items():
            args += [column, text]
    return ScriptCall(script_keys, args, [w.customer_id for w in writes])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def statuses(call: ScriptCall, reply: Any) -> dict[str, str]:
    """Customer -> ``a``, ``c`` or ``e`` from the script's reply."""
    text = _text(reply[0])
    if len(text) != len(call.customers):
        raise ValueError(f"event script answered {text!r} for {len(call.customers)} customers")
    return dict(zip(call.customers, text, strict=True))


def returned_counts(reply: Any) -> list[str]:
    """The offer counts a script returned instead of writing them (Redis Cluster)."""
    return [_text(bump) for bump in reply[1:]]

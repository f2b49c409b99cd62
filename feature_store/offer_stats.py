"""Adaptive offers in Redis: the counts per offer and cell, attribution, budgets.

**Counts.** Each offer has a hash ``<p>:{o:<offer>}:stats`` (``feature_store.keys``) with, per
context cell (``segment|journey_stage|channel``, ``recsys.decisions.adaptive``), the sends
``s:<cell>``, responses ``r:<cell>`` (conversions: an ``offer_redeemed``, or a purchase
attributed to the send), clicks ``k:<cell>`` and dismissals ``d:<cell>``.

**Attribution.** Every ``offer_sent`` records the latest send of that offer to the customer in
``<p>:{c:<id>}:offers`` (field the offer id, value ``sent_at|cell|flags``), so a later response
knows the cell to count it in. A response counts once per send (``flags``: 1 converted, 2
clicked, 4 dismissed); a purchase converts the customer's latest open send within the
attribution window before it; a repeated ``offer_sent`` (same offer, same time: a retried event)
counts no second send. Events of erased customers count nothing (the script gets the digest of
each id, ``feature_store.tombstones``, which is what the erased set holds).

:meth:`OfferStats.record` writes one request's offer events and purchases in **one** Lua script,
so the counts are atomic across processes. It is called by ``POST /v1/events`` right after
``feature_store.ingest`` stored the events and before the 202 (read-your-writes: the next decision
reads the new counts). **Next step:** fold this script into the ingest write script
(``feature_store.ingest._WRITE``), so that the events and their counts are one atomic write; it is
separate now only because that script is being rewritten.

**Budgets.** An offer's send budget (``recsys.decisions.offer_set.Budget``) is *reserved* by the
decisions that hand the offer out for sending (the offers batch and export): :meth:`reserve` grants
at most what is left of the day's and the total budget in one Lua script (check and ``INCRBY``
together), so two processes never hand out more than the budget. Redemptions are counted by
:meth:`record` from ``offer_redeemed`` events. :meth:`read` returns the counts of the cells a
decision needs and the budget used in one pipelined round trip (one ``HMGET`` per offer).

Redis Cluster: one script may only touch keys of one slot, and the counts live on the offers'
slots (``{o:<offer>}``), the attribution on the customers'. So on a cluster :meth:`record` runs
the attribution script once per customer shard (``feature_store.shards``: the customers' offer
sends and their shard's erased set) with the counts *returned* instead of written, then writes
them in one pipeline (``HINCRBY`` / ``INCRBY``, each atomic, all keys of an offer on its slot),
before the 202 like on one server: read-your-writes holds. What a cluster gives up is only the
atomicity of attribution and counts together: a process dying between the two loses those
counts (a send then looks unsent to the counts, never counted twice). Budget reservations
(:meth:`reserve`) touch one offer's keys only and run as one script on a cluster too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from feature_store import keys, shards
from feature_store.connection import RedisClient, store_errors
from feature_store.tombstones import Resolver
from recsys.customers.online_state import to_seconds
from recsys.decisions.offer_set import Budget, OfferSet
from recsys.events import Event

DAY_S: Final = 86_400.0
#: Kinds of offer events the script knows, by event type.
_KIND: Final = {
    "offer_sent": "S",
    "offer_redeemed": "R",
    "offer_click": "C",
    "offer_dismissed": "D",
}

_RECORD = f"""
local window = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local day_ttl = tonumber(ARGV[3])
local apply = ARGV[4] == '1'
local noffers = tonumber(ARGV[5])
local idx = {{}}
for j = 1, noffers do idx[ARGV[5 + j]] = j end
local pos = 6 + noffers
local nops = tonumber(ARGV[pos])
pos = pos + 1
local bits = {{R = 1, C = 2, D = 4}}
local fields = {{R = '{keys.STATS_RESPONSES}', C = '{keys.STATS_CLICKS}',
  D = '{keys.STATS_DISMISSALS}'}}
local function parse(rec)
  local at, cell, flags = string.match(rec, '^([^|]*)|(.*)|([^|]*)$')
  return tonumber(at), cell, tonumber(flags)
end
local out = {{0}}
local function bump(j, field)
  if apply then redis.call('HINCRBY', KEYS[1 + j], field, 1)
  else out[#out + 1] = 'H' .. j .. ' ' .. field end
end
local function redeemed(j)
  if not apply then out[#out + 1] = 'R' .. j return end
  redis.call('INCR', KEYS[1 + noffers + 2 * j - 1])
  redis.call('EXPIRE', KEYS[1 + noffers + 2 * j - 1], day_ttl)
  redis.call('INCR', KEYS[1 + noffers + 2 * j])
end
local counted = 0
for i = 1, nops do
  local kind, ck, tombstone = ARGV[pos], KEYS[tonumber(ARGV[pos + 1])], ARGV[pos + 2]
  local offer, at_text, cell = ARGV[pos + 3], ARGV[pos + 4], ARGV[pos + 5]
  local at = tonumber(at_text)
  pos = pos + 6
  if redis.call('SISMEMBER', KEYS[1], tombstone) == 0 then
    if kind == 'S' then
      local old = redis.call('HGET', ck, offer)
      if not old or parse(old) ~= at then
        redis.call('HSET', ck, offer, at_text .. '|' .. cell .. '|0')
        bump(idx[offer], '{keys.STATS_SENDS}:' .. cell)
        counted = counted + 1
      end
      redis.call('EXPIRE', ck, ttl)
    elseif kind == 'P' then
      local all = redis.call('HGETALL', ck)
      local best, best_at, best_cell, best_flags, best_rec = nil, -1, nil, 0, nil
      for k = 1, #all, 2 do
        local sent, c, flags = parse(all[k + 1])
        if flags % 2 == 0 and sent <= at and at - sent <= window and sent > best_at then
          best, best_at, best_cell, best_flags, best_rec = all[k], sent, c, flags, all[k + 1]
        end
      end
      if best and idx[best] then
        local head = string.match(best_rec, '^(.*)|[^|]*$')
        redis.call('HSET', ck, best, head .. '|' .. tostring(best_flags + 1))
        bump(idx[best], '{keys.STATS_RESPONSES}:' .. best_cell)
        counted = counted + 1
      end
    else
      local rec = redis.call('HGET', ck, offer)
      local bit = bits[kind]
      if rec then
        local sent, c, flags = parse(rec)
        if math.floor(flags / bit) % 2 == 0 and sent <= at then
          local head = string.match(rec, '^(.*)|[^|]*$')
          redis.call('HSET', ck, offer, head .. '|' .. tostring(flags + bit))
          bump(idx[offer], fields[kind] .. ':' .. c)
          if kind == 'R' then redeemed(idx[offer]) end
          counted = counted + 1
        end
      elseif kind == 'R' then
        redeemed(idx[offer])  -- a redemption spends budget even without a recorded send
      end
    end
  end
end
out[1] = counted
return out
"""

_RESERVE = """
local want = tonumber(ARGV[1])
local day_limit = tonumber(ARGV[2])
local total_limit = tonumber(ARGV[3])
local grant = want
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if day_limit >= 0 then grant = math.min(grant, math.max(0, day_limit - day)) end
if total_limit >= 0 then grant = math.min(grant, math.max(0, total_limit - total)) end
if grant > 0 then
  redis.call('INCRBY', KEYS[1], grant)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  redis.call('INCRBY', KEYS[2], grant)
end
return grant
"""

#: Counts of one offer: cell -> (sends, responses).
CellCounts = dict[str, tuple[float, float]]


@dataclass(frozen=True)
class BudgetUse:
    """What is used of one offer's budget: sends and redemptions, today and in total."""

    sends_day: int = 0
    sends_total: int = 0
    redemptions_day: int = 0
    redemptions_total: int = 0


@dataclass(frozen=True)
class OfferCounts:
    """What a decision reads: counts per offer and cell, budget used per budgeted offer."""

    counts: dict[str, CellCounts] = field(default_factory=dict)
    budgets: dict[str, BudgetUse] = field(default_factory=dict)


def day_of(now: datetime) -> str:
    """The UTC day of ``now`` (naive UTC) as the budget keys name it."""
    return now.strftime("%Y-%m-%d")


def _limit(value: int | None) -> int:
    return -1 if value is None else int(value)


class OfferStats:
    """The counts, attribution and budgets of the offers (module docstring); one per process."""

    def __init__(
        self, client: RedisClient, prefix: str, tombstones: Resolver | None = None
    ) -> None:
        self.client = client
        self.prefix = prefix
        #: the erased set's digests (``feature_store.tombstones``; default: resolved here)
        self.tombstones = tombstones or Resolver(client, prefix)
        self._record = client.register_script(_RECORD)
        self.cluster = shards.is_cluster(client)
        self._reserve = client.register_script(_RESERVE)

    def record(
        self,
        events: Sequence[Event],
        offer_set: OfferSet,
        cells: Mapping[tuple[str, str], str],
        *,
        window_s: float,
        now: datetime,
    ) -> int:
        """Count the sends and responses of ``events`` (validated; offer ids of ``offer_set``)
        and attribute their purchases; ``cells``: ``(customer_id, channel)`` -> the cell of an
        ``offer_sent``. Returns how many counts changed."""
        ops = [e for e in events if e.event_type in _KIND or e.event_type == "purchase"]
        if not ops:
            return 0
        ops.sort(key=lambda e: e.timestamp)  # a send before the responses of the same request
        offers = [o.offer_id for o in offer_set.offers]
        day = day_of(now)
        if not self.cluster:  # one script, counts included: atomic with the attribution
            reply = self._run(ops, offers, cells, window_s, None, day, apply=True)
            return int(reply[0])
        changed, bumps = 0, Counter[str]()
        by_shard: dict[shards.Shard, list[Event]] = {}
        for event in ops:  # in time order within each shard
            by_shard.setdefault(shards.shard_of(True, event.customer_id), []).append(event)
        for shard, mine in by_shard.items():
            reply = self._run(mine, offers, cells, window_s, shard, day, apply=False)
            changed += int(reply[0])
            bumps.update(_text(b) for b in reply[1:])
        self._apply(bumps, offers, day)
        return changed

    def _run(
        self,
        ops: Sequence[Event],
        offers: Sequence[str],
        cells: Mapping[tuple[str, str], str],
        window_s: float,
        shard: shards.Shard,
        day: str,
        *,
        apply: bool,
    ) -> list[Any]:
        """One attribution script over ``ops`` (customers of ``shard``); with ``apply`` it also
        writes the counts (their keys in the call), else it returns them (module docstring)."""
        p, erased = self.prefix, self.tombstones.get()
        script_keys = [keys.erased_customers(p, shard)]
        if apply:
            script_keys += [keys.offer_stats(p, o) for o in offers]
            for offer in offers:
                script_keys += [
                    keys.offer_budget(p, offer, "redemptions", day),
                    keys.offer_budget(p, offer, "redemptions", keys.BUDGET_TOTAL),
                ]
        position: dict[str, int] = {}
        args: list[Any] = [repr(window_s), math.ceil(2 * window_s + DAY_S), 2 * int(DAY_S)]
        args += [int(apply), len(offers), *offers, len(ops)]
        for event in ops:
            customer = event.customer_id
            if customer not in position:
                script_keys.append(keys.customer_offer_sends(p, customer))
                position[customer] = len(script_keys)  # Lua indexes from 1
            offer_id, channel = event.offer or ("", "")
            cell = cells.get((customer, channel), "") if event.event_type == "offer_sent" else ""
            kind = _KIND.get(event.event_type, "P")
            args += [kind, position[customer], erased.of(customer), offer_id]
            args += [repr(to_seconds(event.timestamp)), cell]
        with store_errors("offer stats write"):
            return list(self._record(keys=script_keys, args=args))

    def _apply(self, bumps: Mapping[str, int], offers: Sequence[str], day: str) -> None:
        """Write the counts the cluster's scripts returned (``H<j> <field>``: a stats field of
        offer ``j``, 1-based; ``R<j>``: a redemption against its budget), one pipeline: each
        command is atomic and every key of one offer is on the offer's slot."""
        if not bumps:
            return
        p = self.prefix
        pipe = self.client.pipeline(transaction=False)
        for bump, n in bumps.items():
            head, _, field = bump.partition(" ")
            offer = offers[int(head[1:]) - 1]
            if head[0] == "H":
                pipe.hincrby(keys.offer_stats(p, offer), field, n)
            else:
                today = keys.offer_budget(p, offer, "redemptions", day)
                pipe.incrby(today, n)
                pipe.expire(today, 2 * int(DAY_S))
                pipe.incrby(keys.offer_budget(p, offer, "redemptions", keys.BUDGET_TOTAL), n)
        with store_errors("offer stats write"):
            pipe.execute()

    def read(self, offer_set: OfferSet, cells: Sequence[str], now: datetime) -> OfferCounts:
        """Every offer's sends and responses in ``cells`` (``HMGET`` of just those fields) and
        every budgeted offer's use, in one round trip; never a cached copy, so a decision sees
        every count recorded before it, by any process."""
        p, offers = self.prefix, [o.offer_id for o in offer_set.offers]
        day = day_of(now)
        wanted = list(dict.fromkeys(cells))
        kinds = (keys.STATS_SENDS, keys.STATS_RESPONSES)
        fields = [f"{kind}:{cell}" for kind in kinds for cell in wanted]
        budgeted = [o.offer_id for o in offer_set.offers if o.budget is not None]
        read = offers if wanted else []
        pipe = self.client.pipeline(transaction=False)
        for offer in read:
            pipe.hmget(keys.offer_stats(p, offer), fields)
        for offer in budgeted:  # GETs, not MGET: a cluster pipeline refuses MGET
            for what in ("sends", "redemptions"):
                for when in (day, keys.BUDGET_TOTAL):
                    pipe.get(keys.offer_budget(p, offer, what, when))
        with store_errors("offer stats read"):
            replies = pipe.execute() if read or budgeted else []
        n = len(wanted)
        counts: dict[str, CellCounts] = {}
        for offer, raw in zip(read, replies, strict=False):
            counts[offer] = {
                cell: (float(s or 0), float(r or 0))
                for cell, s, r in zip(wanted, raw[:n], raw[n:], strict=True)
                if s is not None or r is not None
            }
        used = replies[len(read) :]
        budgets = {
            offer: BudgetUse(*(int(v or 0) for v in used[4 * i : 4 * i + 4]))
            for i, offer in enumerate(budgeted)
        }
        return OfferCounts(counts, budgets)

    def reserve(self, offer_id: str, want: int, budget: Budget, now: datetime) -> int:
        """Reserve up to ``want`` sends of ``offer_id`` within its budget; how many were granted
        (atomic across processes)."""
        if want <= 0:
            return 0
        p, day = self.prefix, day_of(now)
        script_keys = [
            keys.offer_budget(p, offer_id, "sends", day),
            keys.offer_budget(p, offer_id, "sends", keys.BUDGET_TOTAL),
        ]
        args = [want, _limit(budget.sends_per_day), _limit(budget.sends_total), 2 * int(DAY_S)]
        with store_errors("offer budget reservation"):
            granted = int(self._reserve(keys=script_keys, args=args))
        return granted

    def export(self, offer_set: OfferSet) -> dict[str, dict[str, dict[str, int]]]:
        """Every offer's counts: offer -> cell -> ``{sends, responses, clicks, dismissals}``."""
        pipe = self.client.pipeline(transaction=False)
        offers = [o.offer_id for o in offer_set.offers]
        for offer in offers:
            pipe.hgetall(keys.offer_stats(self.prefix, offer))
        with store_errors("offer stats export"):
            replies = pipe.execute()
        names = {
            keys.STATS_SENDS: "sends",
            keys.STATS_RESPONSES: "responses",
            keys.STATS_CLICKS: "clicks",
            keys.STATS_DISMISSALS: "dismissals",
        }
        out: dict[str, dict[str, dict[str, int]]] = {}
        for offer, raw in zip(offers, replies, strict=True):
            cells: dict[str, dict[str, int]] = {}
            for name, value in raw.items():
                kind, _, cell = _text(name).partition(":")
                if kind in names:
                    cells.setdefault(cell, dict.fromkeys(names.values(), 0))[names[kind]] = int(
                        value
                    )
            out[offer] = cells
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

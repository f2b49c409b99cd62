"""Offer attribution inside the event write script: a request's offer events counted atomically
with the events themselves (``feature_store.ingest_script``).

The counts and the attribution records are those of ``feature_store.offer_stats`` (its module
docstring): per customer the hash ``<p>:{c:<id>}:offers`` (offer -> ``sent_at|cell|flags``),
per offer the counts hash and the redemption budget keys. The write script attributes an
applied customer's offer events and purchases (:data:`LUA`, one call per customer, its events
in time order): an ``offer_sent`` records the send and counts it (not again for the same offer
at the same time), a response counts once per send (``flags``: 1 converted, 2 clicked, 4
dismissed), a purchase converts the latest open send within the window before it, a redemption
spends budget (even without a recorded send). Only events the script applies are counted: an
erased customer's, a conflicting customer's (counted in the round that applies them) and a
duplicate's count nothing.

On one server the script writes the counts itself (the offers' keys are in its call: one atomic
write of events and counts). On Redis Cluster one script may only touch one slot's keys and the
counts live on the offers' slots, so the script *returns* the counts (``H<j> <field>``: a counts
field of offer ``j``, 1-based; ``R<j>``: a redemption) and :func:`count_commands` writes them
after the round's scripts, before the 202 (each command atomic; a process dying in between
loses those counts, never counts twice).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from feature_store import keys
from recsys.customers.online_state import to_seconds
from recsys.events import Event

DAY_S: Final = 86_400.0
#: Kinds of offer events the script knows, by event type (``P``: a purchase).
KIND: Final = {
    "offer_sent": "S",
    "offer_redeemed": "R",
    "offer_click": "C",
    "offer_dismissed": "D",
    "purchase": "P",
}
#: Values per op in a customer's list of the script call: kind, offer, time (Unix s), cell.
OP_WIDTH: Final = 4
#: Keys per offer after the customers' keys (one server): counts, redemptions today, in total.
OFFER_KEYS: Final = 3

#: Lua: expects ``apply`` (bool: counts written here), ``okeys`` (the index before the offers'
#: keys), ``window``, ``sends_ttl``, ``day_ttl`` (numbers), ``idx`` (offer id -> 1-based index)
#: and ``bumps`` (the returned counts); defines ``attribute(sends_key, ops)``.
LUA: Final = f"""
local bits = {{R = 1, C = 2, D = 4}}
local names = {{R = '{keys.STATS_RESPONSES}', C = '{keys.STATS_CLICKS}',
  D = '{keys.STATS_DISMISSALS}'}}
local function parse(rec)
  local at, cell, flags = string.match(rec, '^([^|]*)|(.*)|([^|]*)$')
  return tonumber(at), cell, tonumber(flags)
end
local function bump(j, field)
  if apply then redis.call('HINCRBY', KEYS[okeys + 3 * j - 2], field, 1)
  else bumps[#bumps + 1] = 'H' .. j .. ' ' .. field end
end
local function redeemed(j)
  if not apply then bumps[#bumps + 1] = 'R' .. j return end
  redis.call('INCR', KEYS[okeys + 3 * j - 1])
  redis.call('EXPIRE', KEYS[okeys + 3 * j - 1], day_ttl)
  redis.call('INCR', KEYS[okeys + 3 * j])
end
local function attribute(ck, ops)
  local order, recs = {{}}, {{}}
  local all = redis.call('HGETALL', ck)
  for k = 1, #all, 2 do
    order[#order + 1] = all[k]
    recs[all[k]] = all[k + 1]
  end
  local function put(offer, rec)
    if not recs[offer] then order[#order + 1] = offer end
    recs[offer] = rec
    redis.call('HSET', ck, offer, rec)
  end
  for k = 1, #ops, {OP_WIDTH} do
    local kind, offer, at_text, cell = ops[k], ops[k + 1], ops[k + 2], ops[k + 3]
    local at = tonumber(at_text)
    if kind == 'S' then
      local old = recs[offer]
      if not old or parse(old) ~= at then
        put(offer, at_text .. '|' .. cell .. '|0')
        bump(idx[offer], '{keys.STATS_SENDS}:' .. cell)
      end
      redis.call('EXPIRE', ck, sends_ttl)
    elseif kind == 'P' then
      local best, best_at, best_cell, best_flags, best_rec = nil, -1, nil, 0, nil
      for _, name in ipairs(order) do
        local rec = recs[name]
        local sent, c, flags = parse(rec)
        if flags % 2 == 0 and sent <= at and at - sent <= window and sent > best_at then
          best, best_at, best_cell, best_flags, best_rec = name, sent, c, flags, rec
        end
      end
      if best and idx[best] then
        local head = string.match(best_rec, '^(.*)|[^|]*$')
        put(best, head .. '|' .. tostring(best_flags + 1))
        bump(idx[best], '{keys.STATS_RESPONSES}:' .. best_cell)
      end
    else
      local rec = recs[offer]
      local bit = bits[kind]
      if rec then
        local sent, c, flags = parse(rec)
        if math.floor(flags / bit) % 2 == 0 and sent <= at then
          local head = string.match(rec, '^(.*)|[^|]*$')
          put(offer, head .. '|' .. tostring(flags + bit))
          bump(idx[offer], names[kind] .. ':' .. c)
          if kind == 'R' then redeemed(idx[offer]) end
        end
      elseif kind == 'R' then
        redeemed(idx[offer])  -- a redemption spends budget even without a recorded send
      end
    end
  end
end
"""

#: ``(customer_id, channel)`` -> the context cell of that customer's ``offer_sent`` on it.
SendCells = Mapping[tuple[str, str], str]


@dataclass(frozen=True)
class Attribution:
    """What the write script needs to count a request's offer events: the serving offer set's
    ids (in order), the attribution window and the budget day (``YYYY-MM-DD``, UTC)."""

    offers: tuple[str, ...]
    window_s: float
    day: str

    @property
    def sends_ttl_s(self) -> int:
        """How long a customer's attribution records are kept after their last send."""
        return math.ceil(2 * self.window_s + DAY_S)

    def counted(self, event: Event) -> bool:
        """Whether the script gets ``event``: a purchase, or an event of a known offer."""
        if event.event_type == "purchase":
            return bool(self.offers)
        offer = event.offer
        return offer is not None and offer[0] in self.offers and event.event_type in KIND

    def sends(self, events: Iterable[Event]) -> list[Event]:
        """The ``offer_sent`` events among ``events`` that count (their cells are needed)."""
        return [e for e in events if e.event_type == "offer_sent" and self.counted(e)]

    def ops(self, events: Sequence[Event], cells: SendCells) -> list[str]:
        """One customer's op list (:data:`OP_WIDTH` values per op), in time order."""
        out: list[str] = []
        for event in sorted((e for e in events if self.counted(e)), key=_time):
            offer_id, channel = event.offer or ("", "")
            kind = KIND[event.event_type]
            cell = cells.get((event.customer_id, channel), "") if kind == "S" else ""
            out += [kind, offer_id, repr(to_seconds(event.timestamp)), cell]
        return out

    def keys(self, prefix: str) -> list[str]:
        """The offers' keys of a call that writes the counts (:data:`OFFER_KEYS` per offer),
        built once per prefix, offer set and budget day (:func:`_offer_keys`), not per event."""
        return list(_offer_keys(prefix, self.offers, self.day))

    def args(self, apply: bool) -> list[Any]:
        """The script's attribution arguments: window, records' and budget day's TTL, whether
        it writes the counts, the number of offers and their ids."""
        head: list[Any] = [repr(float(self.window_s)), self.sends_ttl_s, 2 * int(DAY_S)]
        return [*head, int(apply), len(self.offers), *self.offers]


#: The attribution arguments of a call that counts nothing (no offer set).
NO_ATTRIBUTION_ARGS: Final = [repr(0.0), 0, 0, 0, 0]


@functools.lru_cache(maxsize=64)
def _offer_keys(prefix: str, offers: tuple[str, ...], day: str) -> tuple[str, ...]:
    """:meth:`Attribution.keys`, cached: the same few offer sets and days serve every event."""
    out: list[str] = []
    for offer in offers:
        out += [
            keys.offer_stats(prefix, offer),
            keys.offer_budget(prefix, offer, "redemptions", day),
            keys.offer_budget(prefix, offer, "redemptions", keys.BUDGET_TOTAL),
        ]
    return tuple(out)


def _time(event: Event) -> Any:
    return event.timestamp


def count_commands(
    prefix: str, attribution: Attribution, bumps: Mapping[str, int]
) -> list[tuple[Any, ...]]:
    """The commands writing counts a cluster's scripts returned (module docstring)."""
    out: list[tuple[Any, ...]] = []
    for bump, n in bumps.items():
        head, _, field = bump.partition(" ")
        offer = attribution.offers[int(head[1:]) - 1]
        if head[0] == "H":
            out.append(("HINCRBY", keys.offer_stats(prefix, offer), field, n))
        else:
            today = keys.offer_budget(prefix, offer, "redemptions", attribution.day)
            total = keys.offer_budget(prefix, offer, "redemptions", keys.BUDGET_TOTAL)
            out += [("INCRBY", today, n), ("EXPIRE", today, 2 * int(DAY_S)), ("INCRBY", total, n)]
    return out

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
counts no second send. Events of erased customers count nothing.

The counts are written by the event write itself (``feature_store.offer_attribution``, inside
``feature_store.ingest_script``): the events and their counts are one atomic write, before the
202 (read-your-writes: the next decision reads the new counts).

**Budgets.** An offer's send budget (``recsys.decisions.offer_set.Budget``) is *reserved* by the
decisions that hand the offer out for sending (the offers batch and export): :meth:`reserve` grants
at most what is left of the day's and the total budget in one Lua script (check and ``INCRBY``
together), so two processes never hand out more than the budget. Redemptions are counted by
:meth:`record` from ``offer_redeemed`` events. :meth:`read` returns the counts of the cells a
decision needs and the budget used in one pipelined round trip (one ``HMGET`` per offer).

Redis Cluster: the counts live on the offers' slots (``{o:<offer>}``), the attribution on the
customers': ``feature_store.offer_attribution`` says how the event write counts there. Budget
reservations (:meth:`reserve`) touch one offer's keys only and run as one script on a cluster
too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from feature_store import keys
from feature_store.connection import RedisClient, store_errors
from recsys.decisions.offer_set import Budget, OfferSet

DAY_S: Final = 86_400.0
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

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)

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

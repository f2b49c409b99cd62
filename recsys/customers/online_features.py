"""Online features: the batch feature row and the online state combined into today's row.

The online state (:mod:`recsys.customers.online_state`) says why this equals the batch definitions.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recsys.customers.online_state import (
    DAY_S,
    SURVEYS,
    OnlineState,
    _num,
    _time,
    to_iso,
    to_seconds,
)

#: The state's lists of event times (each sorted).
_TIMES = ("views", "carts", "opens", "clicks")


@dataclass(frozen=True)
class _Base:
    """A batch feature row, turned back into sums."""

    as_of: float | None
    n: int
    gross: float
    returned: float
    first_value: float | None
    gap_n: int
    gap_sum: float
    gap_sq: float
    first_seen: float | None
    last_event: float | None
    first_purchase: float | None
    last_purchase: float | None
    row: Mapping[str, Any]

    @classmethod
    def of(cls, row: Mapping[str, Any], as_of: float | None) -> _Base:
        n = int(_num(row.get("frequency")) or 0)
        aov = _num(row.get("avg_order_value"))
        gross = aov * n if aov is not None and n else 0.0
        returned = gross - (_num(row.get("monetary")) or 0.0)
        repeat = _num(row.get("avg_repeat_order_value"))
        first_value = gross - repeat * (n - 1) if n > 1 and repeat is not None else gross
        mean = _num(row.get("inter_purchase_mean_days"))
        std = _num(row.get("inter_purchase_std_days"))
        gap_n = n - 1 if n > 1 and mean is not None else 0
        first_seen = _time(row.get("first_seen_at"))
        since = _num(row.get("days_since_last_event"))
        return cls(
            as_of=as_of,
            n=n,
            gross=gross,
            returned=returned,
            first_value=first_value if n else None,
            gap_n=gap_n,
            gap_sum=(mean or 0.0) * gap_n,
            gap_sq=((std or 0.0) ** 2 + (mean or 0.0) ** 2) * gap_n,
            first_seen=first_seen,
            last_event=as_of - since * DAY_S if as_of is not None and since is not None else None,
            first_purchase=_time(row.get("first_purchase_at")),
            last_purchase=_time(row.get("last_purchase_at")),
            row=row,
        )

    def window(self, name: str, days: int, now: float, last: float | None) -> float:
        """The batch part of a window feature at ``now`` (0 once it has surely left)."""
        value = _num(self.row.get(name)) or 0.0
        if self.as_of is None or now - self.as_of >= days * DAY_S:
            return 0.0
        if last is None or now - last >= days * DAY_S:
            return 0.0
        return value


def _min(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _live_lines(
    lines: Sequence[list[Any]],
) -> tuple[list[tuple[float, float]], list[tuple[float, float]], set[str]]:
    """One pass over the live lines: (time, value) of each order, by time (an order's time is
    its first line's), (time, value) of each return, and the products bought."""
    orders: dict[str, list[float]] = {}
    returns: list[tuple[float, float]] = []
    bought: set[str] = set()
    for line in lines:
        t = line[0]
        if line[1] == "p":
            entry = orders.get(line[5])
            if entry is None:
                orders[line[5]] = [t, line[4]]
            else:
                if t < entry[0]:
                    entry[0] = t
                entry[1] += line[4]
            if line[6]:
                bought.add(line[2])
        elif line[1] == "r":
            returns.append((t, line[4]))
    return sorted((at, value) for at, value in orders.values()), returns, bought


def _first(line: Sequence[Any]) -> float:
    return float(line[0])


def _between(times: Sequence[Any], start: float, now: float, key: Any = None) -> tuple[int, int]:
    """The index range of the entries of ``times`` (sorted by time) with ``start <= t < now``."""
    return bisect_left(times, start, key=key), bisect_left(times, now, key=key)


def _recent(times: Sequence[float], lo: int, hi: int, now: float, days: int) -> int:
    """How many of the live ``times[lo:hi]`` (sorted) are within ``days`` before ``now``: the
    newest ones, counted back from the newest while inside."""
    width, n = days * DAY_S, 0
    for i in range(hi - 1, lo - 1, -1):
        if now - times[i] >= width:
            break
        n += 1
    return n


def _days(now: float, then: float | None) -> float | None:
    return None if then is None else (now - then) / DAY_S


def online_features(
    state: OnlineState,
    batch_features: Mapping[str, Any],
    batch_as_of: datetime | None,
    as_of: datetime,
    batch_items: Container[str] = (),
) -> dict[str, Any]:
    """The customer's feature row at ``as_of`` (JSON-able: times ISO text, missing None).

    ``batch_features`` is the batch row (empty for a customer training never saw) computed at
    ``batch_as_of``; ``batch_items`` the products the batch history holds (for
    ``n_items_distinct``; only asked whether it holds each live product). Live entries before
    ``batch_as_of`` or not before ``as_of`` are left out, as training leaves out events not
    before its ``as_of``.
    """
    now = to_seconds(as_of)
    since = to_seconds(batch_as_of) if batch_as_of is not None and batch_features else None
    base = _Base.of(batch_features, since)
    start = since if since is not None else -math.inf

    def live(t: float) -> bool:
        return start <= t < now

    # every list of the state is sorted by time (apply_events keeps them so): the live part of
    # each is a slice, found by bisection
    lo, hi = _between(state.lines, start, now, key=_first)
    lines = state.lines[lo:hi]
    orders, returns, bought = _live_lines(lines)
    n = base.n + len(orders)
    gross = base.gross + sum(v for _, v in orders)
    returned = base.returned + sum(v for _, v in returns)
    first_value = base.first_value if base.n else (orders[0][1] if orders else None)
    last_purchase = _max(base.last_purchase, orders[-1][0] if orders else None)
    first_purchase = _min(base.first_purchase, orders[0][0] if orders else None)
    gaps = [b[0] - a[0] for a, b in zip(orders, orders[1:], strict=False)]
    if orders and base.last_purchase is not None:
        gaps.insert(0, orders[0][0] - base.last_purchase)
    gap_n = base.gap_n + len(gaps)
    gap_sum = base.gap_sum + sum(g / DAY_S for g in gaps)
    gap_sq = base.gap_sq + sum((g / DAY_S) ** 2 for g in gaps)
    gap_mean = gap_sum / gap_n if gap_n else None
    gap_std = math.sqrt(max(gap_sq / gap_n - gap_mean**2, 0.0)) if gap_mean is not None else None

    ranges = {name: _between(getattr(state, name), start, now) for name in _TIMES}
    ends = [lines[0][0], lines[-1][0]] if lines else []
    for name, (a, b) in ranges.items():
        if a < b:
            ends += [getattr(state, name)[a], getattr(state, name)[b - 1]]
    ends += [a[0] for a in state.answers if live(a[0])]
    live_first = state.first if state.first is not None and live(state.first) else None
    live_last = state.last if state.last is not None and live(state.last) else None
    first_seen = _min(base.first_seen, live_first, min(ends, default=None))
    last_event = _max(base.last_event, live_last, max(ends, default=None))

    def recent_orders(days: int) -> tuple[int, float]:
        cut = now - days * DAY_S
        picked = [v for at, v in orders if at > cut]
        value = sum(picked) - sum(v for t, v in returns if t > cut)
        return len(picked), value

    def count(name: str, days: int) -> int:
        return _recent(getattr(state, name), *ranges[name], now, days)

    o30, s30 = recent_orders(30)
    o90, s90 = recent_orders(90)
    last_batch = base.last_event
    row = base.row
    new_items = [i for i in bought if i not in batch_items]
    cart_items = [i for i, v in state.cart.items() if live(v[0])]
    open_items = sum(
        1
        for i in cart_items
        if state.cart[i][1] == "add_to_cart" and now - state.cart[i][0] < 30 * DAY_S
    )
    features: dict[str, Any] = {
        "recency_days": _days(now, last_purchase),
        "frequency": n,
        "monetary": gross - returned,
        "avg_order_value": gross / n if n else None,
        "avg_repeat_order_value": (gross - first_value) / (n - 1)
        if n > 1 and first_value is not None
        else None,
        "tenure_days": _days(now, first_seen),
        "days_since_last_event": _days(now, last_event),
        "first_seen_at": to_iso(first_seen),
        "last_purchase_at": to_iso(last_purchase),
        "first_purchase_at": to_iso(first_purchase),
        "inter_purchase_mean_days": gap_mean,
        "inter_purchase_std_days": gap_std,
        "orders_30d": int(base.window("orders_30d", 30, now, base.last_purchase)) + o30,
        "orders_90d": int(base.window("orders_90d", 90, now, base.last_purchase)) + o90,
        "spend_30d": base.window("spend_30d", 30, now, last_batch) + s30,
        "spend_90d": base.window("spend_90d", 90, now, last_batch) + s90,
        "return_rate": min(max(returned / gross, 0.0), 1.0) if gross > 0 else 0.0,
        "views_30d": int(base.window("views_30d", 30, now, last_batch)) + count("views", 30),
        "carts_30d": int(base.window("carts_30d", 30, now, last_batch)) + count("carts", 30),
        "cart_open_items": int(base.window("cart_open_items", 30, now, last_batch)) + open_items,
        "n_items_distinct": int(_num(row.get("n_items_distinct")) or 0) + len(new_items),
        "top_category": row.get("top_category"),
        "top_category_share": _num(row.get("top_category_share")),
        "email_opens_90d": int(base.window("email_opens_90d", 90, now, last_batch))
        + count("opens", 90),
        "email_clicks_90d": int(base.window("email_clicks_90d", 90, now, last_batch))
        + count("clicks", 90),
    }
    features.update(_survey_features(state, row, live))
    consent = row.get("marketing_consent")
    live_consent = state.consent if state.consent is not None and live(state.consent[0]) else None
    features["marketing_consent"] = (
        bool(live_consent[1]) if live_consent else (consent if isinstance(consent, bool) else True)
    )
    return features


def _survey_features(
    state: OnlineState, row: Mapping[str, Any], live: Callable[[float], bool]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in SURVEYS:
        scores = [float(a[2]) for a in state.answers if a[1] == metric and live(a[0])]
        base_mean = _num(row.get(f"{metric}_mean"))
        base_n = int(_num(row.get(f"{metric}_n")) or (1 if base_mean is not None else 0))
        total = (base_mean or 0.0) * base_n + sum(scores)
        answered = base_n + len(scores)
        out[metric] = scores[-1] if scores else _num(row.get(metric))
        out[f"{metric}_mean"] = total / answered if answered else None
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def changed(before: Mapping[str, Any], after: Mapping[str, Any], names: Iterable[str]) -> bool:
    """True when any of ``names`` differs (None and NaN count as equal)."""
    for name in names:
        a, b = before.get(name), after.get(name)
        if a == b and type(a) is type(b):  # equal values of one type: never a change (NaN != NaN)
            continue
        x, y = _num(a), _num(b)
        if x is None and y is None:
            if _missing(a) != _missing(b) or (not _missing(a) and a != b):
                return True
        elif x is None or y is None or not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
            return True
    return False

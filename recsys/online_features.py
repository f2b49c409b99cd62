"""Online features: a customer's events since training, applied to their live state at once.

:func:`compute_customer_features` needs the whole history and costs tens of milliseconds; the
event path has neither. So a customer's live state (:class:`OnlineState`, kept as JSON in their
live record) holds what is needed to evaluate the *same definitions* exactly:

* the purchase and return lines since training (time, item, units, value, order), so orders,
  spend, windows, distinct items and the "purchased" map are recomputed, never drifted;
* the times of views, add-to-carts and email events inside their windows (30 / 90 days);
* the latest cart state of each item, survey answers, the latest consent flag, first and last
  event times, recent views and dislikes.

:func:`online_features` combines that with the customer's **batch** feature row (training's
output at ``as_of``) into the feature row at any later time. Lifetime sums, counts, means and
standard deviations combine exactly (the batch row is turned back into sums: gross spend =
``avg_order_value * frequency``, returned = gross - ``monetary``, gap sums from the mean and the
standard deviation). Window features combine exactly too, with one exception: the batch part of
a 30- or 90-day count is known only as of training, so it is kept until it has certainly left
the window (window length passed since training, or since the customer's last batch event),
and is then dropped. ``top_category`` stays the batch value. ``tests/recsys/
test_online_features.py`` proves the combination equals :func:`compute_customer_features` over
the whole history.

Live entries older than the batch ``as_of`` are ignored (they are inside the batch row), so a
new model version never counts an event twice. Times are Unix seconds (UTC) in the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from recsys.events import Event

DAY_S: Final = 86_400.0
SURVEYS: Final = ("nps", "csat", "ces")
RECENT_VIEWS: Final = 20
MAX_CART: Final = 50
MAX_LINES: Final = 2000
MAX_TIMES: Final = 1000
MAX_ANSWERS: Final = 200
MAX_DISLIKED: Final = 1000
_EPOCH: Final = datetime(1970, 1, 1)


def to_seconds(moment: datetime) -> float:
    """Naive UTC (or aware) datetime -> Unix seconds."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH).total_seconds()


def to_iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()


def _num(value: Any) -> float | None:
    """A finite float, or None for missing/NaN/non-numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _time(value: Any) -> float | None:
    """A batch feature time (ISO text, datetime or pandas Timestamp) -> Unix seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return None if value != value else to_seconds(value)  # NaT compares unequal
    if isinstance(value, str):
        try:
            return to_seconds(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


@dataclass
class OnlineState:
    """What happened since training, in a JSON-able form (see the module docstring)."""

    # purchase/return lines: [t, "p"|"r", item, units, value, order key, is product]
    lines: list[list[Any]] = field(default_factory=list)
    views: list[float] = field(default_factory=list)  # view times (30-day window)
    carts: list[float] = field(default_factory=list)  # add_to_cart times (30-day window)
    opens: list[float] = field(default_factory=list)  # email_open times (90-day window)
    clicks: list[float] = field(default_factory=list)  # email_click times (90-day window)
    cart: dict[str, list[Any]] = field(default_factory=dict)  # item -> [t, latest cart kind]
    answers: list[list[Any]] = field(default_factory=list)  # [t, metric, score]
    consent: list[Any] | None = None  # [t, flag]
    first: float | None = None  # first event time since training
    last: float | None = None  # latest event time
    recent: list[str] = field(default_factory=list)  # viewed items, newest first
    disliked: list[str] = field(default_factory=list)
    version: str | None = None  # the model version whose batch row the state extends

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> OnlineState:
        if not data:
            return cls()
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


PriceOf = Callable[[str], float | None]
IsProduct = Callable[[str], bool]


def no_price(item_id: str) -> float | None:
    """The default ``price_of``: no catalogue."""
    return None


def any_product(item_id: str) -> bool:
    """The default ``is_product``: every item is a product."""
    return True


def _prune(times: list[float], newest: float, days: float, cap: int) -> list[float]:
    horizon = newest - days * DAY_S
    kept = sorted(t for t in times if t >= horizon)
    return kept[-cap:]


def apply_events(
    state: OnlineState,
    events: Iterable[Event],
    price_of: PriceOf = no_price,
    is_product: IsProduct = any_product,
) -> OnlineState:
    """A new state with ``events`` (one customer's, already deduplicated) applied, in time order.

    ``price_of`` fills a missing price from the catalogue, as training does with its catalogue;
    lines of non-product codes (``is_product`` false: postage, fees) are worth nothing, as in
    training.
    """
    s = OnlineState.from_json(state.to_json())
    lines = list(s.lines)
    recent, disliked = list(s.recent), list(s.disliked)
    for event in sorted(events, key=lambda e: e.timestamp):
        t = to_seconds(event.timestamp)
        s.first = t if s.first is None else min(s.first, t)
        s.last = t if s.last is None else max(s.last, t)
        kind, item = event.event_type, event.item_id
        if kind in ("purchase", "return") and item is not None:
            product = is_product(item)
            price = event.price if event.price is not None else price_of(item)
            value = abs(event.quantity) * (price or 0.0) if product else 0.0
            order = event.order_id if event.order_id is not None else "t:" + str(t)
            code = "p" if kind == "purchase" else "r"
            lines.append([t, code, item, event.quantity, value, order, product])
        elif kind == "view" and item is not None:
            s.views.append(t)
            recent = [item] + [i for i in recent if i != item]
        elif kind == "email_open":
            s.opens.append(t)
        elif kind == "email_click":
            s.clicks.append(t)
        elif kind == "survey" and event.survey is not None:
            s.answers.append([t, *event.survey])
        elif kind == "dislike" and item is not None and item not in disliked:
            disliked.append(item)
        if kind == "add_to_cart":
            s.carts.append(t)
        if kind in ("add_to_cart", "remove_from_cart", "purchase") and item is not None:
            previous = s.cart.get(item)
            if previous is None or previous[0] <= t:
                s.cart[item] = [t, kind]
        flag = event.properties.get("marketing_consent", event.properties.get("consent"))
        if isinstance(flag, bool) and (s.consent is None or s.consent[0] <= t):
            s.consent = [t, flag]
    newest = s.last or 0.0
    s.lines = sorted(lines, key=lambda line: line[0])[-MAX_LINES:]
    s.views = _prune(s.views, newest, 30, MAX_TIMES)
    s.carts = _prune(s.carts, newest, 30, MAX_TIMES)
    s.opens = _prune(s.opens, newest, 90, MAX_TIMES)
    s.clicks = _prune(s.clicks, newest, 90, MAX_TIMES)
    horizon = newest - 30 * DAY_S
    s.cart = {i: v for i, v in s.cart.items() if v[1] == "add_to_cart" or v[0] >= horizon}
    s.answers = sorted(s.answers, key=lambda a: a[0])[-MAX_ANSWERS:]
    s.recent = recent[:RECENT_VIEWS]
    s.disliked = disliked[-MAX_DISLIKED:]
    return s


def rebase(state: OnlineState, base_as_of: float | None) -> OnlineState:
    """Drop what a batch row as of ``base_as_of`` already counts (after a new model version)."""
    if base_as_of is None:
        return state
    s = OnlineState.from_json(state.to_json())
    s.lines = [line for line in s.lines if line[0] >= base_as_of]
    s.answers = [a for a in s.answers if a[0] >= base_as_of]
    s.cart = {i: v for i, v in s.cart.items() if v[0] >= base_as_of}
    for name in ("views", "carts", "opens", "clicks"):
        setattr(s, name, [t for t in getattr(s, name) if t >= base_as_of])
    if s.consent is not None and s.consent[0] < base_as_of:
        s.consent = None
    if s.first is not None and s.first < base_as_of:
        s.first = base_as_of if s.last is not None and s.last >= base_as_of else None
    return s


# -- the live record's lists ------------------------------------------------------------------


def open_cart(state: OnlineState, as_of: float | None = None) -> list[str]:
    """Items left in the cart (latest cart event an add within 30 days), newest first."""
    now = as_of if as_of is not None else (state.last or 0.0)
    added = [(v[0], i) for i, v in state.cart.items() if v[1] == "add_to_cart"]
    return [i for t, i in sorted(added, reverse=True) if now - t < 30 * DAY_S][:MAX_CART]


def purchased_units(state: OnlineState) -> dict[str, float]:
    """Item -> units bought since training, net of returns (items with none left dropped)."""
    units: dict[str, float] = {}
    for _, kind, item, qty, *_ in state.lines:
        units[item] = units.get(item, 0.0) + (qty if kind == "p" else -abs(qty))
    return {item: n for item, n in units.items() if n > 0}


def purchase_weights(state: OnlineState) -> dict[str, float]:
    """Item -> distinct orders since training (the ALS weight), for items not fully returned."""
    orders: dict[str, set[str]] = {}
    for _, kind, item, _, _, order, *_ in state.lines:
        if kind == "p":
            orders.setdefault(item, set()).add(order)
    kept = purchased_units(state)
    return {item: float(len(keys)) for item, keys in orders.items() if item in kept}


# -- features ---------------------------------------------------------------------------------


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


def _orders(lines: Sequence[list[Any]]) -> list[tuple[float, float]]:
    """(time, value) of each live order, by time."""
    orders: dict[str, list[float]] = {}
    for t, kind, _, _, value, key, *_ in lines:
        if kind == "p":
            entry = orders.setdefault(key, [t, 0.0])
            entry[0] = min(entry[0], t)
            entry[1] += value
    return sorted((at, value) for at, value in orders.values())


def _days(now: float, then: float | None) -> float | None:
    return None if then is None else (now - then) / DAY_S


def online_features(
    state: OnlineState,
    batch_features: Mapping[str, Any],
    batch_as_of: datetime | None,
    as_of: datetime,
    batch_items: Iterable[str] = (),
) -> dict[str, Any]:
    """The customer's feature row at ``as_of`` (JSON-able: times ISO text, missing None).

    ``batch_features`` is the batch row (empty for a customer training never saw) computed at
    ``batch_as_of``; ``batch_items`` the products the batch history holds (for
    ``n_items_distinct``). Live entries before ``batch_as_of`` or not before ``as_of`` are
    left out, as training leaves out events not before its ``as_of``.
    """
    now = to_seconds(as_of)
    since = to_seconds(batch_as_of) if batch_as_of is not None and batch_features else None
    base = _Base.of(batch_features, since)
    start = since if since is not None else -math.inf

    def live(t: float) -> bool:
        return start <= t < now

    lines = [line for line in state.lines if live(line[0])]
    orders = _orders(lines)
    returns = [(line[0], line[4]) for line in lines if line[1] == "r"]
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

    times = [t for t in (*(line[0] for line in lines), *state.views, *state.carts) if live(t)]
    times += [t for t in (*state.opens, *state.clicks, *(a[0] for a in state.answers)) if live(t)]
    live_first = state.first if state.first is not None and live(state.first) else None
    live_last = state.last if state.last is not None and live(state.last) else None
    first_seen = _min(base.first_seen, live_first, min(times, default=None))
    last_event = _max(base.last_event, live_last, max(times, default=None))

    def recent_orders(days: int) -> tuple[int, float]:
        cut = now - days * DAY_S
        picked = [v for at, v in orders if at > cut]
        value = sum(picked) - sum(v for t, v in returns if t > cut)
        return len(picked), value

    def count(times_: Sequence[float], days: int) -> int:
        return sum(1 for t in times_ if live(t) and now - t < days * DAY_S)

    o30, s30 = recent_orders(30)
    o90, s90 = recent_orders(90)
    last_batch = base.last_event
    row = base.row
    bought = {line[2] for line in lines if line[1] == "p" and line[6]}
    new_items = bought - set(batch_items)
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
        "views_30d": int(base.window("views_30d", 30, now, last_batch)) + count(state.views, 30),
        "carts_30d": int(base.window("carts_30d", 30, now, last_batch)) + count(state.carts, 30),
        "cart_open_items": int(base.window("cart_open_items", 30, now, last_batch)) + open_items,
        "n_items_distinct": int(_num(row.get("n_items_distinct")) or 0) + len(new_items),
        "top_category": row.get("top_category"),
        "top_category_share": _num(row.get("top_category_share")),
        "email_opens_90d": int(base.window("email_opens_90d", 90, now, last_batch))
        + count(state.opens, 90),
        "email_clicks_90d": int(base.window("email_clicks_90d", 90, now, last_batch))
        + count(state.clicks, 90),
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
        x, y = _num(a), _num(b)
        if x is None and y is None:
            if _missing(a) != _missing(b) or (not _missing(a) and a != b):
                return True
        elif x is None or y is None or not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
            return True
    return False

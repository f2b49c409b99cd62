"""The online state: a customer's events since training, kept to evaluate the online features.

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
from collections.abc import Callable, Iterable, Mapping
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
    # ``state`` is left as it was (its lists may be a cached read's): every list and the cart
    # this function changes in place is a copy
    s.views, s.carts, s.opens, s.clicks = (
        list(s.views),
        list(s.carts),
        list(s.opens),
        list(s.clicks),
    )
    s.answers, s.cart = list(s.answers), dict(s.cart)
    lines: list[list[Any]] = []  # the new ones
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
    s.lines = _merged(s.lines, lines)[-MAX_LINES:]
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


def _line_time(line: list[Any]) -> float:
    return float(line[0])


def _merged(old: list[list[Any]], new: list[list[Any]]) -> list[list[Any]]:
    """``old`` (sorted by time) and ``new`` lines, sorted by time, stably (``old`` first on a
    tie): no sort of the old ones when every new line is at least as late (the usual case)."""
    new.sort(key=_line_time)
    if not old or not new or new[0][0] >= old[-1][0]:
        return [*old, *new]
    return sorted([*old, *new], key=_line_time)


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
    get = units.get
    for line in state.lines:
        item, qty = line[2], line[3]
        units[item] = get(item, 0.0) + (qty if line[1] == "p" else -abs(qty))
    return {item: n for item, n in units.items() if n > 0}


def purchase_weights(state: OnlineState) -> dict[str, float]:
    """Item -> distinct orders since training (the ALS weight), for items not fully returned."""
    return units_and_weights(state)[1]


def units_and_weights(state: OnlineState) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`purchased_units` and :func:`purchase_weights` in one pass over the lines."""
    units: dict[str, float] = {}
    orders: dict[str, set[str]] = {}
    get = units.get
    for line in state.lines:
        item, qty = line[2], line[3]
        if line[1] == "p":
            units[item] = get(item, 0.0) + qty
            found = orders.get(item)
            if found is None:
                orders[item] = {line[5]}
            else:
                found.add(line[5])
        else:
            units[item] = get(item, 0.0) - abs(qty)
    kept = {item: n for item, n in units.items() if n > 0}
    return kept, {item: float(len(keys)) for item, keys in orders.items() if item in kept}

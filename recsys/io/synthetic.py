"""A synthetic but realistic shop: events in the ``events`` file format, and its catalogue.

Deterministic for a seed. The world it draws:

* items in 12 categories (:data:`CATEGORY_NOUNS`; titles that :func:`recsys.io.catalogue.categorize`
  puts back in the same category), prices log-normal around a price level per category, a
  long-tailed popularity within each category;
* customers with tastes over the categories (Dirichlet, concentrated on one to three), so that
  customers who share a taste buy the same cluster of items: the collaborative structure ALS
  should learn; a sign-up day, and for a quarter of them a churn day after which they do nothing
  but (rarely) open an email;
* buyers order in a rhythm of their own (a personal mean gap between orders, gamma-distributed
  around it) and re-order a few favourite items with a personal propensity;
* a funnel: every order line was viewed and added to the cart first; browsing sessions add more
  views, some carts, removals from the cart, searches (``{"query": ...}``) and dislikes of
  items outside the customer's taste, so views > carts > purchases;
* returns of some purchased lines (a personal return rate; a few serial returners);
* fortnightly email campaigns (``email_open``, ``email_click`` on an item), occasional
  ``offer_sent``; surveys: CSAT after some orders (lower when the order had a return), NPS
  now and then (lower for customers who return a lot), CES after some returns.

``generate_events(2000, 500, 365)`` gives about 280,000 events in well under a second; with
the catalogue's titles, :func:`recsys.io.catalogue.categorize` gives back each item's category.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.schema import CATALOG_COLUMNS, EVENT_TYPES

#: category -> (price level, product nouns).
CATEGORY_NOUNS: Final[dict[str, tuple[float, tuple[str, ...]]]] = {
    "kitchen & dining": (4.0, ("MUG", "TEAPOT", "CAKE STAND", "BOWL", "PLATE", "JUG")),
    "candles & lights": (3.0, ("CANDLE", "T-LIGHT HOLDER", "LANTERN", "FAIRY LIGHTS", "LAMP")),
    "stationery & wrap": (1.5, ("GREETING CARD", "WRAPPING PAPER", "NOTEBOOK", "STICKERS")),
    "bags": (2.5, ("SHOPPER BAG", "LUNCH BAG", "TOTE", "WASHBAG")),
    "christmas": (3.5, ("CHRISTMAS BAUBLE", "ADVENT CALENDAR", "CHRISTMAS STOCKING", "SANTA")),
    "jewellery & accessories": (6.0, ("NECKLACE", "BRACELET", "EARRINGS", "PURSE", "HAIR CLIP")),
    "storage": (5.0, ("STORAGE TIN", "TRINKET BOX", "BASKET", "STORAGE CRATE")),
    "garden & outdoor": (6.5, ("PLANT POT", "WATERING CAN", "BIRD FEEDER", "HAMMOCK")),
    "toys & games": (4.5, ("JIGSAW", "SKITTLES", "RAG DOLL", "SPINNING TOP")),
    "party & crafts": (2.0, ("PARTY BUNTING", "BIRTHDAY BANNER", "CONFETTI", "SEWING NEEDLES")),
    "bath & beauty": (3.0, ("SOAP", "BATH SPONGE", "HAND TOWEL", "LIP BALM")),
    "home decor": (8.0, ("CUSHION COVER", "PHOTO FRAME", "WALL CLOCK", "DOORMAT", "MIRROR")),
}
STYLES: Final[tuple[str, ...]] = (
    "VINTAGE",
    "RETROSPOT",
    "POLKADOT",
    "PAISLEY",
    "REGENCY",
    "SCANDINAVIAN",
    "FOLKART",
    "BAROQUE",
)
COLOURS: Final[tuple[str, ...]] = ("RED", "BLUE", "PINK", "GREEN", "IVORY", "WHITE", "BLACK")
OFFERS: Final[tuple[str, ...]] = ("WELCOME10", "WINBACK15", "LOYALTY5", "CART10")
_T = {name: code for code, name in enumerate(EVENT_TYPES)}
MINUTE: Final[float] = 1.0 / 1440.0


@dataclass
class _Block:
    """A batch of events as parallel arrays (indices into the world; -1 for none)."""

    customer: np.ndarray
    kind: np.ndarray
    day: np.ndarray
    item: np.ndarray
    quantity: np.ndarray
    order: np.ndarray
    props: np.ndarray  # object: JSON text or None


def _block(
    customer: np.ndarray,
    kind: int,
    day: np.ndarray,
    item: np.ndarray | None = None,
    quantity: np.ndarray | float | None = None,
    order: np.ndarray | None = None,
    props: np.ndarray | None = None,
) -> _Block:
    n = len(customer)
    return _Block(
        np.asarray(customer, dtype=np.int64),
        np.full(n, kind, dtype=np.int8),
        np.asarray(day, dtype=np.float64),
        np.full(n, -1, np.int64) if item is None else np.asarray(item, np.int64),
        np.broadcast_to(np.nan if quantity is None else quantity, (n,)).astype(np.float64),
        np.full(n, -1, np.int64) if order is None else np.asarray(order, np.int64),
        np.full(n, None, dtype=object) if props is None else np.asarray(props, dtype=object),
    )


@dataclass(frozen=True)
class _World:
    rng: np.random.Generator
    days: int
    item_category: np.ndarray
    item_price: np.ndarray
    taste_cum: np.ndarray  # (customers, categories) cumulative taste
    item_key: np.ndarray  # category + cumulative popularity within it, ascending
    item_order: np.ndarray  # the item behind each key
    start: np.ndarray  # sign-up day
    end: np.ndarray  # churn day, or the end of the window
    favourites: np.ndarray  # (customers, 6)
    n_favourites: np.ndarray

    def pick(self, customers: np.ndarray) -> np.ndarray:
        """One item per entry, drawn from the customer's taste, then popularity in category."""
        categories = self.taste_cum.shape[1]
        u = self.rng.random(len(customers))
        cat = np.minimum((self.taste_cum[customers] < u[:, None]).sum(axis=1), categories - 1)
        pos = np.searchsorted(self.item_key, cat + self.rng.random(len(customers)), "right")
        return self.item_order[np.minimum(pos, len(self.item_order) - 1)]


def _catalog(rng: np.random.Generator, items: int) -> tuple[pd.DataFrame, np.ndarray, int]:
    names = list(CATEGORY_NOUNS)[: min(len(CATEGORY_NOUNS), items)]
    category = rng.permutation(np.arange(items) % len(names))
    level = np.array([CATEGORY_NOUNS[n][0] for n in names])[category]
    price = np.maximum(0.25, np.round(level * rng.lognormal(0.0, 0.4, items) / 0.05) * 0.05)
    nouns = [CATEGORY_NOUNS[n][1] for n in names]
    table = np.array([[*row, *row[:1] * (6 - len(row))] for row in nouns], dtype=object)
    sizes = np.array([len(row) for row in nouns])
    noun = table[category, rng.integers(0, sizes[category])]
    style = rng.choice(np.array(STYLES, dtype=object), items)
    colour = rng.choice(np.array(COLOURS, dtype=object), items)
    catalog = pd.DataFrame(
        {
            "item_id": [f"I{n:05d}" for n in range(1, items + 1)],
            "title": style + " " + colour + " " + noun,
            "category": np.array(names, dtype=object)[category],
            "price": np.round(price, 2),
            "in_stock": rng.random(items) > 0.03,
        }
    ).astype({"item_id": "string", "title": "string", "category": "string"})
    return catalog.loc[:, list(CATALOG_COLUMNS)], category, len(names)


def _world(
    rng: np.random.Generator, customers: int, items: int, days: int
) -> tuple[_World, pd.DataFrame]:
    catalog, category, k = _catalog(rng, items)
    weight = rng.lognormal(0.0, 1.0, items)
    order = np.argsort(category, kind="stable")
    sorted_cat = category[order]
    running = np.cumsum(weight[order])
    total = np.bincount(sorted_cat, weights=weight[order], minlength=k)
    before = np.r_[0.0, np.cumsum(total)[:-1]]
    cum = (running - before[sorted_cat]) / total[sorted_cat]
    cum[np.r_[sorted_cat[1:] != sorted_cat[:-1], True]] = 1.0  # each category ends at exactly 1
    taste = rng.dirichlet(np.full(k, 0.25), customers)
    start = np.where(rng.random(customers) < 0.4, 0.0, rng.uniform(0, 0.75 * days, customers))
    churn = rng.random(customers) < 0.25
    end = np.where(churn, start + rng.uniform(0.2, 0.8, customers) * (days - start), days)
    world = _World(
        rng,
        days,
        category,
        catalog["price"].to_numpy(),
        np.cumsum(taste, axis=1),
        sorted_cat + cum,
        order,
        start,
        end,
        np.zeros((customers, 6), np.int64),
        rng.integers(2, 7, customers),
    )
    world.favourites[:] = world.pick(np.repeat(np.arange(customers), 6)).reshape(customers, 6)
    return world, catalog


def _hour(rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
    """Move each time into the shop's day: 07:00-23:00, busiest early afternoon."""
    hour = np.clip(rng.normal(14.0, 3.5, len(day)), 7.0, 23.0)
    return np.floor(day) + hour / 24.0


def _orders(w: _World, customers: int) -> tuple[list[_Block], dict[str, np.ndarray]]:
    rng = w.rng
    buyer = rng.random(customers) < 0.8
    gap = np.clip(rng.lognormal(np.log(30.0), 0.6, customers), 4.0, 120.0)
    span = w.end - w.start
    most = int(np.ceil((span / (0.25 * gap)).max())) + 1
    gaps = np.maximum(gap[:, None] * rng.gamma(4.0, 0.25, (customers, most)), 0.25 * gap[:, None])
    first = w.start + 0.1 + rng.random(customers) * gap
    times = first[:, None] + np.cumsum(np.c_[np.zeros(customers), gaps[:, :-1]], axis=1)
    valid = buyer[:, None] & (times < w.end[:, None] - 0.05)
    cust, nth = np.nonzero(valid)
    when = _hour(rng, times[cust, nth])
    chrono = np.argsort(when, kind="stable")
    cust, nth, when = cust[chrono], nth[chrono], when[chrono]
    lines = np.minimum(1 + rng.poisson(1.8, len(cust)), 8)
    order = np.repeat(np.arange(len(cust)), lines)
    lc, t = cust[order], when[order]
    again = (nth[order] > 0) & (rng.random(len(order)) < rng.beta(2, 2, customers)[lc])
    fav = w.favourites[lc, (rng.random(len(order)) * w.n_favourites[lc]).astype(np.int64)]
    item = np.where(again, fav, w.pick(lc))
    unique = ~pd.DataFrame({"o": order, "i": item}).duplicated().to_numpy()
    order, lc, t, item = order[unique], lc[unique], t[unique], item[unique]
    qty = rng.geometric(0.55, len(order)).astype(float)
    views = 1 + rng.poisson(0.6, len(order))
    v = np.repeat(np.arange(len(order)), views)
    searched = rng.random(len(cust)) < 0.3
    first_line = np.r_[True, order[1:] != order[:-1]] & searched[order]
    blocks = [
        _block(lc[v], _T["view"], t[v] - rng.uniform(5, 60, len(v)) * MINUTE, item[v], 1.0),
        _block(lc, _T["add_to_cart"], t - rng.uniform(1, 5, len(t)) * MINUTE, item, qty),
        _block(lc, _T["purchase"], t, item, qty, order),
        _block(
            lc[first_line],
            _T["search"],
            t[first_line] - 65 * MINUTE,
            props=_json("query", _nouns(w, item[first_line])),
        ),
    ]
    lines_info = {"customer": lc, "day": t, "item": item, "qty": qty, "order": order}
    return blocks, lines_info


def _nouns(w: _World, items: np.ndarray) -> np.ndarray:
    names = list(CATEGORY_NOUNS)
    nouns = np.array([CATEGORY_NOUNS[n][1][0].lower() for n in names], dtype=object)
    return nouns[w.item_category[items]]


def _json(key: str, values: np.ndarray) -> np.ndarray:
    """``{"key": "value"}`` for plain values (no quotes or backslashes in them)."""
    return '{"' + key + '": "' + np.asarray(values).astype(str).astype(object) + '"}'


def _browsing(w: _World, customers: int) -> list[_Block]:
    rng = w.rng
    rate = rng.gamma(2.0, 0.028, customers)
    sessions = rng.poisson(rate * (w.end - w.start))
    sc = np.repeat(np.arange(customers), sessions)
    begin = _hour(rng, w.start[sc] + rng.random(len(sc)) * (w.end - w.start)[sc])
    views = 1 + rng.poisson(1.5, len(sc))
    s = np.repeat(np.arange(len(sc)), views)
    vc, t = sc[s], begin[s] + rng.uniform(0, 30, len(s)) * MINUTE
    explore = rng.random(len(s)) < 0.15
    item = np.where(explore, rng.integers(0, len(w.item_category), len(s)), w.pick(vc))
    cart = rng.random(len(s)) < np.where(explore, 0.05, 0.25)
    removed = cart & (rng.random(len(s)) < 0.5)
    dislike = explore & (rng.random(len(s)) < 0.15)
    searched = rng.random(len(sc)) < 0.25
    favourite_category = np.argmax(np.diff(np.c_[np.zeros(customers), w.taste_cum]), axis=1)
    top_item = w.item_order[np.searchsorted(w.item_key, favourite_category[sc] + 0.5, "right")]
    return [
        _block(vc, _T["view"], t, item, 1.0),
        _block(vc[cart], _T["add_to_cart"], t[cart] + MINUTE, item[cart], 1.0),
        _block(vc[removed], _T["remove_from_cart"], t[removed] + 20 * MINUTE, item[removed], 1.0),
        _block(vc[dislike], _T["dislike"], t[dislike] + MINUTE, item[dislike], 1.0),
        _block(
            sc[searched],
            _T["search"],
            begin[searched] - MINUTE,
            props=_json("query", _nouns(w, top_item[searched])),
        ),
    ]


def _returns_and_surveys(w: _World, lines: dict[str, np.ndarray], customers: int) -> list[_Block]:
    rng = w.rng
    lc, order = lines["customer"], lines["order"]
    serial = rng.random(customers) < 0.1
    rate = np.where(serial, rng.beta(3, 7, customers), rng.beta(1, 15, customers))
    back = rng.random(len(lc)) < rate[lc]
    back_day = lines["day"] + rng.uniform(2, 21, len(lc))
    back &= back_day < w.days
    qty = np.floor(rng.random(len(lc)) * lines["qty"]) + 1
    bought = np.bincount(lc, minlength=customers)
    ret_rate = np.bincount(lc[back], minlength=customers) / np.maximum(bought, 1)
    mood = rng.normal(0, 1, customers)

    n_orders = int(order.max()) + 1 if len(order) else 0
    order_cust = np.zeros(n_orders, np.int64)
    order_cust[order] = lc
    order_day = np.zeros(n_orders)
    order_day[order] = lines["day"]
    had_return = np.bincount(order[back], minlength=n_orders) > 0
    asked = np.flatnonzero(rng.random(n_orders) < 0.25)
    csat = 4.1 + 0.6 * mood[order_cust[asked]] - 2.0 * had_return[asked]
    csat = np.clip(np.round(csat + rng.normal(0, 0.7, len(asked))), 1, 5).astype(int)

    checks = np.arange(90, w.days, 90)
    nc, nd = np.nonzero(
        (rng.random((customers, len(checks))) < 0.3)
        & (w.start[:, None] < checks)
        & (bought[:, None] > 0)
    )
    nps = 7.6 + 1.4 * mood[nc] - 10.0 * ret_rate[nc] + rng.normal(0, 1.2, len(nc))
    nps = np.clip(np.round(nps), 0, 10).astype(int)
    ri = np.flatnonzero(back & (rng.random(len(lc)) < 0.5))
    ces = np.clip(np.round(5.2 + 0.8 * mood[lc[ri]] + rng.normal(0, 1, len(ri))), 1, 7)

    return [
        _block(lc[back], _T["return"], back_day[back], lines["item"][back], qty[back], order[back]),
        _survey(
            order_cust[asked],
            order_day[asked] + rng.uniform(1, 4, len(asked)),
            "csat",
            csat,
            order=asked,
        ),
        _survey(nc, _hour(rng, checks[nd] + rng.uniform(0, 5, len(nc))), "nps", nps),
        _survey(lc[ri], back_day[ri] + rng.uniform(1, 3, len(ri)), "ces", ces, order=order[ri]),
    ]


def _survey(
    customer: np.ndarray,
    day: np.ndarray,
    metric: str,
    score: np.ndarray,
    order: np.ndarray | None = None,
) -> _Block:
    text = np.asarray(score).astype(np.int64).astype(str).astype(object)
    props = '{"metric": "' + metric + '", "score": ' + text + "}"
    return _block(customer, _T["survey"], day, order=order, props=props)


def _marketing(w: _World, customers: int) -> list[_Block]:
    rng = w.rng
    subscribed = rng.random(customers) < 0.7
    opens = rng.beta(2, 4, customers)
    campaigns = np.arange(3, w.days, 14)
    p = np.where(campaigns[None, :] < w.end[:, None], opens[:, None], 0.1 * opens[:, None])
    sent = subscribed[:, None] & (w.start[:, None] <= campaigns[None, :])
    oc, ok = np.nonzero(sent & (rng.random(p.shape) < p))
    t = campaigns[ok] + rng.uniform(0, 2, len(oc))
    name = np.char.add("c", np.char.zfill(ok.astype(str), 2)).astype(object)
    click = rng.random(len(oc)) < 0.3
    months = np.arange(10, w.days, 30)
    active = (w.start[:, None] <= months) & (months < w.end[:, None])
    fc, fm = np.nonzero(active & (rng.random(active.shape) < 0.08))
    offer = rng.choice(np.array(OFFERS, dtype=object), len(fc))
    return [
        _block(oc, _T["email_open"], t, props=_json("campaign", name)),
        _block(
            oc[click],
            _T["email_click"],
            t[click] + rng.uniform(1, 30, click.sum()) * MINUTE,
            w.pick(oc[click]),
            1.0,
            props=_json("campaign", name[click]),
        ),
        _block(
            fc,
            _T["offer_sent"],
            _hour(rng, months[fm] + rng.uniform(0, 1, len(fc))),
            props=_json("offer_id", offer),
        ),
    ]


def _labels(prefix: str, numbers: np.ndarray, width: int) -> pd.arrays.ArrowStringArray:
    """``prefix`` + zero-padded number for each entry; a negative number is NA."""
    text = pa.array(numbers, mask=numbers < 0).cast(pa.string())
    return pd.arrays.ArrowStringArray(
        pc.binary_join_element_wise(prefix, pc.utf8_lpad(text, width, "0"), "")
    )


def _take(values: np.ndarray, index: np.ndarray) -> pd.arrays.ArrowStringArray:
    """``values[index]`` as nullable strings; a negative index is NA."""
    chosen = pa.array(values, type=pa.string()).take(pa.array(index, mask=index < 0))
    return pd.arrays.ArrowStringArray(chosen)


def _assemble(w: _World, blocks: list[_Block], catalog: pd.DataFrame, start: str) -> pd.DataFrame:
    fields = _Block.__dataclass_fields__
    b = _Block(*(np.concatenate([getattr(x, f) for x in blocks]) for f in fields))
    keep = (b.day >= 0) & (b.day < w.days)
    seconds = np.round(b.day[keep] * 86400).astype(np.int64)
    sort = np.argsort(seconds, kind="stable")
    idx = np.flatnonzero(keep)[sort]
    item = b.item[idx]
    events = pd.DataFrame(
        {
            "customer_id": _labels("C", b.customer[idx] + 1, 5),
            "event_type": _take(np.array(EVENT_TYPES), b.kind[idx].astype(np.int64)),
            "timestamp": pd.Timestamp(start) + pd.to_timedelta(seconds[sort], unit="s"),
            "item_id": _take(catalog["item_id"].to_numpy(dtype=object), item),
            "quantity": b.quantity[idx],
            "price": np.where(item >= 0, w.item_price[np.maximum(item, 0)], np.nan),
            "order_id": _labels("O", np.where(b.order[idx] >= 0, b.order[idx] + 1, -1), 6),
            "properties": pd.arrays.ArrowStringArray(pa.array(b.props[idx], type=pa.string())),
            "event_id": _labels("E", np.arange(1, len(idx) + 1), 7),
        }
    )
    events["timestamp"] = events["timestamp"].astype("datetime64[ns]")
    return events


def generate_events(
    customers: int, items: int, days: int, seed: int = 7, start: str = "2025-01-01"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events in the ``events`` file format, sorted by time; the item catalogue)."""
    if customers < 1 or items < 1 or days < 1:
        raise ValueError("customers, items and days must each be at least 1")
    rng = np.random.default_rng(seed)
    world, catalog = _world(rng, customers, items, days)
    order_blocks, lines = _orders(world, customers)
    blocks = [
        *order_blocks,
        *_browsing(world, customers),
        *_returns_and_surveys(world, lines, customers),
        *_marketing(world, customers),
    ]
    return _assemble(world, blocks, catalog, start), catalog


def write_events(events: pd.DataFrame, path: Path | str) -> None:
    """Write events as ``.csv``, ``.csv.gz`` (byte-for-byte reproducible) or ``.parquet``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith(".parquet"):
        events.to_parquet(path, index=False)
    elif name.endswith(".csv.gz"):
        events.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    elif name.endswith(".csv"):
        events.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: unknown extension; use .csv, .csv.gz or .parquet")

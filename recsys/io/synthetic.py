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

import gzip
import io
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.io.synthetic_world import (
    CATEGORY_NOUNS,
    EVENT_CODE,
    MINUTE,
    OFFERS,
    Block,
    ShopItems,
    World,
    draw_items,
    draw_world,
    make_block,
)
from recsys.schema import EVENT_TYPES

_T = EVENT_CODE
_block = make_block
#: Customers drawn at once by :func:`stream_events` (memory is bounded by one chunk).
CHUNK_CUSTOMERS: Final[int] = 20_000


#: category -> (price level, product nouns).
def _hour(rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
    """Move each time into the shop's day: 07:00-23:00, busiest early afternoon."""
    hour = np.clip(rng.normal(14.0, 3.5, len(day)), 7.0, 23.0)
    return np.floor(day) + hour / 24.0


def _orders(w: World, customers: int) -> tuple[list[Block], dict[str, np.ndarray]]:
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


def _nouns(w: World, items: np.ndarray) -> np.ndarray:
    names = list(CATEGORY_NOUNS)
    nouns = np.array([CATEGORY_NOUNS[n][1][0].lower() for n in names], dtype=object)
    return nouns[w.item_category[items]]


def _json(key: str, values: np.ndarray) -> np.ndarray:
    """``{"key": "value"}`` for plain values (no quotes or backslashes in them)."""
    return '{"' + key + '": "' + np.asarray(values).astype(str).astype(object) + '"}'


def _browsing(w: World, customers: int) -> list[Block]:
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


def _returns_and_surveys(w: World, lines: dict[str, np.ndarray], customers: int) -> list[Block]:
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
) -> Block:
    text = np.asarray(score).astype(np.int64).astype(str).astype(object)
    props = '{"metric": "' + metric + '", "score": ' + text + "}"
    return _block(customer, _T["survey"], day, order=order, props=props)


def _marketing(w: World, customers: int) -> list[Block]:
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


@dataclass(frozen=True)
class _Offsets:
    """Where a chunk's numbering starts: customers, orders and events of the chunks before."""

    customer: int = 0
    order: int = 0
    event: int = 0


def _assemble(
    w: World, blocks: list[Block], catalog: pd.DataFrame, start: str, at: _Offsets
) -> tuple[pd.DataFrame, int]:
    """(the chunk's events sorted by time, the number of orders it used)."""
    fields = Block.__dataclass_fields__
    b = Block(*(np.concatenate([getattr(x, f) for x in blocks]) for f in fields))
    keep = (b.day >= 0) & (b.day < w.days)
    seconds = np.round(b.day[keep] * 86400).astype(np.int64)
    sort = np.argsort(seconds, kind="stable")
    idx = np.flatnonzero(keep)[sort]
    item = b.item[idx]
    order = b.order[idx]
    events = pd.DataFrame(
        {
            "customer_id": _labels("C", b.customer[idx] + 1 + at.customer, 5),
            "event_type": _take(np.array(EVENT_TYPES), b.kind[idx].astype(np.int64)),
            "timestamp": pd.Timestamp(start) + pd.to_timedelta(seconds[sort], unit="s"),
            "item_id": _take(catalog["item_id"].to_numpy(dtype=object), item),
            "quantity": b.quantity[idx],
            "price": np.where(item >= 0, w.item_price[np.maximum(item, 0)], np.nan),
            "order_id": _labels("O", np.where(order >= 0, order + 1 + at.order, -1), 6),
            "properties": pd.arrays.ArrowStringArray(pa.array(b.props[idx], type=pa.string())),
            "event_id": _labels("E", np.arange(1, len(idx) + 1) + at.event, 7),
        }
    )
    events["timestamp"] = events["timestamp"].astype("datetime64[ns]")
    return events, int(b.order.max()) + 1 if len(b.order) else 0


def _chunk_events(
    rng: np.random.Generator, shop: ShopItems, customers: int, days: int, start: str, at: _Offsets
) -> tuple[pd.DataFrame, int]:
    world = draw_world(rng, shop, customers, days)
    order_blocks, lines = _orders(world, customers)
    blocks = [
        *order_blocks,
        *_browsing(world, customers),
        *_returns_and_surveys(world, lines, customers),
        *_marketing(world, customers),
    ]
    return _assemble(world, blocks, shop.catalog, start, at)


def stream_events(
    customers: int,
    items: int,
    days: int,
    seed: int = 7,
    start: str = "2025-01-01",
    chunk: int = CHUNK_CUSTOMERS,
) -> tuple[pd.DataFrame, Iterator[pd.DataFrame]]:
    """(the item catalogue, the events one chunk of ``chunk`` customers at a time).

    Memory is bounded by one chunk whatever ``customers`` is. Each chunk is sorted by time (the
    loaders sort the whole file); customer, order and event ids are numbered across chunks. The
    first chunk continues the catalogue's random stream and chunk ``n > 0`` draws from
    ``default_rng([seed, n])``, so a shop of at most ``chunk`` customers is exactly the one a
    single draw gives, and the output is deterministic for a seed and a chunk size.
    """
    if customers < 1 or items < 1 or days < 1 or chunk < 1:
        raise ValueError("customers, items, days and chunk must each be at least 1")
    rng = np.random.default_rng(seed)
    shop = draw_items(rng, items)

    def chunks() -> Iterator[pd.DataFrame]:
        at = _Offsets()
        for n, first in enumerate(range(0, customers, chunk)):
            size = min(chunk, customers - first)
            chunk_rng = rng if n == 0 else np.random.default_rng([seed, n])
            events, orders = _chunk_events(chunk_rng, shop, size, days, start, at)
            yield events
            at = _Offsets(at.customer + size, at.order + orders, at.event + len(events))

    return shop.catalog, chunks()


def generate_events(
    customers: int, items: int, days: int, seed: int = 7, start: str = "2025-01-01"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events in the ``events`` file format, sorted by time; the item catalogue), in memory.

    For large shops write them with :func:`recsys.io.synthetic_file.write_synthetic` instead.
    """
    catalog, chunks = stream_events(customers, items, days, seed, start)
    parts = list(chunks)
    if len(parts) == 1:
        return parts[0], catalog
    events = pd.concat(parts, ignore_index=True)
    events = events.iloc[np.argsort(events["timestamp"].to_numpy(), kind="stable")]
    return events.reset_index(drop=True), catalog


def write_events(events: pd.DataFrame, path: Path | str) -> None:
    """Write events as ``.csv``, ``.csv.gz`` (byte-for-byte reproducible) or ``.parquet``."""
    write_chunks(iter([events]), path)


def write_chunks(chunks: Iterator[pd.DataFrame], path: Path | str) -> int:
    """Write frames of events one after the other into one file; returns the number of rows.

    ``.csv`` and ``.csv.gz`` (gzip without a timestamp: byte-for-byte reproducible) get one
    header; ``.parquet`` gets one row group per frame. Only one frame is held at a time.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".parquet", ".csv.gz", ".csv")):
        raise ValueError(f"{path}: unknown extension; use .csv, .csv.gz or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    if name.endswith(".parquet"):
        writer: pq.ParquetWriter | None = None
        try:
            for frame in chunks:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table.cast(writer.schema))
                rows += len(frame)
        finally:
            if writer is not None:
                writer.close()
        return rows
    with ExitStack() as stack:
        raw = stack.enter_context(path.open("wb"))
        out: IO[bytes] = raw
        if name.endswith(".gz"):
            gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="")
            out = cast(IO[bytes], stack.enter_context(gz))
        text = stack.enter_context(io.TextIOWrapper(out, encoding="utf-8", newline=""))
        for frame in chunks:
            frame.to_csv(text, index=False, header=rows == 0)
            rows += len(frame)
    return rows


def write_synthetic(
    path: Path | str, customers: int, items: int, days: int, seed: int = 7
) -> tuple[int, pd.DataFrame]:
    """Draw the shop chunk by chunk straight into ``path``: (events written, the catalogue)."""
    catalog, chunks = stream_events(customers, items, days, seed)
    return write_chunks(chunks, path), catalog

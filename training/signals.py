"""The two-stage ranking's item signals (:class:`recsys.ranking.signals.ItemSignals`), fitted
on the events before ``as_of`` only.

* EASE (``training.baselines.EASE``, L2 :data:`EASE_L2`) over the at most
  :data:`~recsys.ranking.signals.EASE_MAX_ITEMS` products with the most buyers;
* each product's repurchase rhythm: over the customers who bought it in two orders or more,
  the median of ``(last - first) / (orders - 1)`` in days; and its repurchase rate, the share
  of its buyers who bought it in two orders or more;
* the trend prior (the bundle's trending list), ``log1p(price)`` and the recent popularity
  (``Popularity.recent``: the buyers of the 14 days before this build's own cutoff, so each
  of the ranker's time-shifted windows counts them before its cutoff, as serving does).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.ranking.scoring import popularity_prior
from recsys.ranking.signals import EASE_MAX_ITEMS, ItemSignals
from training.baselines import EASE, popular_columns
from training.interactions import index_of, product_purchases
from training.popularity import Popularity

#: EASE's L2 (the baselines' validation picked 300 for discovery on the shared data, 100 for
#: all items; the ranker sees re-orders through its own features).
EASE_L2: Final = 300.0


def rhythm(
    events: pd.DataFrame, customer_ids: np.ndarray, item_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the median days between two orders of one customer (-1 where nobody bought
    it twice) and the share of its buyers with two orders or more (0 without buyers)."""
    rows = product_purchases(events)
    rows = rows.loc[rows["event_type"] == "purchase"]
    n = len(item_ids)
    frame = pd.DataFrame(
        {
            "c": index_of(customer_ids, rows["customer_id"]),
            "i": index_of(item_ids, rows["item_id"]),
            "o": rows["order_id"].astype("string").fillna(rows["timestamp"].astype("string")),
            "t": rows["timestamp"].to_numpy(dtype="datetime64[ns]"),
        }
    )
    frame = frame.loc[(frame["c"] >= 0) & (frame["i"] >= 0)]
    orders = frame.groupby(["c", "i", "o"], sort=False)["t"].min().reset_index()
    pairs = orders.groupby(["c", "i"], sort=False)["t"].agg(["min", "max", "size"])
    item = pairs.index.get_level_values("i").to_numpy(dtype=np.int64)
    size = pairs["size"].to_numpy(dtype=np.float64)
    buyers = np.bincount(item, minlength=n).astype(np.float64)
    repeaters = np.bincount(item, weights=(size >= 2).astype(np.float64), minlength=n)
    rate = np.divide(repeaters, buyers, out=np.zeros(n), where=buyers > 0)
    span = (pairs["max"] - pairs["min"]).dt.total_seconds().to_numpy() / 86_400.0
    again = size >= 2
    gaps = pd.Series(span[again] / (size[again] - 1.0)).groupby(item[again]).median()
    gap = np.full(n, -1.0)
    gap[gaps.index.to_numpy(dtype=np.int64)] = gaps.to_numpy()
    return gap.astype(np.float32), rate.astype(np.float32)


def item_signals(
    events: pd.DataFrame,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
    is_product: np.ndarray,
    prices: np.ndarray,
    orders: sp.csr_matrix,
    popularity: Popularity,
) -> ItemSignals:
    """Every array of :class:`ItemSignals` (``orders``: the customer x item order counts)."""
    n = len(item_ids)
    columns = popular_columns(orders, is_product, EASE_MAX_ITEMS)
    if len(columns):
        ease = EASE.fit(orders, EASE_L2, columns)
        weights = ease.weights
    else:
        weights = np.zeros((0, 0), dtype=np.float32)
    gap, rate = rhythm(events, customer_ids, item_ids)
    price = np.asarray(prices, dtype=np.float64)
    known = np.isfinite(price) & (price > 0)
    log_price = np.where(known, np.log1p(np.where(known, price, 0.0)), -1.0)
    return ItemSignals(
        ease_columns=np.asarray(columns, dtype=np.int64),
        ease_weights=weights.astype(np.float32),
        trend=popularity_prior(popularity.trending, popularity.trending_scores, n),
        repeat_rate=rate,
        gap_days=gap,
        log_price=log_price.astype(np.float32),
        recent=np.asarray(popularity.recent, dtype=np.float32),
    )

"""Best sellers and trending items from purchase rows.

Buyers are integer keys: a known customer's row, or one key per order of a guest checkout.

* **popular**: items ranked by the number of distinct buyers who bought them in the last
  ``window_days`` before ``as_of`` (all history when None); scores scaled so the best is 1.
* **trending**: growth of the last ``trending_days`` over the 4 periods before it, as a
  Poisson-style z-score ``(recent - expected) / sqrt(expected + 1)`` on distinct buyers,
  kept only for items with at least ``min_recent`` recent buyers and positive growth; scaled so
  the best is 1.
* **recent** (the two-stage ranking's ``popularity_recent``): per item, the distinct buyers of
  the :data:`RECENT_DAYS` days before ``as_of`` (``as_of - RECENT_DAYS <= t < as_of``) over
  the top item's count: dense, in [0, 1], all 0 without sales in those days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

BASELINE_PERIODS = 4
#: the days before the cutoff whose buyers make an item's recent popularity
RECENT_DAYS: Final = 14


@dataclass(frozen=True)
class Popularity:
    popular: np.ndarray  # i4 item rows, best first
    popular_scores: np.ndarray  # f4 in (0, 1]
    trending: np.ndarray  # i4 item rows, best first
    trending_scores: np.ndarray  # f4 in (0, 1]
    recent: np.ndarray  # f4 (n_items,) in [0, 1]: recent buyers over the top item's


def _distinct_buyers(
    customers: np.ndarray, items: np.ndarray, mask: np.ndarray, n_items: int
) -> np.ndarray:
    pairs = pd.DataFrame({"c": customers[mask], "i": items[mask]}).drop_duplicates()
    return np.bincount(pairs["i"].to_numpy(dtype=np.int64), minlength=n_items).astype(np.float64)


def _ranked(scores: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(keep & (scores > 0))
    rows = rows[np.lexsort((rows, -scores[rows]))]
    top = scores[rows[0]] if len(rows) else 1.0
    return rows.astype(np.int32), (scores[rows] / top).astype(np.float32)


def _age_days(timestamps: np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
    """f8: days from each timestamp to ``as_of`` (negative after it)."""
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    end = np.datetime64(pd.Timestamp(as_of).as_unit("ns").to_datetime64(), "ns")
    return np.asarray((end - ts) / np.timedelta64(1, "D"), dtype=np.float64)


def recent_popularity(
    customers: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    n_items: int,
    as_of: pd.Timestamp,
    days: float = RECENT_DAYS,
) -> np.ndarray:
    """f4 (n_items,): each item's distinct buyers in ``[as_of - days, as_of)`` over the top
    item's (0 everywhere without a sale there); purchases at or after ``as_of`` never count."""
    customers = np.asarray(customers, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    age = _age_days(timestamps, as_of)
    buyers = _distinct_buyers(customers, items, (age > 0) & (age <= days), n_items)
    top = buyers.max(initial=0.0)
    return (buyers / top if top > 0 else buyers).astype(np.float32)


def compute_popularity(
    customers: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    n_items: int,
    as_of: pd.Timestamp,
    trending_days: int,
    window_days: float | None = None,
    min_recent: int = 3,
    recent_days: float = RECENT_DAYS,
) -> Popularity:
    """``customers`` (buyer keys) and ``items`` (rows) of purchase events; ``timestamps``."""
    customers = np.asarray(customers, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    age_days = _age_days(timestamps, as_of)
    in_window = np.ones(len(items), dtype=bool) if window_days is None else age_days < window_days
    sold = _distinct_buyers(customers, items, in_window, n_items)
    popular, popular_scores = _ranked(sold, np.ones(n_items, dtype=bool))

    recent = _distinct_buyers(customers, items, age_days < trending_days, n_items)
    before = (age_days >= trending_days) & (age_days < trending_days * (1 + BASELINE_PERIODS))
    expected = _distinct_buyers(customers, items, before, n_items) / BASELINE_PERIODS
    growth = (recent - expected) / np.sqrt(expected + 1.0)
    trending, trending_scores = _ranked(growth, recent >= min_recent)
    recent_scores = recent_popularity(customers, items, timestamps, n_items, as_of, recent_days)
    return Popularity(popular, popular_scores, trending, trending_scores, recent_scores)

from __future__ import annotations

import numpy as np
import pandas as pd

from training.popularity import compute_popularity

AS_OF = pd.Timestamp("2024-03-01")


def _days_ago(days: list[float]) -> np.ndarray:
    return np.array([AS_OF - pd.Timedelta(days=d) for d in days], dtype="datetime64[ns]")


def test_best_sellers_count_distinct_buyers_not_repeat_orders() -> None:
    # item 0: one customer ten times; item 1: three customers once
    customers = np.array([0] * 10 + [1, 2, 3])
    items = np.array([0] * 10 + [1, 1, 1])
    pop = compute_popularity(customers, items, _days_ago([50] * 13), 3, AS_OF, trending_days=7)
    assert pop.popular.tolist() == [1, 0]
    assert pop.popular_scores.tolist() == [1.0, np.float32(1 / 3)]


def test_window_only_counts_recent_sales() -> None:
    customers = np.array([1, 2, 3, 4])
    items = np.array([0, 0, 0, 1])
    ts = _days_ago([100, 100, 100, 5])
    pop = compute_popularity(customers, items, ts, 2, AS_OF, trending_days=7, window_days=30)
    assert pop.popular.tolist() == [1]


def test_trending_finds_the_item_whose_recent_buyers_jumped() -> None:
    rng = np.random.default_rng(0)
    # item 0 sells steadily (about 4 buyers a week); item 1 had 1 a week, now 8 this week
    steady = [(c, 0, float(rng.uniform(0, 35))) for c in range(20)]
    jump = [(100 + c, 1, float(rng.uniform(7, 35))) for c in range(4)]
    jump += [(200 + c, 1, float(rng.uniform(0, 6.9))) for c in range(8)]
    c, i, d = zip(*(steady + jump), strict=True)
    pop = compute_popularity(np.array(c), np.array(i), _days_ago(list(d)), 2, AS_OF, 7)
    assert pop.trending[0] == 1
    assert pop.trending_scores[0] == 1.0


def test_no_sales_gives_empty_lists() -> None:
    empty = np.zeros(0, dtype=np.int64)
    pop = compute_popularity(empty, empty, _days_ago([]), 5, AS_OF, trending_days=7)
    assert len(pop.popular) == len(pop.trending) == 0

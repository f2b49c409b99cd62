"""The recent popularity signal (``popularity_recent``) on a hand-made event table: distinct
buyers of the 14 days before the cutoff, over the top item's; nothing at or after the cutoff
and nothing before ``cutoff - 14 days`` counts, and each ranker window counts before its own
cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trainingkit import START, interactions_table, rows_for

from recsys.config import TrainingConfig
from recsys.ranking.signals import ItemSignals
from training.build import BuildOptions, build_bundle
from training.popularity import RECENT_DAYS, recent_popularity
from training.ranker import _window

CUTOFF = pd.Timestamp("2024-03-01")


def _at(days_before: list[float], as_of: pd.Timestamp = CUTOFF) -> np.ndarray:
    return np.array([as_of - pd.Timedelta(days=d) for d in days_before], dtype="datetime64[ns]")


def test_recent_popularity_counts_distinct_buyers_of_the_last_14_days_only() -> None:
    # item 0: customers 1 (twice) and 2 inside the window, customer 3 at its very start
    # item 1: customer 4 inside; customers 5, 6, 7 just before the window; 8, 9 at or after
    #         the cutoff; item 2: only before the window and after the cutoff
    rows = [
        (1, 0, 1.0), (1, 0, 2.0), (2, 0, 13.9), (3, 0, RECENT_DAYS),
        (4, 1, 0.001), (5, 1, 14.01), (6, 1, 20.0), (7, 1, 30.0), (8, 1, 0.0), (9, 1, -3.0),
        (10, 2, 15.0), (11, 2, -1.0),
    ]  # fmt: skip
    c, i, d = (np.array(v) for v in zip(*rows, strict=True))
    recent = recent_popularity(c, i, _at(list(d)), 4, CUTOFF)
    assert recent.dtype == np.float32
    np.testing.assert_array_equal(recent, np.array([1.0, 1 / 3, 0.0, 0.0], dtype=np.float32))
    assert not recent_popularity(c, i, _at(list(d)), 4, CUTOFF - pd.Timedelta(days=40)).any()


def _events() -> pd.DataFrame:
    """X bought by 3 customers on days 0-2, Y by 1 customer on day 30 and 3 on days 50-52,
    Z by 2 customers on day 45; P by one of Y's buyers on day 51."""
    rows: list[dict[str, object]] = []
    plan = [("c1", "X", 0), ("c2", "X", 1), ("c3", "X", 2), ("c4", "Y", 30),
            ("c5", "Z", 45), ("c6", "Z", 45), ("c7", "Y", 50), ("c8", "Y", 51),
            ("c9", "Y", 52), ("c9", "P", 51)]  # fmt: skip
    for n, (customer, item, day) in enumerate(plan):
        rows += rows_for(customer, [item], day, f"o{n}")
    return interactions_table(rows)


def _recent(bundle_signals: dict[str, np.ndarray], item_ids: np.ndarray) -> dict[str, float]:
    recent = ItemSignals.from_arrays(bundle_signals).recent
    return {str(item): float(v) for item, v in zip(item_ids, recent, strict=True)}


def test_the_bundle_counts_recent_buyers_before_its_own_cutoff() -> None:
    events = _events()
    options = BuildOptions(with_features=False, with_churn=False)
    # cutoff day 50 (10:00 on day 50 is after it): Y's day-30 buyer is too old, Z's 2 count;
    # P is not in this bundle (first bought after the cutoff)
    early = build_bundle(events, None, START + pd.Timedelta(days=50), options=options)
    assert _recent(early.signals, early.items.item_ids) == {"X": 0, "Y": 0, "Z": 1}
    # cutoff day 53: Y has 3 buyers (days 50-52), Z 2 of them (day 45 is within 14 days)
    late = build_bundle(events, None, START + pd.Timedelta(days=53), options=options)
    got = _recent(late.signals, late.items.item_ids)
    assert got == pytest.approx({"P": 1 / 3, "X": 0, "Y": 1, "Z": 2 / 3})


def test_each_ranker_window_counts_before_its_own_cutoff() -> None:
    events = _events()
    config = TrainingConfig()
    for day, expected in ((50, {"Z": 1.0}), (53, {"Y": 1.0, "Z": 2 / 3, "P": 1 / 3})):
        window = _window(events, None, START + pd.Timedelta(days=day), config, seed=0)
        signals = window.model.signals
        assert signals is not None
        ids = window.bundle.items.item_ids
        got = {str(ids[r]): float(signals.recent[r]) for r in np.flatnonzero(signals.recent)}
        assert got == pytest.approx(expected)
        best_first = sorted(expected, key=lambda item: -expected[item])
        assert [str(ids[r]) for r in signals.recent_order] == best_first

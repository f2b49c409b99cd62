"""The two-stage ranking's mechanics on a known-answer model: candidates, features, order."""

from __future__ import annotations

import dataclasses

import numpy as np

from recsys.ranking.batch import rank_customer, rank_one
from recsys.ranking.candidates import FEATURES, candidates_for, rank_candidates
from recsys.ranking.scoring import RankingModel, RankingParams
from recsys.ranking.signals import ItemSignals

N = 8


class ByFeature:
    """A ranker that scores by one feature column (a known answer for the order)."""

    def __init__(self, name: str, sign: float = 1.0) -> None:
        self.column, self.sign = FEATURES.index(name), sign

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (self.sign * features[:, self.column]).astype(np.float32)


def signals() -> ItemSignals:
    """EASE over items 0-3: 0 and 1 point at each other, 2 at 3."""
    weights = np.zeros((4, 4), dtype=np.float32)
    weights[0, 1] = weights[1, 0] = 0.6
    weights[2, 3] = 0.4
    return ItemSignals(
        ease_columns=np.arange(4),
        ease_weights=weights,
        trend=np.array([0, 0, 0, 0, 0, 0, 1, 0], dtype=np.float32),
        repeat_rate=np.full(N, 0.5, dtype=np.float32),
        gap_days=np.array([10, -1, 10, 10, 10, 10, 10, 10], dtype=np.float32),
        log_price=np.zeros(N, dtype=np.float32),
        recent=np.array([0, 0, 0, 0, 0.5, 0, 0, 0], dtype=np.float32),
    )


def model(**rankers: object) -> RankingModel:
    """Items 0-3 and 4-7 are two factor directions; neighbours within each half."""
    factors = np.array([[1, 0]] * 4 + [[0, 1]] * 4, dtype=np.float32)
    idx = np.array([[1, 2], [0, 3], [3, 0], [2, 1], [5, 6], [4, 7], [7, 4], [6, 5]], np.int32)
    return RankingModel(
        item_factors=factors,
        neighbour_indices=idx,
        neighbour_scores=np.full((N, 2), 0.5, dtype=np.float32),
        popularity=np.linspace(0.1, 0.8, N).astype(np.float32),
        params=RankingParams(),
        signals=signals(),
        rankers=rankers,  # type: ignore[arg-type]
    )


def customer(context: np.ndarray | None = None) -> tuple:
    """Bought item 0 in 3 orders 20 days ago, item 2 once 5 days ago."""
    items = np.array([0, 2], dtype=np.int64)
    counts = np.array([3.0, 1.0], dtype=np.float32)
    ages = np.array([20.0, 5.0], dtype=np.float32)
    vector = np.array([1.0, 0.0], dtype=np.float32)
    if context is None:
        return (vector, items, counts, ages)
    return (vector, items, counts, ages, context, np.ones(context.size, dtype=np.float32))


def test_ease_scores_sum_the_rows_of_the_bought_items() -> None:
    scores = signals().ease_scores(np.array([0, 2, 2, 7]))  # 7 is outside the EASE columns
    np.testing.assert_allclose(scores, [0, 0.6, 0, 0.4, 0, 0, 0, 0])


def test_candidates_skip_blocked_rows_and_keep_own_items_and_the_blends_best() -> None:
    m = model()
    blocked = np.zeros(N, dtype=bool)
    blocked[[3, 7]] = True
    found = candidates_for(m, signals(), customer(), 2, blocked)
    assert not blocked[found.rows].any()
    assert {0, 2} <= set(found.rows.tolist())
    assert set(rank_one(m, customer(), 2, blocked).rows.tolist()) <= set(found.rows.tolist())
    assert np.all(np.diff(found.rows) > 0)


def test_features_carry_the_customers_orders_recency_and_rhythm() -> None:
    found = candidates_for(model(), signals(), customer(), 3, None)
    f = {name: found.features[:, j] for j, name in enumerate(FEATURES)}
    at = {row: n for n, row in enumerate(found.rows.tolist())}
    assert f["own_orders"][at[0]] == 3 and f["own_orders"][at[2]] == 1
    assert f["own_days_since"][at[0]] == 20 and f["own_days_since"][at[5]] == -1
    assert f["own_rhythm"][at[0]] == 2.0  # 20 days against a 10-day gap
    assert f["own_rhythm"][at[1]] == -1  # never bought
    assert f["ease"][at[1]] == np.float32(0.6) and f["ease_rank"][at[1]] == 0
    assert np.all(f["customer_items"] == 2) and np.all(f["customer_recency"] == 5)


def test_the_ranker_orders_the_candidates_and_reasons_stay_the_blends() -> None:
    m = model(all=ByFeature("popularity"))
    top = rank_customer(m, customer(), 4, None, "all")
    assert top.rows.tolist() == sorted(top.rows.tolist(), reverse=True)  # popularity grows
    assert top.rows[0] == 7
    assert set(top.reasons) <= {"recommended_for_you", "because_you_bought_similar",
                                "buy_again", "popular"}  # fmt: skip
    assert np.all(np.diff(top.scores) <= 0)


def test_a_task_without_a_ranker_and_a_cold_customer_get_the_blend() -> None:
    m = model(all=ByFeature("popularity"))
    blend = rank_one(m, customer(), 4, None)
    np.testing.assert_array_equal(rank_customer(m, customer(), 4, None, "discovery").rows,
                                  blend.rows)  # fmt: skip
    cold = (None, np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))
    np.testing.assert_array_equal(rank_customer(m, cold, 4, None, "all").rows,
                                  rank_one(m, cold, 4, None).rows)  # fmt: skip
    no_signals = dataclasses.replace(m, signals=None)
    assert no_signals.ranker_for("all") is None


def test_the_page_context_lifts_its_neighbours_over_the_ranker() -> None:
    m = model(all=ByFeature("popularity", sign=-1.0))  # least popular first: 0, 1, 2...
    ranker = m.rankers["all"]
    plain = rank_candidates(m, signals(), ranker, customer(), N, None).rows.tolist()
    viewed = customer(np.array([5, 6]))  # both have 4 and 7 among their neighbours
    shaped = rank_candidates(m, signals(), ranker, viewed, N, None)
    assert plain[:3] == [0, 1, 2] and plain[-1] == 7
    assert shaped.rows[0] == 4 and shaped.reasons[0] == "similar_to_viewed"
    assert shaped.rows.tolist().index(7) < plain.index(7)


def test_the_recent_best_sellers_are_candidates_and_carry_their_recent_popularity() -> None:
    """No vector (no ``cf``), a history in the first half: the other generators reach items
    0-3, the best seller 7 and the trending 6; items 4 and 5 come in as recent best sellers
    only, and the last feature column is each candidate's recent popularity."""
    only_seven = np.zeros(N, dtype=np.float32)
    only_seven[7] = 0.9
    no_vector = (None, *customer()[1:])
    without = dataclasses.replace(signals(), recent=np.zeros(N, dtype=np.float32))
    m = dataclasses.replace(model(), popularity=only_seven, signals=without)
    assert candidates_for(m, without, no_vector, 1, None).rows.tolist() == [0, 1, 2, 3, 6, 7]
    with_recent = dataclasses.replace(signals(), recent=np.float32([0, 0, 0, 0, 0.5, 1, 0, 0]))
    m = dataclasses.replace(m, signals=with_recent)
    found = candidates_for(m, with_recent, no_vector, 1, None)
    assert found.rows.tolist() == list(range(N))
    column = found.features[:, FEATURES.index("popularity_recent")]
    np.testing.assert_array_equal(column, with_recent.recent[found.rows])
    blocked = np.zeros(N, dtype=bool)
    blocked[5] = True
    assert 5 not in candidates_for(m, with_recent, no_vector, 1, blocked).rows.tolist()

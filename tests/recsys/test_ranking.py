from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys.ranking import (
    REASON_CODES,
    RankingModel,
    RankingParams,
    popularity_prior,
    repeat_scores,
    score_items,
    top_k,
)

N_ITEMS = 6
EMPTY_I = np.zeros(0, dtype=np.int32)
EMPTY_F = np.zeros(0, dtype=np.float32)


def model(**params: float) -> RankingModel:
    """Items 0-2 and 3-5 are two factor directions; 0's neighbours are 1 then 2, and so on."""
    factors = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=np.float32)
    nb_idx = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, -1]], dtype=np.int32)
    nb_sc = np.array([[0.9, 0.5], [0.9, 0.4], [0.5, 0.4], [0.8, 0.3], [0.8, 0.2], [0.3, 0]])
    return RankingModel(
        item_factors=factors,
        neighbour_indices=nb_idx,
        neighbour_scores=nb_sc.astype(np.float32),
        popularity=np.array([0.1, 0.2, 0.3, 1.0, 0.5, 0.0], dtype=np.float32),
        params=RankingParams(**params),
    )


def test_top_k_orders_best_first_and_never_returns_blocked_rows() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3], dtype=np.float32)
    blocked = np.array([False, True, False, False, False])
    rows, values = top_k(scores, 3, blocked)
    assert rows.tolist() == [3, 2, 4]
    assert values.tolist() == pytest.approx([0.7, 0.5, 0.3])
    assert rows.dtype == np.int32


def test_top_k_returns_fewer_rows_when_fewer_are_allowed() -> None:
    scores = np.array([0.1, 0.9, 0.5], dtype=np.float32)
    rows, _ = top_k(scores, 10, np.array([True, False, True]))
    assert rows.tolist() == [1]
    rows, _ = top_k(scores, 10, np.ones(3, dtype=bool))
    assert rows.size == 0
    assert top_k(scores, 0)[0].size == 0


def test_top_k_breaks_ties_by_row_and_matches_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 20, size=500).astype(np.float32)
    blocked = rng.random(500) < 0.3
    rows, values = top_k(scores, 50, blocked)
    assert not blocked[rows].any()
    assert np.all(np.diff(values) <= 0)
    allowed = np.flatnonzero(~blocked)
    expected = allowed[np.lexsort((allowed, -scores[allowed]))][:50]
    # the same multiset of scores as a full sort; equal scores in row order
    assert values.tolist() == scores[expected].tolist()
    for v in np.unique(values):
        tied = rows[values == v]
        assert tied.tolist() == sorted(tied.tolist())


def test_cold_start_is_the_popularity_prior() -> None:
    s = score_items(model(popularity_weight=0.0), None, EMPTY_I, EMPTY_F, EMPTY_F)
    assert np.argsort(-s.total, kind="stable").tolist() == [3, 4, 2, 1, 0, 5]
    assert s.reasons(np.array([3])) == ["popular"]


def test_context_items_pull_in_their_neighbours() -> None:
    s = score_items(
        model(),
        None,
        EMPTY_I,
        EMPTY_F,
        EMPTY_F,
        context_items=np.array([0]),
        context_weights=np.array([1.0]),
    )
    rows, _ = top_k(s.total, 2, blocked=np.eye(1, N_ITEMS, 0, dtype=bool)[0])
    assert rows.tolist() == [1, 3]  # 1 is 0's best neighbour; 3 is the best seller
    assert s.reasons(rows) == ["similar_to_viewed", "popular"]


def test_cf_ranks_the_customers_factor_direction_first() -> None:
    s = score_items(model(), np.array([0.0, 1.0]), EMPTY_I, EMPTY_F, EMPTY_F)
    rows, _ = top_k(s.total, 3)
    assert set(rows.tolist()) == {3, 4, 5}
    assert s.reasons(rows)[0] == "recommended_for_you"


def test_a_frequently_reordered_item_comes_first_when_bought_items_are_allowed() -> None:
    # the customer's factors point at items 3-5, but item 0 was ordered 12 times, lately
    s = score_items(
        model(),
        np.array([0.0, 1.0]),
        history_items=np.array([0, 4]),
        history_counts=np.array([12.0, 1.0]),
        history_age_days=np.array([3.0, 200.0]),
    )
    rows, _ = top_k(s.total, 3)
    assert rows[0] == 0
    assert s.reasons(rows[:1]) == ["buy_again"]
    # excluded (exclude_purchased), the bought items never come back
    blocked = np.zeros(N_ITEMS, dtype=bool)
    blocked[[0, 4]] = True
    rows, _ = top_k(s.total, 3, blocked)
    assert 0 not in rows and 4 not in rows


def test_repeat_scores_grow_with_orders_and_fade_with_age() -> None:
    r = repeat_scores(np.array([1, 5, 5]), np.array([0, 0, 60]), half_life_days=60)
    assert r[1] > r[0]
    assert r[2] == pytest.approx(r[1] / 2)


def test_knn_from_history_recommends_neighbours_of_bought_items() -> None:
    s = score_items(
        model(cf_weight=0.0, repeat_weight=0.0, popularity_weight=0.0, knn_weight=1.0),
        None,
        history_items=np.array([3]),
        history_counts=np.array([1.0]),
        history_age_days=np.array([1.0]),
    )
    blocked = np.zeros(N_ITEMS, dtype=bool)
    blocked[3] = True
    rows, _ = top_k(s.total, 2, blocked)
    assert rows.tolist() == [4, 5]
    assert s.total.max() == pytest.approx(1.0)  # scaled so the best item gets the weight
    assert s.reasons(rows) == ["because_you_bought_similar"] * 2


def test_reasons_name_known_codes_and_accept_no_rows() -> None:
    s = score_items(model(), np.array([1.0, 0.0]), EMPTY_I, EMPTY_F, EMPTY_F)
    assert set(s.reasons(np.arange(N_ITEMS))) <= set(REASON_CODES)
    assert s.reasons(np.zeros(0, dtype=np.int32)) == []


def test_params_round_trip_through_a_manifest_dict_and_ignore_unknown_keys() -> None:
    params = RankingParams(cf_weight=0.7, repeat_weight=2.0)
    stored = dataclasses.asdict(params)
    assert RankingParams.from_dict(stored) == params
    assert RankingParams.from_dict({**stored, "future_knob": 3}) == params
    assert RankingParams.from_dict({}) == RankingParams()
    assert RankingParams.from_dict(None) == RankingParams()


def test_popularity_prior_is_dense_and_scaled_to_one() -> None:
    prior = popularity_prior(np.array([2, 0]), np.array([4.0, 2.0]), 4)
    assert prior.tolist() == [0.5, 0.0, 1.0, 0.0]
    assert prior.dtype == np.float32

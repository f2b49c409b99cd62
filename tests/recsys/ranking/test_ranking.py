from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys.ranking.batch import (
    BLOCK_VALUES,
    TopItems,
    rank_items_batch,
    rank_one,
    score_items_batch,
)
from recsys.ranking.customer_batch import CustomerBatch
from recsys.ranking.scoring import (
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


# -- many customers at once ------------------------------------------------------------------


def random_model(
    rng: np.random.Generator, n_items: int = 600, factors: int = 16, **params: float
) -> RankingModel:
    """A model with the awkward cases: zero factor rows, duplicate factor rows (exact cf ties),
    rows a rounding apart (near ties), padded neighbour lists, a prior with zeros and ties."""
    item_factors = rng.normal(0, 0.3, (n_items, factors)).astype(np.float32)
    item_factors[: n_items // 20] = 0.0
    item_factors[n_items // 20 : n_items // 10] = item_factors[n_items // 10 : 3 * n_items // 20]
    near = slice(n_items // 5, n_items // 4)
    item_factors[near] = item_factors[n_items // 4 : n_items // 4 + n_items // 20] + np.float32(
        1e-7
    ) * rng.standard_normal((n_items // 20, factors)).astype(np.float32)
    k = 8
    neighbours = np.stack([rng.choice(n_items, k, replace=False) for _ in range(n_items)])
    neighbours[rng.random((n_items, k)) < 0.15] = -1
    scores = np.where(neighbours >= 0, rng.random((n_items, k)), 0.0).astype(np.float32)
    popularity = np.round(rng.random(n_items), 1).astype(np.float32)
    popularity[rng.random(n_items) < 0.3] = 0.0
    return RankingModel(
        item_factors=item_factors,
        neighbour_indices=neighbours.astype(np.int32),
        neighbour_scores=scores,
        popularity=popularity,
        params=RankingParams(**params),
    )


def random_customers(
    rng: np.random.Generator, model: RankingModel, n: int, user_vectors: np.ndarray | None = None
) -> CustomerBatch:
    """Customers with and without vectors (some all-zero), histories (some empty, some with an
    item twice: a live purchase of a batch item) and page contexts (some empty)."""
    factors = model.item_factors.shape[1]
    vectors: list[np.ndarray | None] = []
    histories, contexts = [], []
    for i in range(n):
        kind = i % 5
        if user_vectors is not None:
            vectors.append(user_vectors[i % len(user_vectors)])
        elif kind == 0:
            vectors.append(None)
        elif kind == 1:
            vectors.append(np.zeros(factors, dtype=np.float32))
        else:
            vectors.append(rng.normal(0, 0.5, factors).astype(np.float32))
        size = 0 if i % 7 == 0 else int(rng.integers(1, 40))
        items = rng.integers(0, model.n_items, size)
        if size > 2:
            items[-1] = items[0]
        histories.append(
            (
                items,
                rng.integers(1, 6, size).astype(np.float32),
                (rng.random(size) * 300).astype(np.float32),
            )
        )
        views = rng.integers(0, model.n_items, int(rng.integers(0, 4)))
        contexts.append((views, (0.8 ** np.arange(views.size)).astype(np.float32)))
    return CustomerBatch.build(factors, vectors, histories, contexts)


def assert_ranked_alike(batch: list[TopItems], single: list[TopItems]) -> None:
    assert len(batch) == len(single)
    for i, (got, expected) in enumerate(zip(batch, single, strict=True)):
        assert got.rows.tolist() == expected.rows.tolist(), i
        assert got.reasons == expected.reasons, i
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5, atol=1e-6)
        assert got.rows.dtype == np.int32


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"knn_weight": 1.0, "repeat_weight": 0.0},
        {"cf_weight": 0.0, "popularity_weight": 0.0},
        {"context_weight": 0.0, "knn_weight": 0.0},
    ],
)
def test_a_batch_ranks_every_customer_exactly_as_the_single_path(params: dict) -> None:
    rng = np.random.default_rng(11)
    model = random_model(rng, **params)
    customers = random_customers(rng, model, 1000)  # several blocks
    assert len(customers) > BLOCK_VALUES // model.n_items
    blocked = rng.random(model.n_items) < 0.1
    own = [rng.integers(0, model.n_items, int(rng.integers(0, 3))) for _ in range(1000)]
    for k in (1, 4, 10):
        got = rank_items_batch(model, customers, k, blocked, own)
        masks = []
        for extra in own:
            mask = blocked.copy()
            mask[extra] = True
            masks.append(mask)
        expected = [rank_one(model, customers.customer(i), k, masks[i]) for i in range(1000)]
        assert_ranked_alike(got, expected)


def test_near_ties_at_the_cut_are_settled_as_the_single_path_settles_them() -> None:
    # every customer's favourite items are near copies of each other (a rounding apart) or
    # exact copies, so the matrix product's last bits decide: those customers go the single way
    rng = np.random.default_rng(5)
    model = random_model(rng, n_items=300)
    twins = model.item_factors[300 // 5 : 300 // 4]
    customers = random_customers(rng, model, 200, user_vectors=twins * 3.0)
    got = rank_items_batch(model, customers, 4)
    assert_ranked_alike(got, [rank_one(model, customers.customer(i), 4, None) for i in range(200)])


def test_batch_totals_equal_the_single_path_and_without_cf_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for params in ({}, {"cf_weight": 0.0}):
        model = random_model(rng, n_items=200, **params)
        customers = random_customers(rng, model, 60)
        totals = score_items_batch(model, customers).total
        for i in range(60):
            single = score_items(model, *customers.customer(i)).total
            if params:
                assert totals[i].tobytes() == single.tobytes(), i
            else:
                np.testing.assert_allclose(totals[i], single, rtol=1e-5, atol=1e-6)


def test_a_cold_customer_in_a_batch_gets_popularity_at_full_weight() -> None:
    m = model()
    customers = CustomerBatch.build(
        2,
        [None, np.zeros(2, dtype=np.float32), np.array([0.0, 1.0])],
        [(EMPTY_I, EMPTY_F, EMPTY_F)] * 3,
    )
    cold, zero, personal = rank_items_batch(m, customers, 3)
    assert cold.rows.tolist() == [3, 4, 2] == zero.rows.tolist()  # the prior's order
    assert cold.scores.tolist() == pytest.approx([1.0, 0.5, 0.3])
    assert cold.reasons == ["popular"] * 3
    assert set(personal.rows.tolist()) == {3, 4, 5}
    assert personal.reasons[0] == "recommended_for_you"


def test_a_batch_returns_fewer_items_when_fewer_are_allowed() -> None:
    m = model()
    customers = CustomerBatch.build(
        2, [np.array([1.0, 0.0])] * 2, [(EMPTY_I, EMPTY_F, EMPTY_F)] * 2
    )
    blocked = np.array([True, False, True, True, True, True])
    first, second = rank_items_batch(m, customers, 4, blocked, [np.array([1]), np.array([])])
    assert first.rows.size == 0 and first.reasons == []
    assert second.rows.tolist() == [1]
    assert rank_items_batch(m, customers, 0)[0].rows.size == 0


def test_a_batchs_results_survive_the_next_batch() -> None:
    rng = np.random.default_rng(2)
    m = random_model(rng, n_items=100)
    first = rank_items_batch(m, random_customers(rng, m, 20), 5)
    kept = [(t.rows.copy(), t.scores.copy()) for t in first]
    rank_items_batch(m, random_customers(rng, m, 20), 5)
    for top, (rows, scores) in zip(first, kept, strict=True):
        assert top.rows.tolist() == rows.tolist() and top.scores.tolist() == scores.tolist()

"""Fold-in: the ALS user step for one customer, against implicit's own and on known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.ranking.foldin import FoldIn

N_CLUSTERS = 4
ITEMS_PER_CLUSTER = 10
USERS_PER_CLUSTER = 30


def clustered_purchases(seed: int = 3) -> sp.csr_matrix:
    """Users of cluster k buy only items of cluster k (a block-diagonal matrix, with holes)."""
    rng = np.random.default_rng(seed)
    n_users = N_CLUSTERS * USERS_PER_CLUSTER
    n_items = N_CLUSTERS * ITEMS_PER_CLUSTER
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    for user in range(n_users):
        cluster = user // USERS_PER_CLUSTER
        items = cluster * ITEMS_PER_CLUSTER + rng.choice(ITEMS_PER_CLUSTER, 6, replace=False)
        dense[user, items] = rng.integers(1, 4, size=items.size)
    return sp.csr_matrix(dense)


@pytest.fixture(scope="module")
def trained() -> tuple[object, sp.csr_matrix]:
    from implicit.als import AlternatingLeastSquares

    purchases = clustered_purchases()
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=8, regularization=0.05, alpha=2.0, iterations=15, random_state=1, use_gpu=False
        )
        model.fit(purchases, show_progress=False)
    return model, purchases


def test_user_vector_equals_implicits_recalculate_user(trained) -> None:
    model, purchases = trained
    fold = FoldIn.from_factors(model.item_factors, model.regularization, model.alpha)
    for user in (0, 45, 100):
        row = purchases[user]
        ours = fold.user_vector(row.indices, row.data)
        theirs = model.recalculate_user(user, row)
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)
        assert ours.dtype == np.float32


def test_new_customer_buying_from_one_cluster_is_recommended_that_cluster(trained) -> None:
    model, _ = trained
    fold = FoldIn.from_factors(model.item_factors, model.regularization, model.alpha)
    cluster = 2
    bought = np.array([cluster * ITEMS_PER_CLUSTER + 1, cluster * ITEMS_PER_CLUSTER + 4])
    vector = fold.user_vector(bought, np.ones(bought.size))
    scores = model.item_factors @ vector
    scores[bought] = -np.inf
    top = np.argsort(-scores)[:5]
    assert set(top // ITEMS_PER_CLUSTER) == {cluster}


def test_heavier_weight_pulls_the_vector_towards_that_item(trained) -> None:
    model, _ = trained
    fold = FoldIn.from_factors(model.item_factors, model.regularization, model.alpha)
    a, b = 3, 3 + 2 * ITEMS_PER_CLUSTER  # items of clusters 0 and 2
    towards_a = fold.user_vector(np.array([a, b]), np.array([5.0, 1.0]))
    towards_b = fold.user_vector(np.array([a, b]), np.array([1.0, 5.0]))
    y = model.item_factors
    assert y[a] @ towards_a > y[b] @ towards_a
    assert y[b] @ towards_b > y[a] @ towards_b


def test_no_items_or_no_positive_weights_gives_the_zero_vector() -> None:
    fold = FoldIn.from_factors(np.eye(3, dtype=np.float32), 0.1, 2.0)
    assert not fold.user_vector(np.array([], dtype=np.int64), np.array([])).any()
    assert not fold.user_vector(np.array([1]), np.array([0.0])).any()


def test_rows_out_of_range_are_refused() -> None:
    fold = FoldIn.from_factors(np.eye(3, dtype=np.float32), 0.1, 2.0)
    with pytest.raises(ValueError, match="out of range"):
        fold.user_vector(np.array([3]), np.array([1.0]))


@pytest.mark.parametrize("n_items", [1, 3, 8, 9, 30])
def test_few_items_through_the_inverse_equal_the_direct_solve(n_items: int) -> None:
    """Customers with up to f/2 items take the Woodbury path: the same vector as solving
    ``(YᵀY + λI + Yᵀ diag(c - 1) Y) u = Yᵀ c`` directly, also where ``c - 1`` is 0 or negative."""
    rng = np.random.default_rng(n_items)
    factors = rng.standard_normal((60, 16)).astype(np.float32)
    fold = FoldIn.from_factors(factors, 0.5, 2.0)
    assert fold.woodbury_max_items == 8
    rows = rng.choice(60, n_items, replace=False)
    weights = rng.choice([0.25, 0.5, 1.0, 3.0], n_items)  # c = 0.5, 1, 2, 6
    y = factors[rows].astype(np.float64)
    confidence = 2.0 * weights
    direct = np.linalg.solve(fold.gram + (y.T * (confidence - 1.0)) @ y, confidence @ y)
    ours = fold.user_vectors([(rows, weights), (rows[:1], weights[:1])])[0]
    np.testing.assert_allclose(ours, direct, rtol=1e-4, atol=1e-5)
    assert ours.dtype == np.float32


@pytest.mark.parametrize("n_items", [1, 5, 8, 9, 40])
def test_cholesky_solves_equal_the_general_solve(n_items: int) -> None:
    """With every ``c >= 1`` (ALS weights) both paths solve by LAPACK's Cholesky (``dposv``):
    the Woodbury path's symmetric system and the direct path's ``f x f`` one. The vector is
    the general (LU) solve's within float tolerance, and the direct path's is the one
    ``scipy.linalg.cho_factor``/``cho_solve`` give, bit for bit."""
    from scipy import linalg
    from scipy.linalg import blas

    rng = np.random.default_rng(100 + n_items)
    factors = rng.standard_normal((80, 16)).astype(np.float32)
    fold = FoldIn.from_factors(factors, 0.5, 2.0)
    rows = rng.choice(80, n_items, replace=False)
    weights = rng.integers(1, 5, n_items).astype(np.float64)
    confidence = 2.0 * weights
    y = factors[rows]
    general = np.linalg.solve(
        fold.gram + (y.T.astype(np.float64) * (confidence - 1.0)) @ y, confidence @ y
    )
    ours = fold.user_vector(rows, weights)
    np.testing.assert_allclose(ours, general, rtol=1e-5, atol=1e-6)
    if n_items > fold.woodbury_max_items:
        scaled = y * np.sqrt(confidence - 1.0).astype(np.float32)[:, None]
        factor = linalg.cho_factor(fold.gram + blas.ssyrk(1.0, scaled.T, trans=0), lower=False)
        before = linalg.cho_solve(factor, confidence @ y.astype(np.float64))
        assert np.array_equal(ours, before.astype(np.float32))

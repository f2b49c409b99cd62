from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from trainingkit import START, clustered_interactions, rows_for

from recsys.schema import INTERACTION_COLUMNS
from training.baselines import (
    EASE,
    buy_again_popular_scores,
    order_weights,
    popular_columns,
    top_k_rows,
    tune_baselines,
)
from training.interactions import sorted_ids

SPLIT = START + pd.Timedelta(days=61)


def test_ease_is_the_closed_form_with_a_zero_diagonal() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 0, 0]], dtype=float))
    model = EASE.fit(x, 2.0, np.arange(3))
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(3))
    expected = np.eye(3) - p / np.diag(p)
    np.testing.assert_allclose(model.weights, expected, atol=1e-6)
    assert np.all(np.diag(model.weights) == 0.0)


def test_ease_recommends_the_customers_own_cluster() -> None:
    frame = clustered_interactions()
    customers, items = sorted_ids(frame["customer_id"]), sorted_ids(frame["item_id"])
    x = order_weights(frame, customers, items, SPLIT)
    products = items != "POST"
    model = EASE.fit(x, 1.0, popular_columns(x, products, 100))
    probe = int(np.flatnonzero(customers == "probe")[0])
    scores = model.scores(x[[probe]], len(items), np.zeros(len(items)))
    scores[:, ~products] = -np.inf
    scores[0, x[probe].indices] = -np.inf  # discovery: nothing already bought
    top = {items[i] for i in top_k_rows(scores, 3)[0]}
    assert top == {"A3", "A4", "A5"}


def test_ease_restricted_to_the_most_bought_items_ranks_the_rest_after() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 0, 1], [1, 1, 0, 0], [1, 0, 1, 0]], dtype=float))
    cols = popular_columns(x, np.ones(4, dtype=bool), 2)
    assert cols.tolist() == [0, 1]
    scores = EASE.fit(x, 1.0, cols).scores(x[[2]], 4, np.array([0.0, 0.0, 1.0, 0.5]))
    assert scores[0, 3] < scores[0, :2].min()


def test_buy_again_popular_puts_own_items_first_by_weight_then_best_sellers() -> None:
    own = sp.csr_matrix(np.array([[0.0, 0.2, 0.0, 1.5]]))
    prior = np.array([1.0, 0.0, 0.4, 0.1])
    assert top_k_rows(buy_again_popular_scores(own, prior), 4)[0].tolist() == [3, 1, 0, 2]


def test_recency_weighted_counts_halve_per_half_life() -> None:
    rows = rows_for("c", ["X"], 0, "o1") + rows_for("c", ["X"], 10, "o2")
    frame = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    end = START + pd.Timedelta(days=20, hours=10)
    w = order_weights(frame, np.array(["c"]), np.array(["X"]), end, half_life_days=10.0)
    assert w[0, 0] == 0.25 + 0.5
    assert order_weights(frame, np.array(["c"]), np.array(["X"]), end)[0, 0] == 2.0


def test_tuning_reads_nothing_at_or_after_the_split() -> None:
    frame = clustered_interactions()
    customers, items = sorted_ids(frame["customer_id"]), sorted_ids(frame["item_id"])
    products = items != "POST"
    pop = np.linspace(1.0, 0.0, len(items))
    args = (customers, items, products, pop, SPLIT)
    kwargs = {"valid_days": 20, "l2_grid": (1.0, 10.0), "half_life_grid": (10.0, 60.0)}
    tuned = tune_baselines(frame, *args, **kwargs)
    future = pd.DataFrame(rows_for("probe", ["A3", "B2"], 70, "late"), columns=frame.columns)
    later = pd.concat([frame, future.astype(frame.dtypes.to_dict())], ignore_index=True)
    again = tune_baselines(later, *args, **kwargs)
    assert again.tuning == tuned.tuning
    for task in ("all", "discovery"):
        np.testing.assert_array_equal(again.ease[task].weights, tuned.ease[task].weights)
        assert tuned.ease[task].l2 in (1.0, 10.0)
    assert tuned.half_life_days in (10.0, 60.0)

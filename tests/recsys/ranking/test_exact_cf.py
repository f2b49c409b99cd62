"""Blocked exact collaborative scores: bit for bit each customer's own matrix-vector product."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking.exact_cf import ITEM_CHUNK, exact_cf_rows, exact_cf_scores


def _per_customer(item_factors: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    out = np.empty((vectors.shape[0], item_factors.shape[0]), dtype=np.float32)
    for i, vector in enumerate(vectors):
        out[i] = item_factors @ np.asarray(vector, dtype=np.float32)
    return out


@pytest.mark.parametrize(
    ("n_items", "factors", "customers"),
    [
        (1, 8, 3),
        (ITEM_CHUNK - 1, 64, 5),
        (ITEM_CHUNK, 64, 2),
        (ITEM_CHUNK + 1, 64, 7),  # a one-row tail
        (2 * ITEM_CHUNK + 1, 32, 3),
        (3 * ITEM_CHUNK + 37, 128, 33),
        (5003, 17, 4),  # a factor count no kernel's lane width divides
    ],
)
def test_random_factors_score_bit_for_bit_as_one_customer_at_a_time(
    n_items: int, factors: int, customers: int
) -> None:
    rng = np.random.default_rng(n_items + factors)
    y = (rng.standard_normal((n_items, factors)) * 0.1).astype(np.float32)
    u = (rng.standard_normal((customers, factors)) * 0.5).astype(np.float32)
    assert np.array_equal(exact_cf_scores(y, u), _per_customer(y, u))
    # a block of one, and one customer inside a bigger block, give the same row
    assert np.array_equal(exact_cf_scores(y, u[:1])[0], y @ u[0])


def test_block_edges_keep_the_order_and_an_empty_block_gives_nothing() -> None:
    rng = np.random.default_rng(1)
    y = rng.standard_normal((300, 16)).astype(np.float32)
    u = rng.standard_normal((10, 16)).astype(np.float32)
    rows = np.array([9, 0, 3, 3, 7, 1, 2])
    for block in (1, 2, 3, 7, 8, 100):
        got = list(exact_cf_rows(y, u, rows, block=block))
        assert np.array_equal(np.stack(got), _per_customer(y, u[rows]))
    assert list(exact_cf_rows(y, u, np.zeros(0, dtype=np.int64))) == []
    assert exact_cf_scores(y, u[:0]).shape == (0, 300)
    assert exact_cf_scores(y[:0], u).shape == (10, 0)


def test_mismatched_shapes_and_blocks_are_refused() -> None:
    y = np.zeros((5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="do not match"):
        exact_cf_scores(y, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="block"):
        list(exact_cf_rows(y, np.zeros((2, 4), dtype=np.float32), np.arange(2), block=0))

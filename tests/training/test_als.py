from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.config import TrainingConfig
from training.als import fit_als


def checker_board(n: int = 20) -> sp.csr_matrix:
    """Users in the first half bought every item in the first half, and likewise the second."""
    dense = np.zeros((n, n), dtype=np.float32)
    half = n // 2
    dense[:half, :half] = 1.0
    dense[half:, half:] = 1.0
    return sp.csr_matrix(dense)


# two factors can hold the two blocks but not the hole punched in one of them
CONFIG = TrainingConfig(factors=2, regularization=0.01, alpha=2.0, iterations=15)


def test_checker_board_scores_own_block_above_the_other_block() -> None:
    weights = checker_board()
    weights[0, 1] = 0.0  # user 0 has not bought item 1, which its block did
    weights.eliminate_zeros()
    f = fit_als(weights, CONFIG, num_threads=1)
    scores = f.user_factors[0] @ f.item_factors.T
    assert scores[1] > scores[10:].max()
    assert 0.5 < scores[1] < 1.5  # a preference of about 1, on the 0..1 scale of ALS targets


def test_factors_are_float32_and_empty_rows_and_columns_get_zeros() -> None:
    weights = checker_board()
    weights = sp.vstack([weights, sp.csr_matrix((1, 20))]).tocsr()  # a user with no purchase
    weights = sp.hstack([weights, sp.csr_matrix((21, 1))]).tocsr()  # an item nobody bought
    f = fit_als(weights, CONFIG, num_threads=1)
    assert f.user_factors.dtype == np.float32 and f.item_factors.dtype == np.float32
    assert f.user_factors.shape == (21, 2) and f.item_factors.shape == (21, 2)
    assert not f.user_factors[20].any() and not f.item_factors[20].any()


def test_same_seed_gives_the_same_factors() -> None:
    a = fit_als(checker_board(), CONFIG, num_threads=1)
    b = fit_als(checker_board(), CONFIG, num_threads=1)
    assert np.allclose(a.item_factors, b.item_factors)


def test_no_purchases_at_all_gives_zero_factors() -> None:
    f = fit_als(sp.csr_matrix((3, 5), dtype=np.float32), CONFIG)
    assert f.user_factors.shape == (3, 2) and not f.item_factors.any()

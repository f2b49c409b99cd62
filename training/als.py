"""Fit implicit ALS on a weighted customer x item matrix and return plain float32 arrays.

implicit 0.7 takes the matrix passed to ``fit`` as the confidence ``C`` of the observed pairs
(preference 1; unobserved pairs have confidence 1, preference 0) after multiplying it by its own
``alpha``. So the weights go in unscaled and ``TrainingConfig.alpha`` is given to implicit once: ``C
= alpha * w``. ``recsys.ranking.foldin`` uses the same convention, so a customer folded in online
with the same weights (the history counts: distinct orders per item) gets the vector training would
give. Weights are >= 1 and ``alpha`` >= 1, so an observed pair is never less confident than an
unobserved one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.config import TrainingConfig


@dataclass(frozen=True)
class ALSFactors:
    user_factors: np.ndarray  # f4 (n_customers, factors)
    item_factors: np.ndarray  # f4 (n_items, factors)


def fit_als(weights: sp.csr_matrix, config: TrainingConfig, num_threads: int = 0) -> ALSFactors:
    """Factorise ``weights`` (customers x items, non-negative).

    Customers or items without any stored entry get zero factors, so they score 0 everywhere
    instead of carrying the random initialisation.
    """
    n_users, n_items = weights.shape
    if weights.nnz == 0:
        return ALSFactors(
            np.zeros((n_users, config.factors), np.float32),
            np.zeros((n_items, config.factors), np.float32),
        )
    with threadpool_limits(1, "blas"):
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.random_state,
            num_threads=num_threads,
            dtype=np.float32,
        )
        model.fit(sp.csr_matrix(weights, dtype=np.float32), show_progress=False)
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    csr = sp.csr_matrix(weights)
    users[np.diff(csr.indptr) == 0] = 0.0
    items[np.bincount(csr.indices, minlength=n_items) == 0] = 0.0
    return ALSFactors(users, items)

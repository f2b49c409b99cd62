"""Fold a customer into a trained ALS model: the user step of ALS, for one customer.

With item factors ``Y`` (items x f), regularization ``λ`` and confidence scale ``α``, a customer
who interacted with items ``i`` with weights ``w_i`` gets the vector that ALS's own user step
would give them (implicit 0.7's convention: the confidence of an observed item is ``c_i = α
w_i``, preference 1; unobserved items have confidence 1, preference 0)::

    u = (YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ)⁻¹ Σ_i c_i y_i

``YᵀY + λI`` is the same for every customer and is computed once (:meth:`FoldIn.from_factors`);
each fold-in then costs one ``n x f`` update and one ``f x f`` solve, and the customers of one
request of events are solved together (:meth:`FoldIn.user_vectors`).
The weights must be those training used (the pipeline's interaction weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FoldIn:
    """Precomputed state of the fold-in for one model's item factors."""

    item_factors: np.ndarray  # f4/f8 (items x f)
    gram: np.ndarray  # f8 (f x f): YᵀY + λI
    alpha: float

    @classmethod
    def from_factors(cls, item_factors: np.ndarray, regularization: float, alpha: float) -> FoldIn:
        y = np.asarray(item_factors)
        if y.ndim != 2:
            raise ValueError(f"item_factors must be 2-D, got shape {y.shape}")
        y64 = y.astype(np.float64)
        gram = y64.T @ y64 + float(regularization) * np.eye(y.shape[1])
        return cls(item_factors=y, gram=gram, alpha=float(alpha))

    @property
    def factors(self) -> int:
        return int(self.gram.shape[0])

    def user_vector(self, item_rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The f4 vector of a customer with ``weights`` on the items at ``item_rows``.

        Rows must be distinct; non-positive weights are ignored. No items gives zeros.
        """
        return self.user_vectors([(item_rows, weights)])[0]

    def user_vectors(self, customers: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """:meth:`user_vector` of each ``(item_rows, weights)``, the systems solved together
        (one batched LAPACK call for all of them). The rank-``n`` update of each customer's
        system is a float32 product (its items' factors are float32), added to the float64
        ``YᵀY + λI``: four times cheaper than in float64, well inside the fold-in's parity
        with implicit's user step (relative 1e-3)."""
        out: list[np.ndarray | None] = [None] * len(customers)
        systems, rights, solved = [], [], []
        for index, (item_rows, weights) in enumerate(customers):
            rows = np.asarray(item_rows, dtype=np.int64)
            w = np.asarray(weights, dtype=np.float64)
            if rows.shape != w.shape or rows.ndim != 1:
                raise ValueError(f"item_rows {rows.shape} and weights {w.shape} must be equal 1-D")
            keep = w > 0
            rows, w = rows[keep], w[keep]
            if rows.size == 0:
                out[index] = np.zeros(self.factors, dtype=np.float32)
                continue
            if rows.min() < 0 or rows.max() >= self.item_factors.shape[0]:
                raise ValueError(f"item rows out of range 0..{self.item_factors.shape[0] - 1}")
            y = np.asarray(self.item_factors[rows], dtype=np.float32)
            confidence = self.alpha * w
            update = (y.T * (confidence - 1.0).astype(np.float32)) @ y
            systems.append(self.gram + update)
            rights.append(confidence @ y.astype(np.float64))
            solved.append(index)
        if solved:
            vectors = np.linalg.solve(np.stack(systems), np.stack(rights)[:, :, None])[:, :, 0]
            for index, vector in zip(solved, vectors.astype(np.float32), strict=True):
                out[index] = vector
        return [vector for vector in out if vector is not None]

"""Exact collaborative scores of a block of customers: ``item_factors @ user_vector`` for each,
bit for bit the single path's matrix-vector product, at a fraction of its cost.

One customer's product reads the whole item matrix from memory (100k items x 128 factors is
51 MB), so a loop of them is bound by memory bandwidth. A matrix product of the block would be
cheaper still but is not the same arithmetic: BLAS's matrix-matrix kernel adds the factors in
another order than its matrix-vector kernel, and the scores differ in the last bit (measured;
the learned ranker's features and the served order must not move). So this keeps the very
matrix-vector product of every customer and changes only the order of the work: the items go
in chunks of :data:`ITEM_CHUNK` rows (256 KB of factors at 64 factors, small enough to stay in
the CPU's cache) and each chunk is multiplied by every customer's vector before the next is
read (one ``np.matmul`` of the chunk, broadcast over the block, calls the same BLAS
matrix-vector routine per customer). Each item's score is one dot product of its own factor
row, so where the chunk ends does not change it; the chunk is a multiple of any kernel's row
group, so the last chunk (a short tail joins the one before it) splits its rows as the whole
matrix's product does.
``tests/recsys/ranking/test_exact_cf.py`` checks the identity (``np.array_equal``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np

#: item rows per chunk (a multiple of 64)
ITEM_CHUNK: Final = 1024
#: customers per block of :func:`exact_cf_rows` (256 x 100k items x 4 bytes is 100 MB)
CUSTOMER_BLOCK: Final = 256


def exact_cf_scores(item_factors: np.ndarray, user_vectors: np.ndarray) -> np.ndarray:
    """(n, n_items) f4: row ``i`` is ``item_factors @ user_vectors[i]`` bit for bit (both as
    f4). Memory is n x n_items x 4 bytes: callers go a bounded block at a time."""
    factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
    if factors.ndim != 2 or vectors.ndim != 2 or vectors.shape[1] != factors.shape[1]:
        raise ValueError(
            f"item factors {factors.shape} and user vectors {vectors.shape} do not match"
        )
    n, n_items = vectors.shape[0], factors.shape[0]
    out = np.empty((n, n_items), dtype=np.float32)
    if n == 0 or n_items == 0:
        return out
    columns = vectors[:, :, None]  # (n, f, 1): each customer's vector as a column
    # a short tail joins the chunk before it: a one-row chunk would be a dot product, which
    # NumPy hands to another routine than BLAS's matrix-vector one (another sum order)
    bounds = (
        [*range(0, n_items - ITEM_CHUNK, ITEM_CHUNK), n_items]
        if n_items > ITEM_CHUNK
        else [0, n_items]
    )
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        # (1, c, f) @ (n, f, 1): one matrix-vector product per customer, the chunk in cache
        np.matmul(factors[None, start:stop], columns, out=out[:, start:stop, None])
    return out


def exact_cf_rows(
    item_factors: np.ndarray,
    user_factors: np.ndarray,
    rows: np.ndarray,
    block: int = CUSTOMER_BLOCK,
) -> Iterator[np.ndarray]:
    """Per customer row of ``rows`` in order, its exact scores (f4, n_items): what
    ``item_factors @ user_factors[row]`` gives, computed :data:`CUSTOMER_BLOCK` customers at a
    time (each block a fresh array, so a kept row stays valid)."""
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, rows.shape[0], block):
        yield from exact_cf_scores(item_factors, user_factors[rows[start : start + block]])

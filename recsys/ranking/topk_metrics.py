"""Top-k ranking metrics over whole batches of users, in numpy.

Every metric works from two arrays:

* ``hits``: bool ``(n_users, k)``, ``hits[u, r]`` is True when the item ranked ``r`` (0-based)
  for user ``u`` is relevant (see :func:`hit_matrix`), and
* ``n_relevant``: int ``(n_users,)``, how many relevant items the user has (at least one).

Definitions (per user, then averaged over users by :func:`summarize`):

* Recall@k = hits in the top k / min(k, n_relevant), so a perfect ranking scores 1.0 whatever
  the number of relevant items (the normalised recall of Liang et al., 2018);
* NDCG@k = DCG@k / IDCG@k with binary gains, DCG = sum over hit ranks r of 1 / log2(r + 2),
  IDCG = the DCG of min(k, n_relevant) hits at the top;
* MAP@k: AP@k = sum over hit ranks r of precision@(r + 1), divided by min(k, n_relevant);
* hit rate@k: 1 when any of the top k is relevant;
* coverage@k: distinct items recommended to anyone in the top k / items that could be.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAD = -1


def hit_matrix(ranked: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """``hits[u, r]``: is ``ranked[u, r]`` a stored (non-zero) entry of row ``u`` of ``relevant``.

    ``ranked`` holds item columns, ``PAD`` (-1) where a method had nothing to rank.
    """
    ranked = np.asarray(ranked)
    n_users, n_items = relevant.shape
    if ranked.shape[0] != n_users:
        raise ValueError(f"ranked has {ranked.shape[0]} rows, relevant has {n_users}")
    rel = relevant.tocsr()
    rel_rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    rel_keys = np.sort(rel_rows * n_items + rel.indices.astype(np.int64))
    users = np.arange(n_users, dtype=np.int64)[:, None]
    keys = users * n_items + ranked.astype(np.int64)
    pos = np.searchsorted(rel_keys, keys)
    pos = np.minimum(pos, max(len(rel_keys) - 1, 0))
    found = rel_keys[pos] == keys if len(rel_keys) else np.zeros(keys.shape, dtype=bool)
    return found & (ranked >= 0)


def _ideal_count(n_relevant: np.ndarray, k: int) -> np.ndarray:
    return np.minimum(np.asarray(n_relevant, dtype=np.float64), k)


def _check(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-d (users x ranks), got shape {hits.shape}")
    return hits[:, :k].astype(np.float64)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user Recall@k (hits / min(k, n_relevant))."""
    h = _check(hits, k)
    return h.sum(axis=1) / _ideal_count(n_relevant, k)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Per-user Precision@k (hits / k; missing ranks count as misses)."""
    return _check(hits, k).sum(axis=1) / k


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k with binary gains."""
    h = _check(hits, k)
    discounts = 1.0 / np.log2(np.arange(h.shape[1]) + 2.0)
    dcg = h @ discounts
    ideal_prefix = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    idcg = ideal_prefix[_ideal_count(n_relevant, k).astype(np.int64)]
    return dcg / idcg


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user average precision at k, normalised by min(k, n_relevant)."""
    h = _check(hits, k)
    ranks = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    precision = np.cumsum(h, axis=1) / ranks
    return (precision * h).sum(axis=1) / _ideal_count(n_relevant, k)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Per-user 1.0 when any of the top k is relevant."""
    return _check(hits, k).max(axis=1, initial=0.0)


def coverage_at_k(ranked: np.ndarray, k: int, n_candidates: int) -> float:
    """Distinct items in anyone's top k, as a share of the ``n_candidates`` rankable items."""
    if n_candidates <= 0:
        return 0.0
    top = np.asarray(ranked)[:, :k]
    return float(np.unique(top[top >= 0]).size / n_candidates)


def summarize(
    ranked: np.ndarray, relevant: sp.csr_matrix, k_values: tuple[int, ...], n_candidates: int
) -> dict[str, float]:
    """Mean metrics over users for each k: ``{"recall@10": ..., "ndcg@10": ..., ...}``."""
    n_relevant = np.diff(relevant.tocsr().indptr)
    if np.any(n_relevant == 0):
        raise ValueError("every evaluated user needs at least one relevant item")
    hits = hit_matrix(ranked, relevant)
    out: dict[str, float] = {}
    for k in k_values:
        out[f"recall@{k}"] = float(recall_at_k(hits, n_relevant, k).mean())
        out[f"ndcg@{k}"] = float(ndcg_at_k(hits, n_relevant, k).mean())
        out[f"map@{k}"] = float(map_at_k(hits, n_relevant, k).mean())
        out[f"precision@{k}"] = float(precision_at_k(hits, k).mean())
        out[f"hit_rate@{k}"] = float(hit_rate_at_k(hits, k).mean())
        out[f"coverage@{k}"] = coverage_at_k(ranked, k, n_candidates)
    return out

"""Popularity bias of a ranking: how much of what it shows is the best sellers.

For each k, over every slot of every customer's top k (``-1`` pads are skipped):

* ``popularity_pct@k``: the mean popularity percentile of the shown items among the products
  (1.0 = the best seller, 0.0 = the least bought; ties share their mean rank), where popularity
  is the number of training customers who bought the item;
* ``head_share@k``: the share of slots taken by the head, the best-selling 10% of products.

A ranking that shows only best sellers has both near 1; the catalogue as a whole averages 0.5
and 0.1.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

HEAD = 0.10


def popularity_percentiles(buyers: np.ndarray, products: np.ndarray) -> np.ndarray:
    """Per item row its popularity percentile among ``products`` (NaN for other rows)."""
    counts = np.asarray(buyers, dtype=np.float64)
    out = np.full(counts.shape, np.nan)
    n = int(products.sum())
    if n == 1:
        out[products] = 1.0
    elif n > 1:
        out[products] = (rankdata(counts[products]) - 1.0) / (n - 1.0)
    return out


def popularity_bias(
    ranked: np.ndarray, buyers: np.ndarray, products: np.ndarray, k_values: tuple[int, ...]
) -> dict[str, float]:
    """``{"popularity_pct@k": ..., "head_share@k": ...}`` of ``ranked`` (see the module)."""
    pct = popularity_percentiles(buyers, products)
    head = np.nan_to_num(pct) >= 1.0 - HEAD
    out: dict[str, float] = {}
    for k in k_values:
        top = np.asarray(ranked)[:, :k]
        shown = top[top >= 0]
        out[f"popularity_pct@{k}"] = float(np.nanmean(pct[shown])) if shown.size else 0.0
        out[f"head_share@{k}"] = float(head[shown].mean()) if shown.size else 0.0
    return out

"""Strong classical baselines for the offline evaluation, tuned on the training window only.

* **EASE** (Steck 2019, "Embarrassingly shallow autoencoders"): item-item weights in closed
  form, ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` (so ``diag(B) = 0``), ``X`` the
  binary customer x item purchase matrix; a customer's scores are ``x_u B``. ``P`` is dense
  ``m x m``, so EASE is fitted on the ``max_items`` products with the most buyers (default 5000:
  400 MB of float64 at most, seconds to invert); the rest of the catalogue gets no EASE score
  (it is ranked after, by popularity). The shared data has fewer products than that, so there
  EASE sees the whole catalogue.
* **buy again + popular**: the customer's own products by recency-weighted order count
  (each order containing the item weighs ``0.5 ** (age / half_life)``), then the best sellers
  to fill the list.

Tuning: the last ``valid_days`` (28) of the training window are carved off as a validation
split: the models are fitted on purchases before ``split - valid_days`` and scored (NDCG@20)
on the purchases of the last ``valid_days``; the best L2 (EASE, per task: discovery excludes
the customer's own items, all items does not) and the best half-life are then refitted on the
whole training window. Nothing at or after ``split`` is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.ranking.topk_metrics import hit_matrix, ndcg_at_k
from training.interactions import index_of, product_purchases

L2_GRID: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
HALF_LIFE_GRID: tuple[float, ...] = (14.0, 30.0, 60.0, 120.0, 365.0, float("inf"))
MAX_ITEMS = 5000
VALID_DAYS = 28
VALID_USERS = 3000  # validation customers scored at most (a fixed random sample)
_BATCH = 1024


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise top k columns of a dense block, best first (ties: lower column); -inf -> -1."""
    n, m = scores.shape
    k_eff = min(k, m)
    part = (
        np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        if k_eff < m
        else np.tile(np.arange(m), (n, 1))
    )
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    out = np.full((n, k), -1, dtype=np.int32)
    out[:, :k_eff] = np.where(np.isneginf(vals), -1, part)
    return out


def order_weights(
    interactions: pd.DataFrame,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
    end: pd.Timestamp,
    half_life_days: float = float("inf"),
    start: pd.Timestamp | None = None,
) -> sp.csr_matrix:
    """Per (customer, item): sum over the distinct orders in ``[start, end)`` that contain it
    of ``0.5 ** (age_days / half_life_days)`` (age from ``end``; an infinite half-life counts
    orders). Product purchases by known customers only."""
    rows = product_purchases(interactions)
    ts = rows["timestamp"]
    keep = (rows["event_type"] == "purchase") & ts.lt(end)
    if start is not None:
        keep &= ts.ge(start)
    rows = rows.loc[keep]
    cust = index_of(customer_ids, rows["customer_id"])
    item = index_of(item_ids, rows["item_id"])
    order = rows["order_id"].astype("string").fillna("t:" + ts.loc[rows.index].astype("string"))
    frame = pd.DataFrame({"c": cust, "i": item, "o": order.to_numpy(), "t": rows["timestamp"]})
    frame = frame.loc[(frame["c"] >= 0) & (frame["i"] >= 0)]
    frame = frame.groupby(["c", "i", "o"], sort=False)["t"].min().reset_index()
    age = ((end - frame["t"]) / pd.Timedelta(days=1)).to_numpy(np.float64)
    w = np.ones_like(age) if np.isinf(half_life_days) else 0.5 ** (age / half_life_days)
    shape = (len(customer_ids), len(item_ids))
    out = sp.csr_matrix((w, (frame["c"].to_numpy(), frame["i"].to_numpy())), shape=shape)
    out.sum_duplicates()
    return out


def _binary(x: sp.csr_matrix) -> sp.csr_matrix:
    b = x.tocsr(copy=True)
    b.data = np.ones_like(b.data, dtype=np.float64)
    return b


def _normalized(popularity: np.ndarray) -> np.ndarray:
    p = np.asarray(popularity, dtype=np.float64)
    top = np.max(p) if p.size else 0.0
    return p / top if top > 0 else np.zeros_like(p)


@dataclass(frozen=True)
class EASE:
    """Fitted EASE weights over ``columns`` (item rows of the catalogue)."""

    columns: np.ndarray  # i8 (m,)
    weights: np.ndarray  # f4 (m, m), zero diagonal
    l2: float

    @classmethod
    def fit(cls, x: sp.csr_matrix, l2: float, columns: np.ndarray) -> EASE:
        xs = _binary(x)[:, columns]
        gram = (xs.T @ xs).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        return cls(columns=columns, weights=b.astype(np.float32), l2=float(l2))

    def scores(self, x_rows: sp.csr_matrix, n_items: int, prior: np.ndarray) -> np.ndarray:
        """Dense ``(n, n_items)``: EASE scores on its columns, ``prior`` (in [0, 1]) scaled far
        below them everywhere (ties and items outside the columns go by popularity)."""
        xs = _binary(x_rows)[:, self.columns]
        block = np.asarray(xs @ self.weights, dtype=np.float64)
        out = np.tile(1e-9 * prior - 1.0, (x_rows.shape[0], 1))  # below any EASE score
        out[:, self.columns] = block + 1e-9 * prior[self.columns]
        return out


def buy_again_popular_scores(w_rows: sp.csr_matrix, prior: np.ndarray) -> np.ndarray:
    """Own items first (``1 + weight``), then the best sellers (``prior / 2`` in [0, 0.5])."""
    out = np.tile(0.5 * prior, (w_rows.shape[0], 1))
    r, c = w_rows.nonzero()
    out[r, c] = 1.0 + np.asarray(w_rows[r, c]).ravel()
    return out


def popular_columns(x: sp.csr_matrix, allowed: np.ndarray, max_items: int) -> np.ndarray:
    """The ``max_items`` allowed columns with the most distinct buyers (sorted column rows)."""
    buyers = np.asarray(_binary(x).sum(axis=0)).ravel()
    candidates = np.flatnonzero(np.asarray(allowed, dtype=bool) & (buyers > 0))
    if len(candidates) > max_items:
        candidates = candidates[np.argsort(-buyers[candidates], kind="stable")[:max_items]]
    return np.sort(candidates)


@dataclass
class TunedBaselines:
    """EASE per task and the buy-again half-life, refitted on the whole training window."""

    ease: dict[str, EASE]
    half_life_days: float
    buy_again_weights: sp.csr_matrix
    history: sp.csr_matrix
    prior: np.ndarray
    tuning: dict[str, Any] = field(default_factory=dict)

    def scores(self, method: str, rows: np.ndarray, task: str, n_items: int) -> np.ndarray:
        if method == "ease":
            return self.ease[task].scores(self.history[rows], n_items, self.prior)
        if method == "buy_again_popular":
            return buy_again_popular_scores(self.buy_again_weights[rows], self.prior)
        raise ValueError(f"unknown baseline {method!r}")


def _validation_ndcg(
    score: Any,
    users: np.ndarray,
    relevant: sp.csr_matrix,
    blocked: np.ndarray,
    history: sp.csr_matrix | None,
    k: int,
) -> float:
    values = []
    for start in range(0, len(users), _BATCH):
        batch = users[start : start + _BATCH]
        s = score(batch)
        s[:, blocked] = -np.inf
        if history is not None:
            r, c = history[batch].nonzero()
            s[r, c] = -np.inf
        ranked = top_k_rows(s, k)
        rel = relevant[start : start + len(batch)]
        values.append(ndcg_at_k(hit_matrix(ranked, rel), np.diff(rel.indptr), k))
    return float(np.concatenate(values).mean()) if values else 0.0


def tune_baselines(
    train: pd.DataFrame,
    customer_ids: np.ndarray,
    item_ids: np.ndarray,
    is_product: np.ndarray,
    popularity: np.ndarray,
    split: pd.Timestamp,
    *,
    k: int = 20,
    valid_days: int = VALID_DAYS,
    max_items: int = MAX_ITEMS,
    l2_grid: tuple[float, ...] = L2_GRID,
    half_life_grid: tuple[float, ...] = HALF_LIFE_GRID,
    seed: int = 0,
) -> TunedBaselines:
    """Tune on the last ``valid_days`` before ``split``, refit on everything before it."""
    split = pd.Timestamp(split)
    train = train.loc[train["timestamp"].lt(split)]
    valid_start = split - pd.Timedelta(days=valid_days)
    n_items = len(item_ids)
    prior = _normalized(popularity)
    blocked = ~np.asarray(is_product, dtype=bool)
    fit_x = order_weights(train, customer_ids, item_ids, valid_start)
    target = _binary(order_weights(train, customer_ids, item_ids, split, start=valid_start))
    target = (target @ sp.diags((~blocked).astype(np.float64))).tocsr()
    target.eliminate_zeros()
    known = np.diff(fit_x.indptr) > 0
    has_target = np.diff(target.indptr) > 0
    new = (target - target.multiply(_binary(fit_x))).tocsr()
    new.eliminate_zeros()
    rng = np.random.default_rng(seed)
    tasks: dict[str, tuple[np.ndarray, sp.csr_matrix]] = {}
    for task, rel in (("all", target), ("discovery", new)):
        users = np.flatnonzero(known & has_target & (np.diff(rel.indptr) > 0))
        if len(users) > VALID_USERS:
            users = np.sort(rng.choice(users, VALID_USERS, replace=False))
        tasks[task] = (users, rel[users])
    tuning: dict[str, Any] = {"valid_start": f"{valid_start:%Y-%m-%d}", "ease": {}}
    full_x = order_weights(train, customer_ids, item_ids, split)
    ease: dict[str, EASE] = {}
    fit_cols = popular_columns(fit_x, ~blocked, max_items)
    full_cols = popular_columns(full_x, ~blocked, max_items)
    grids: dict[str, list[dict[str, float]]] = {"all": [], "discovery": []}
    for l2 in l2_grid:
        model = EASE.fit(fit_x, l2, fit_cols) if len(fit_cols) else None
        for task, (users, rel) in tasks.items():
            if model is None or not len(users):
                continue
            hist = fit_x if task == "discovery" else None
            ndcg = _validation_ndcg(
                lambda rows, m=model: m.scores(fit_x[rows], n_items, prior),
                users,
                rel,
                blocked,
                hist,
                k,
            )
            grids[task].append({"l2": l2, f"ndcg@{k}": ndcg})
    for task, grid in grids.items():
        best = max(grid, key=lambda r: r[f"ndcg@{k}"])["l2"] if grid else l2_grid[0]
        tuning["ease"][task] = {"best_l2": best, "grid": grid, "columns": int(len(full_cols))}
        ease[task] = EASE.fit(full_x, best, full_cols)
    users, rel = tasks["all"]
    half_grid = []
    for half_life in half_life_grid:
        w = order_weights(train, customer_ids, item_ids, valid_start, half_life)
        ndcg = _validation_ndcg(
            lambda rows, w=w: buy_again_popular_scores(w[rows], prior),
            users,
            rel,
            blocked,
            None,
            k,
        )
        half_grid.append({"half_life_days": half_life, f"ndcg@{k}": ndcg})
    best_half = max(half_grid, key=lambda r: r[f"ndcg@{k}"])["half_life_days"]
    tuning["buy_again_popular"] = {"best_half_life_days": best_half, "grid": half_grid}
    tuning["valid_customers"] = {task: int(len(u)) for task, (u, _) in tasks.items()}
    return TunedBaselines(
        ease=ease,
        half_life_days=best_half,
        buy_again_weights=order_weights(train, customer_ids, item_ids, split, best_half),
        history=full_x,
        prior=prior,
        tuning=tuning,
    )

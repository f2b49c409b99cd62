"""The blend of one customer as the two-stage ranking needs it: what :func:`score_items` gives,
bit for bit, without its dense ``buy_again`` and without a dense array per reason.

:func:`blend_parts` computes the dense components the candidates need over every item (``cf``,
``knn``, ``context``) with :func:`score_items`' very operations, adds ``buy_again`` only at the
customer's own rows (elsewhere it is 0, and adding 0 changes no sum) and takes the weighted
popularity prior from the model (:attr:`RankingModel.popularity_part`, computed once), so the
total is :func:`score_items`' total in the same order of additions. :meth:`BlendParts.reasons`
is :meth:`Scores.reasons` at the rows asked for (the page's ``k`` winners) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from recsys.ranking.scoring import REASON_CODES, RankingModel, neighbour_sum, repeat_scores

_EMPTY_I8: Final = np.zeros(0, dtype=np.int64)
_EMPTY_F4: Final = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class BlendParts:
    """One customer's blend: the total and the weighted components (None: inactive)."""

    total: np.ndarray  # f4 (n_items,)
    cf: np.ndarray | None  # recommended_for_you, dense
    knn: np.ndarray | None  # because_you_bought_similar, dense
    buy_rows: np.ndarray | None  # buy_again: its rows (i8, sorted, distinct) ...
    buy_values: np.ndarray  # ... and their values (f4)
    context: np.ndarray | None  # similar_to_viewed, dense
    popular: np.ndarray | None  # the weighted prior, dense (the model's: read only)
    distinct_items: int  # distinct items in the history

    def buy_at(self, rows: np.ndarray) -> np.ndarray:
        """f4: ``buy_again`` at ``rows`` (0 off the customer's own rows)."""
        out = np.zeros(rows.shape[0], dtype=np.float32)
        if self.buy_rows is None or not self.buy_rows.size or not rows.size:
            return out
        at = np.minimum(np.searchsorted(self.buy_rows, rows), self.buy_rows.size - 1)
        hit = self.buy_rows[at] == rows
        out[hit] = self.buy_values[at[hit]]
        return out

    def reasons(self, rows: np.ndarray) -> list[str]:
        """:meth:`Scores.reasons` of ``rows``: the strongest active component of each."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return []
        parts: list[tuple[str, np.ndarray]] = []
        for code, dense in zip(REASON_CODES[:2], (self.cf, self.knn), strict=True):
            if dense is not None:
                parts.append((code, dense[rows]))
        if self.buy_rows is not None:
            parts.append(("buy_again", self.buy_at(rows)))
        for code, dense in (("similar_to_viewed", self.context), ("popular", self.popular)):
            if dense is not None:
                parts.append((code, dense[rows]))
        if not parts:
            return ["popular"] * int(rows.size)
        best = np.argmax(np.array([values for _, values in parts]), axis=0)
        return [parts[b][0] for b in best.tolist()]


def _distinct_sums(items: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct sorted ``items`` and, per item, the f8 sum of its ``weights`` in input
    order cast to f4 (what ``np.bincount(items, weights)`` holds at those items)."""
    order = np.argsort(items, kind="stable")
    ordered = items[order]
    if ordered.size < 2 or bool(np.all(ordered[1:] != ordered[:-1])):
        return ordered, _EMPTY_F4 if weights is None else weights[order].astype(np.float32)
    rows, inverse = np.unique(items, return_inverse=True)
    if weights is None:
        return rows, _EMPTY_F4
    return rows, np.bincount(inverse, weights=weights).astype(np.float32)


def blend_parts(
    model: RankingModel,
    user_vector: np.ndarray | None,
    history_items: np.ndarray,
    history_counts: np.ndarray,
    history_age_days: np.ndarray,
    context_items: np.ndarray | None = None,
    context_weights: np.ndarray | None = None,
    cf_scores: np.ndarray | None = None,
) -> BlendParts:
    """:func:`score_items`' blend (same arguments), its total bit for bit."""
    p = model.params
    history_items = np.asarray(history_items, dtype=np.int64)
    if user_vector is not None and not np.any(user_vector):
        user_vector = None
    cold = user_vector is None and history_items.size == 0
    cf = knn = context = None
    buy_rows: np.ndarray | None = None
    buy_values = _EMPTY_F4
    distinct = _EMPTY_I8
    if user_vector is not None and p.cf_weight:
        raw: Any = (
            model.item_factors @ np.asarray(user_vector, dtype=np.float32)
            if cf_scores is None
            else cf_scores
        )
        # x * 1 is x: the default weight needs no pass (cf is never written to)
        cf = (
            raw if p.cf_weight == 1.0 and raw.dtype == np.float32 else raw * np.float32(p.cf_weight)
        )
    if history_items.size:
        repeat = repeat_scores(history_counts, history_age_days, p.repeat_half_life_days)
        if p.knn_weight:
            summed = neighbour_sum(model, history_items, repeat)
            top = float(summed.max(initial=0.0))
            if top > 0:
                summed *= np.float32(p.knn_weight / top)
                knn = summed
        weighted = (p.repeat_weight * repeat).astype(np.float64) if p.repeat_weight else None
        distinct, buy_values = _distinct_sums(history_items, weighted)
        buy_rows = distinct if p.repeat_weight else None
    if context_items is not None and len(context_items) and p.context_weight:
        context_items = np.asarray(context_items, dtype=np.int64)
        weights = (
            np.ones(len(context_items), dtype=np.float32)
            if context_weights is None
            else np.asarray(context_weights, dtype=np.float32)
        )
        context = neighbour_sum(model, context_items, weights)
        context *= np.float32(p.context_weight)
    popular = None
    if cold:
        popular = model.popularity * np.float32(1.0)
    elif p.popularity_weight:
        popular = model.popularity_part
    # score_items adds the parts to zeros in this order; 0 + x is x (a -0.0 aside)
    total = np.zeros(model.n_items, dtype=np.float32) if cf is None else cf.astype(np.float32)
    if knn is not None:
        total += knn
    if buy_rows is not None:
        total[buy_rows] += buy_values
    if context is not None:
        total += context
    if popular is not None:
        total += popular
    return BlendParts(total, cf, knn, buy_rows, buy_values, context, popular, distinct.size)

"""Today's two-stage ranking as first written (frozen here, straightforward and slow): dense
:func:`score_items`, an ``argpartition`` per generator, features from dense components.
``test_candidates_parity.py`` holds the served path to it, row for row and bit for bit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from recsys.ranking.candidates import MAX_EASE_HISTORY, MAX_OWN, PER_GENERATOR, TopItems
from recsys.ranking.scoring import RankingModel, Scores, score_items, top_k
from recsys.ranking.signals import ItemSignals, Ranker

_NONE: Final = np.float32(-1.0)
N_FEATURES: Final = 21


@dataclass(frozen=True)
class Candidates:
    rows: np.ndarray
    features: np.ndarray
    scores: Scores


def _best(values: np.ndarray, blocked: np.ndarray | None, n: int, positive: bool) -> np.ndarray:
    """Rows of the ``n`` best allowed values (positive ones only when ``positive``)."""
    if blocked is None and not positive and values.shape[0] > n:
        return np.argpartition(-values, n - 1)[:n]  # cf: every value counts
    allowed = values > 0 if positive else np.isfinite(values)
    if blocked is not None:
        allowed &= ~blocked
    rows = np.flatnonzero(allowed)
    if rows.size > n:
        rows = rows[np.argpartition(-values[rows], n - 1)[:n]]
    return rows


def _first_allowed(order: np.ndarray, blocked: np.ndarray | None, n: int) -> np.ndarray:
    """The first ``n`` rows of a fixed ``order`` that are not blocked."""
    if blocked is None:
        return order[:n]
    head = order[: 4 * n]
    head = head[~blocked[head]]
    return head[:n] if head.size >= n else order[~blocked[order]][:n]


def _rank_among(values: np.ndarray) -> np.ndarray:
    """0 for the best of ``values``, ties by position (the rows are sorted)."""
    rank = np.empty(values.shape[0], dtype=np.float32)
    rank[np.argsort(-values, kind="stable")] = np.arange(values.shape[0], dtype=np.float32)
    return rank


def _component(scores: Scores, code: str, n_items: int) -> np.ndarray:
    part = scores.components.get(code)
    return part if part is not None else np.zeros(n_items, dtype=np.float32)


def candidates_for(
    model: RankingModel,
    signals: ItemSignals,
    customer: tuple[object, ...],
    k: int,
    blocked: np.ndarray | None,
) -> Candidates:
    """Stage 1 and the features; ``customer``: :func:`score_items`' arguments after the
    model (user vector, history items, counts, ages, context items, weights, cf scores)."""
    scores = score_items(model, *customer)  # type: ignore[arg-type]
    vector = customer[0]
    history = np.asarray(customer[1], dtype=np.int64)
    counts = np.asarray(customer[2], dtype=np.float32)
    ages = np.asarray(customer[3], dtype=np.float32)
    n_items = model.n_items
    cf = _component(scores, "recommended_for_you", n_items)
    knn = _component(scores, "because_you_bought_similar", n_items)
    context = _component(scores, "similar_to_viewed", n_items)
    recent = history[np.argsort(ages, kind="stable")]
    ease = signals.ease_scores(recent[:MAX_EASE_HISTORY])
    own = recent[:MAX_OWN]
    if blocked is not None:
        own = own[~blocked[own]]
    parts = [
        top_k(scores.total, k, blocked)[0].astype(np.int64),
        _first_allowed(model.popular_order, blocked, PER_GENERATOR),
        _first_allowed(signals.trend_order, blocked, PER_GENERATOR),
        _first_allowed(signals.recent_order, blocked, PER_GENERATOR),
        own,
    ]
    for code, part in (("because_you_bought_similar", knn), ("similar_to_viewed", context)):
        if code in scores.components:
            parts.append(_best(part, blocked, PER_GENERATOR, True))
    if "recommended_for_you" in scores.components:
        parts.append(_best(cf, blocked, PER_GENERATOR, False))
    if history.size and signals.ease_columns.size:
        parts.append(_best(ease, blocked, PER_GENERATOR, True))
    rows = np.unique(np.concatenate(parts))
    return Candidates(rows, _features(model, signals, scores, rows, vector, history, counts,
                                      ages, cf, knn, ease), scores)  # fmt: skip


def _features(
    model: RankingModel,
    signals: ItemSignals,
    scores: Scores,
    rows: np.ndarray,
    vector: object,
    history: np.ndarray,
    counts: np.ndarray,
    ages: np.ndarray,
    cf: np.ndarray,
    knn: np.ndarray,
    ease: np.ndarray,
) -> np.ndarray:
    n = rows.shape[0]
    out = np.empty((n, N_FEATURES), dtype=np.float32)
    own_orders = np.zeros(n, dtype=np.float32)
    days = np.full(n, np.inf, dtype=np.float32)
    if history.size:
        at = np.minimum(np.searchsorted(rows, history), max(n - 1, 0))
        mine = rows[at] == history if n else np.zeros(0, dtype=bool)
        np.add.at(own_orders, at[mine], counts[mine])
        np.minimum.at(days, at[mine], ages[mine])
    bought = np.isfinite(days)
    gap = signals.gap_days[rows]
    out[:, 0] = cf[rows]
    out[:, 1] = _rank_among(out[:, 0])
    out[:, 2] = ease[rows]
    out[:, 3] = _rank_among(out[:, 2])
    out[:, 4] = knn[rows]
    out[:, 5] = _rank_among(out[:, 4])
    out[:, 6] = _component(scores, "buy_again", model.n_items)[rows]
    out[:, 7] = model.popularity[rows]
    out[:, 8] = signals.trend[rows]
    out[:, 9] = own_orders
    out[:, 10] = np.where(bought, days, _NONE)
    out[:, 11] = np.where(bought & (gap > 0), days / np.maximum(gap, 1e-3), _NONE)
    out[:, 12] = signals.repeat_rate[rows]
    out[:, 13] = gap
    out[:, 14] = signals.log_price[rows]
    out[:, 15] = np.unique(history).size
    out[:, 16] = counts.max(initial=0.0)
    out[:, 17] = ages.min() if ages.size else _NONE
    out[:, 18] = ages.max() if ages.size else _NONE
    out[:, 19] = float("recommended_for_you" in scores.components and vector is not None)
    out[:, 20] = signals.recent[rows]
    return out


def rank_candidates(
    model: RankingModel,
    signals: ItemSignals,
    ranker: Ranker,
    customer: tuple[object, ...],
    k: int,
    blocked: np.ndarray | None,
) -> TopItems:
    """The best ``k`` candidates by the ranker (plus the context, see the module docstring)."""
    found = candidates_for(model, signals, customer, k, blocked)
    if found.rows.size == 0:
        return TopItems(np.zeros(0, np.int32), np.zeros(0, np.float32), [])
    learned = np.asarray(ranker.predict(found.features), dtype=np.float32).reshape(-1)
    low, high = learned.min(), learned.max()
    total = (learned - low) / (high - low) if high > low else np.zeros_like(learned)
    context = found.scores.components.get("similar_to_viewed")
    if context is not None:  # onto the blend's own range, against which the context weighs
        at = context[found.rows]
        personal = found.scores.total[found.rows] - at
        floor, span = personal.min(), personal.max() - personal.min()
        total = floor + total * span + at
    order = np.lexsort((found.rows, -total))[:k]
    rows = found.rows[order]
    return TopItems(rows.astype(np.int32), total[order], found.scores.reasons(rows))

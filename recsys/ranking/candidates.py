"""Two-stage ranking: a bounded candidate set per customer, then the learned ranker over it.

Stage 1, candidates (item rows never blocked for this request), the union of:

* the blend's own best ``k`` (:func:`recsys.ranking.scoring.score_items`, so the ranker can
  only add to what the blend would show);
* the best :data:`PER_GENERATOR` items of each generator: ALS (``cf``), EASE
  (:class:`~recsys.ranking.signals.ItemSignals`), the co-purchase neighbours of the history
  (``knn``) and of the page's context, the popularity prior, the trend prior, the recent
  best sellers (``popularity_recent``: the buyers of the 14 days before the cutoff);
* the customer's own items (buy again), the :data:`MAX_OWN` most recent.

EASE scores the :data:`MAX_EASE_HISTORY` most recent bought items (a bounded cost per page
view); the popular, trending and recent candidates come from orders fixed at load time.

At most ``k + 7 * PER_GENERATOR + MAX_OWN`` rows, fewer with overlaps; no step is dense over
customers x items (one customer's dense item arrays, as the blend already computes).

Stage 2, features (:data:`FEATURES`, one row per candidate: each generator's score and rank
among the candidates, popularity and trend, the customer's count, recency and rhythm for the
item against the item's typical repurchase gap, the item's repurchase rate and price, the
customer's breadth and recency, the item's recent popularity: the last column, so a ranker
trained before it reads the others at the same index), scored by the task's
:class:`~recsys.ranking.signals.Ranker`.
The page's context is not in the order data the ranker learns from, so it is added after it:
the ranker's scores, mapped onto the range of the blend's context-free total over the
candidates (so the context weighs against them as it does in the blend), plus the blend's
context component (``similar_to_viewed``). Without context the order is the ranker's (its
scores scaled to [0, 1] over the candidates). Ties go to the lower row.
A recommendation's reason is the blend's strongest component at the item, as for the blend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from recsys.ranking.blend import BlendParts, blend_parts
from recsys.ranking.scoring import RankingModel
from recsys.ranking.selection import Source, first_allowed, union_of_best
from recsys.ranking.signals import ItemSignals, Ranker

PER_GENERATOR: Final = 40
MAX_OWN: Final = 60
#: EASE scores the customer's most recent distinct items, at most this many (bounded cost)
MAX_EASE_HISTORY: Final = 100
_NONE: Final = np.float32(-1.0)

FEATURES: tuple[str, ...] = (
    "cf",
    "cf_rank",
    "ease",
    "ease_rank",
    "knn",
    "knn_rank",
    "buy_again",
    "popularity",
    "trend",
    "own_orders",
    "own_days_since",
    "own_rhythm",
    "item_repeat_rate",
    "item_gap_days",
    "item_log_price",
    "customer_items",
    "customer_max_orders",
    "customer_recency",
    "customer_span",
    "has_vector",
    "popularity_recent",
)


@dataclass(frozen=True)
class Candidates:
    """One customer's candidate rows (sorted), their features and the blend behind them."""

    rows: np.ndarray  # i8 (n,), sorted
    features: np.ndarray  # f4 (n, len(FEATURES))
    blend: BlendParts  # the blend (its total at the rows, the context, the reasons)


def _rank_among(values: np.ndarray) -> np.ndarray:
    """Per row of ``values`` (m, n): 0 for the best value, ties by position (the candidate
    rows are sorted)."""
    order = np.argsort(-values, axis=1, kind="stable")
    rank = np.empty(values.shape, dtype=np.float32)
    rank[np.arange(values.shape[0])[:, None], order] = np.arange(values.shape[1], dtype=np.float32)
    return rank


def _at(dense: np.ndarray | None, rows: np.ndarray) -> np.ndarray | float:
    return 0.0 if dense is None else dense[rows]


def candidates_for(
    model: RankingModel,
    signals: ItemSignals,
    customer: tuple[object, ...],
    k: int,
    blocked: np.ndarray | None,
) -> Candidates:
    """Stage 1 and the features; ``customer``: :func:`score_items`' arguments after the
    model (user vector, history items, counts, ages, context items, weights, cf scores)."""
    blend = blend_parts(model, *customer)  # type: ignore[arg-type]
    history = np.asarray(customer[1], dtype=np.int64)
    counts = np.asarray(customer[2], dtype=np.float32)
    ages = np.asarray(customer[3], dtype=np.float32)
    recent = history[np.argsort(ages, kind="stable")]
    ease = signals.ease_scores(recent[:MAX_EASE_HISTORY])
    n_items = model.n_items
    sources: list[Source] = [(blend.total, int(k), False, True)]
    for dense in (blend.knn, blend.context):
        if dense is not None:
            sources.append((dense, PER_GENERATOR, True, False))
    if blend.cf is not None:
        sources.append((blend.cf, PER_GENERATOR, False, False))
    if history.size and signals.ease_columns.size:
        sources.append((ease, PER_GENERATOR, True, False))
    chosen = union_of_best(sources, blocked, n_items)
    own = recent[:MAX_OWN]
    chosen[own if blocked is None else own[~blocked[own]]] = True
    chosen[first_allowed(model.popular_order, blocked, PER_GENERATOR)] = True
    chosen[first_allowed(signals.trend_order, blocked, PER_GENERATOR)] = True
    chosen[first_allowed(signals.recent_order, blocked, PER_GENERATOR)] = True
    rows = np.flatnonzero(chosen)
    return Candidates(rows, _features(model, blend, rows, history, counts, ages, ease), blend)


def _own(
    rows: np.ndarray, history: np.ndarray, counts: np.ndarray, ages: np.ndarray, distinct: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate row, the customer's orders of it (summed) and days since (least)."""
    n = rows.shape[0]
    own_orders = np.zeros(n, dtype=np.float32)
    days = np.full(n, np.inf, dtype=np.float32)
    if history.size and n:
        at = np.minimum(np.searchsorted(rows, history), n - 1)
        mine = rows[at] == history
        at, mine_counts, mine_ages = at[mine], counts[mine], ages[mine]
        if distinct:  # each row once: the sum and the least are the value
            own_orders[at] = mine_counts
            days[at] = mine_ages
        else:
            np.add.at(own_orders, at, mine_counts)
            np.minimum.at(days, at, mine_ages)
    return own_orders, days


def _features(
    model: RankingModel,
    blend: BlendParts,
    rows: np.ndarray,
    history: np.ndarray,
    counts: np.ndarray,
    ages: np.ndarray,
    ease: np.ndarray,
) -> np.ndarray:
    n = rows.shape[0]
    out = np.empty((n, len(FEATURES)), dtype=np.float32)
    own_orders, days = _own(rows, history, counts, ages, blend.distinct_items == history.size)
    bought = np.isfinite(days)
    table = model.item_features
    assert table is not None  # a model with signals
    items = table[rows]  # popularity, trend, repeat rate, gap, log price, recent popularity
    gap = items[:, 3]
    scores = np.empty((3, n), dtype=np.float32)  # cf, ease, knn and their ranks
    scores[0] = _at(blend.cf, rows)
    scores[1] = ease[rows]
    scores[2] = _at(blend.knn, rows)
    out[:, 0:6:2] = scores.T
    out[:, 1:6:2] = _rank_among(scores).T
    out[:, 6] = blend.buy_at(rows)
    out[:, 7:9] = items[:, :2]
    out[:, 9] = own_orders
    out[:, 10] = np.where(bought, days, _NONE)
    out[:, 11] = np.where(bought & (gap > 0), days / np.maximum(gap, 1e-3), _NONE)
    out[:, 12:15] = items[:, 2:5]
    out[:, 15] = blend.distinct_items
    out[:, 16] = counts.max(initial=0.0)
    out[:, 17] = ages.min() if ages.size else _NONE
    out[:, 18] = ages.max() if ages.size else _NONE
    out[:, 19] = float(blend.cf is not None)
    out[:, 20] = items[:, 5]
    return out


@dataclass(frozen=True)
class TopItems:
    """One customer's ranked items: what :func:`top_k` and :meth:`Scores.reasons` give, or
    the two-stage ranking's answer."""

    rows: np.ndarray  # i4, best first
    scores: np.ndarray  # f4
    reasons: list[str]


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
    context = found.blend.context
    if context is not None:  # onto the blend's own range, against which the context weighs
        at = context[found.rows]
        personal = found.blend.total[found.rows] - at
        floor, span = personal.min(), personal.max() - personal.min()
        total = floor + total * span + at
    order = np.argsort(-total, kind="stable")[:k]  # ties by position: by row (sorted)
    rows = found.rows[order]
    return TopItems(rows.astype(np.int32), total[order], found.blend.reasons(rows))

"""THE item scoring used by serving and by offline evaluation alike.

One customer's score for item ``i`` is a weighted sum of components, each on a natural scale
(the reason code of a recommendation is its largest weighted component):

* ``cf`` = ``user_vector . item_factors[i]``, the ALS preference (about 0..1); reason
  ``recommended_for_you``;
* ``knn`` = sum over bought items j of ``repeat(j) * sim(j, i)``, scaled so the customer's best
  item gets 1; reason ``because_you_bought_similar``;
* ``repeat`` = ``log1p(count) * 0.5 ** (age_days / half_life)`` on bought items (count: the
  orders that contained the item); reason ``buy_again``;
* ``context`` = sum over context items c of ``weight(c) * sim(c, i)``; reason
  ``similar_to_viewed``;
* ``popularity`` = the popularity prior in [0, 1]; reason ``popular``.

``sim`` are the stored item neighbours (top K per item). A cold-start customer (no user vector
and no history) is scored by the popularity prior at full weight plus the context, so a product
page still drives "similar items" for an unknown visitor. Whether bought items may be returned
is the caller's choice: pass them in ``blocked`` to :func:`top_k` (``exclude_purchased``).

Many customers at once: :mod:`recsys.ranking.batch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.ranking.signals import ItemSignals, Ranker, positive_order

if TYPE_CHECKING:
    from recsys.bundle import ModelBundle

REASON_CODES: tuple[str, ...] = (
    "recommended_for_you",
    "because_you_bought_similar",
    "buy_again",
    "similar_to_viewed",
    "popular",
)


@dataclass(frozen=True)
class RankingParams:
    """Blend weights, stored in ``manifest.params["ranking"]``.

    The defaults were tuned on the shared data's validation split (train before 2011-05-01,
    score May 2011; ``benchmarks/quality.py --tune``); the knee is flat, +-0.3% NDCG@20.
    """

    cf_weight: float = 1.0
    repeat_weight: float = 0.5
    repeat_half_life_days: float = 60.0
    context_weight: float = 1.0  # not measurable offline (no page context in order data)
    popularity_weight: float = 0.2
    knn_weight: float = 0.1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RankingParams:
        """Build from a manifest dict; unknown keys are ignored, missing ones take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: float(v) for k, v in (d or {}).items() if k in names})

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RankingModel:
    """The in-memory arrays scoring needs, built once when a bundle is loaded."""

    item_factors: np.ndarray  # f4 (n_items, f)
    neighbour_indices: np.ndarray  # i4 (n_items, K), -1 pads
    neighbour_scores: np.ndarray  # f4 (n_items, K)
    popularity: np.ndarray  # f4 (n_items,) prior in [0, 1]
    params: RankingParams
    #: the two-stage ranking's item signals (None: a bundle without them, the blend only)
    signals: ItemSignals | None = None
    #: task (``discovery``, ``all``) -> the learned ranker serving it; a task without one is
    #: served by the blend (``recsys.ranking.candidates``; the manifest's ``params["ranker"]``)
    rankers: Mapping[str, Ranker] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return int(self.popularity.shape[0])

    @cached_property
    def item_norm_max(self) -> float:
        """The largest Euclidean norm of an item's factors (bounds the rounding of ``cf``)."""
        if self.item_factors.size == 0:
            return 0.0
        factors = self.item_factors.astype(np.float64)
        return float(np.sqrt(np.max(np.einsum("ij,ij->i", factors, factors))))

    @cached_property
    def popular_order(self) -> np.ndarray:
        """i8: the items with a popularity prior, most popular first, ties by row."""
        return positive_order(self.popularity)

    @cached_property
    def popularity_part(self) -> np.ndarray:
        """f4: the weighted popularity prior of a customer who is not cold (read only)."""
        part = self.popularity * np.float32(self.params.popularity_weight)
        part.flags.writeable = False
        return part

    @cached_property
    def item_features(self) -> np.ndarray | None:
        """f4 (n_items, 6): popularity, trend, repeat rate, repurchase gap, log price and recent
        popularity, the two-stage ranking's per-item features (read only; None without
        signals)."""
        s = self.signals
        if s is None:
            return None
        columns = (self.popularity, s.trend, s.repeat_rate, s.gap_days, s.log_price, s.recent)
        table = np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)
        table.flags.writeable = False
        return table

    @cached_property
    def neighbour_bins(self) -> np.ndarray:
        """i8 (n_items, K): each neighbour's row + 1, 0 for a pad (the batch's bin layout)."""
        idx = self.neighbour_indices.astype(np.int64)
        return np.where(idx >= 0, idx + 1, 0)

    @cached_property
    def neighbours_nonnegative(self) -> bool:
        """No stored similarity is negative (then ``knn`` lies within ``[0, knn_weight]``)."""
        return not bool(np.any(self.neighbour_scores < 0))

    def ranker_for(self, task: str) -> Ranker | None:
        """The learned ranker serving ``task``, None where the blend serves it."""
        return self.rankers.get(task) if self.signals is not None else None

    @classmethod
    def from_bundle(
        cls, bundle: ModelBundle, rankers: Mapping[str, Ranker] | None = None
    ) -> RankingModel:
        """``rankers``: the sessions of ``bundle.ranker_onnx`` (made by the caller: serving
        and training run ONNX, ``recsys`` does not)."""
        n_items = len(bundle.items)
        return cls(
            item_factors=np.ascontiguousarray(bundle.item_factors, dtype=np.float32),
            neighbour_indices=np.ascontiguousarray(bundle.neighbour_indices, dtype=np.int32),
            neighbour_scores=np.ascontiguousarray(bundle.neighbour_scores, dtype=np.float32),
            popularity=popularity_prior(bundle.popular, bundle.popular_scores, n_items),
            params=RankingParams.from_dict(bundle.manifest.params.get("ranking")),
            signals=ItemSignals.from_arrays(bundle.signals) if bundle.signals else None,
            rankers=dict(rankers or {}),
        )


def popularity_prior(rows: np.ndarray, scores: np.ndarray, n_items: int) -> np.ndarray:
    """Dense f4 prior in [0, 1] from the bundle's best-seller list (absent items get 0)."""
    prior = np.zeros(n_items, dtype=np.float32)
    if len(rows):
        top = float(np.max(scores))
        prior[np.asarray(rows, dtype=np.int64)] = np.asarray(scores, dtype=np.float32) / (
            top if top > 0 else 1.0
        )
    return prior


@dataclass(frozen=True)
class Scores:
    """Blended scores of every item, and the weighted components behind them."""

    total: np.ndarray  # f4 (n_items,)
    components: Mapping[str, np.ndarray]  # reason code -> weighted f4 (n_items,), active ones

    def reasons(self, rows: np.ndarray) -> list[str]:
        """Per item row, the code of the component that contributed most."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return []
        codes = list(self.components)
        if not codes:
            return ["popular"] * int(rows.size)
        stacked = np.stack([self.components[c][rows] for c in codes])
        return [codes[b] for b in np.argmax(stacked, axis=0).tolist()]


def repeat_scores(counts: np.ndarray, age_days: np.ndarray, half_life_days: float) -> np.ndarray:
    """``log1p(count) * 0.5 ** (age / half_life)``: frequent and recent purchases score high."""
    counts = np.asarray(counts, dtype=np.float32)
    age = np.maximum(np.asarray(age_days, dtype=np.float32), 0.0)
    decay = np.exp2(-age / np.float32(max(half_life_days, 1e-6)))
    return (np.log1p(np.maximum(counts, 0.0)) * decay).astype(np.float32)


def neighbour_sum(model: RankingModel, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_j weights[j] * sim(items[j], i)`` for every item i, from the stored neighbours."""
    if len(items) == 0:
        return np.zeros(model.n_items, dtype=np.float32)
    bins = model.neighbour_bins[items]  # row + 1; pads go to bin 0, dropped below
    sims = model.neighbour_scores[items] * np.asarray(weights, dtype=np.float32)[:, None]
    summed = np.bincount(bins.ravel(), weights=sims.ravel(), minlength=model.n_items + 1)
    return summed[1:].astype(np.float32)


def score_items(
    model: RankingModel,
    user_vector: np.ndarray | None,
    history_items: np.ndarray,
    history_counts: np.ndarray,
    history_age_days: np.ndarray,
    context_items: np.ndarray | None = None,
    context_weights: np.ndarray | None = None,
    cf_scores: np.ndarray | None = None,
) -> Scores:
    """Score every item for one customer (see the module docstring for the blend).

    ``cf_scores``: the collaborative scores already computed (``item_factors @ user_vector``,
    or an approximation of it from :mod:`recsys.ranking.retrieval`); None computes them.

    ``history_*`` are parallel arrays over the customer's distinct bought item rows (counts:
    orders; ages: days since the last one). An all-zero ``user_vector`` counts as none.
    """
    p = model.params
    n = model.n_items
    history_items = np.asarray(history_items, dtype=np.int64)
    if user_vector is not None and not np.any(user_vector):
        user_vector = None
    cold = user_vector is None and history_items.size == 0
    parts: dict[str, np.ndarray] = {}

    if user_vector is not None and p.cf_weight:
        cf = (
            model.item_factors @ np.asarray(user_vector, dtype=np.float32)
            if cf_scores is None
            else cf_scores
        )
        parts["recommended_for_you"] = cf * np.float32(p.cf_weight)
    if history_items.size:
        repeat = repeat_scores(history_counts, history_age_days, p.repeat_half_life_days)
        if p.knn_weight:
            knn = neighbour_sum(model, history_items, repeat)
            top = float(knn.max(initial=0.0))
            if top > 0:
                knn *= np.float32(p.knn_weight / top)
                parts["because_you_bought_similar"] = knn
        if p.repeat_weight:
            weighted = (p.repeat_weight * repeat).astype(np.float64)
            dense = np.bincount(history_items, weights=weighted, minlength=n)
            parts["buy_again"] = dense.astype(np.float32)
    if context_items is not None and len(context_items) and p.context_weight:
        context_items = np.asarray(context_items, dtype=np.int64)
        weights = (
            np.ones(len(context_items), dtype=np.float32)
            if context_weights is None
            else np.asarray(context_weights, dtype=np.float32)
        )
        context = neighbour_sum(model, context_items, weights)
        context *= np.float32(p.context_weight)
        parts["similar_to_viewed"] = context
    pop_weight = 1.0 if cold else p.popularity_weight
    if pop_weight:
        parts["popular"] = model.popularity * np.float32(pop_weight)
    total = np.zeros(n, dtype=np.float32)
    for part in parts.values():
        total += part
    return Scores(total=total, components=parts)


def top_k(
    scores: np.ndarray, k: int, blocked: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows (i4) and their scores, best first; ties go to the lower row.

    Rows where ``blocked`` is True are never returned; fewer than ``k`` rows come back when
    fewer are allowed. Uses a partial sort (``argpartition``), then sorts only the k winners.
    """
    scores = np.asarray(scores)
    if blocked is not None:
        candidates = np.flatnonzero(~np.asarray(blocked, dtype=bool))
        values = scores[candidates]
    else:
        candidates = None
        values = scores
    k = min(int(k), values.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=scores.dtype)
    if k < values.shape[0]:
        part = np.argpartition(-values, k - 1)[:k]
    else:
        part = np.arange(values.shape[0])
    rows = part if candidates is None else candidates[part]
    order = np.lexsort((rows, -values[part]))
    rows = rows[order]
    return rows.astype(np.int32), scores[rows]

"""Ranking many customers at once, the same answers as :mod:`recsys.ranking.scoring` one by one.

:func:`rank_items_batch` (the offers batch and export) gives, for each customer of a
:class:`CustomerBatch`, exactly the rows and reasons that
:func:`score_items` + :func:`top_k` + :meth:`Scores.reasons` give for that customer alone, at a
fraction of the cost: one matrix product for the ``cf`` part of every customer, one
``bincount`` over all the customers' neighbour lists for ``knn`` and ``context``, a row-wise
partial sort. Every part but ``cf`` is computed with the single path's very operations, in the
same order, so it is bit for bit the same; ``cf`` from a matrix product differs from the single
path's matrix-vector product in the last bits (a different order of summation), so a customer
whose ranking could turn on those bits -- two of its best ``k + 1`` totals, or its reason
components, closer than a proven bound on the difference -- is ranked again by the single path.
Where a learned ranker serves the task, the block goes through the two-stage ranking of
:mod:`recsys.ranking.candidates_block` instead (cf then from each customer's own product).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from recsys.ranking.candidates import TopItems, rank_candidates
from recsys.ranking.candidates_block import (
    BatchCounts,
    banned_rows,
    block_answers,
    rank_candidates_block,
    segment_heads,
)
from recsys.ranking.customer_batch import CustomerBatch
from recsys.ranking.exact_cf import exact_cf_scores
from recsys.ranking.scoring import (
    REASON_CODES,
    RankingModel,
    repeat_scores,
    score_items,
    top_k,
)
from recsys.ranking.workspace import Workspace, borrowed_workspace

#: Customers are scored a block at a time, about this many (customer, item) scores a block
#: (1 MB of f4 per array: the block's arrays stay in the CPU caches) ...
BLOCK_VALUES: Final = 1 << 18
#: ... but never fewer customers than this (the matrix product wants some).
MIN_BLOCK_ROWS: Final = 32
_EPS: Final = 2.0**-24  # float32 unit roundoff
_EMPTY_I8: Final = np.zeros(0, dtype=np.int64)
_EMPTY_F4: Final = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class BatchScores:
    """:class:`Scores` of ``n`` customers: ``total`` (n, n_items) and the weighted components
    (dense, or None where no customer has the component; ``buy_again`` is sparse: sorted flat
    indices ``customer * n_items + item`` and their values; ``popular`` is the prior times a
    weight per customer)."""

    total: np.ndarray  # f4 (n, n_items)
    cf: np.ndarray | None  # recommended_for_you
    knn: np.ndarray | None  # because_you_bought_similar
    buy_keys: np.ndarray  # i8, sorted
    buy_values: np.ndarray  # f4
    context: np.ndarray | None  # similar_to_viewed
    pop_weight: np.ndarray  # f4 (n,)
    active: np.ndarray  # bool (n, len(REASON_CODES)): the components score_items would have

    def components_at(self, popularity: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(n, k, len(REASON_CODES)) weighted components at item ``rows`` (n, k), in
        :data:`REASON_CODES` order; -inf where the customer lacks the component."""
        n, k = rows.shape
        n_items = popularity.shape[0]
        out = np.zeros((n, k, len(REASON_CODES)), dtype=np.float32)
        for c, dense in enumerate((self.cf, self.knn)):
            if dense is not None:
                out[:, :, c] = np.take_along_axis(dense, rows, axis=1)
        if self.buy_keys.size:
            flat = (np.arange(n, dtype=np.int64)[:, None] * n_items + rows).reshape(-1)
            at = np.minimum(np.searchsorted(self.buy_keys, flat), self.buy_keys.size - 1)
            found = self.buy_keys[at] == flat
            out[:, :, 2] = np.where(found, self.buy_values[at], 0.0).reshape(n, k)
        if self.context is not None:
            out[:, :, 3] = np.take_along_axis(self.context, rows, axis=1)
        out[:, :, 4] = popularity[rows] * self.pop_weight[:, None]
        out[~np.broadcast_to(self.active[:, None, :], out.shape)] = -np.inf
        return out

    def reasons(self, popularity: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(n, k) indices into :data:`REASON_CODES`: :meth:`Scores.reasons` of every row."""
        codes = np.argmax(self.components_at(popularity, rows), axis=2)
        codes[~self.active.any(axis=1)] = REASON_CODES.index("popular")
        return codes


def _neighbour_sums(
    model: RankingModel,
    indptr: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    workspace: Workspace,
    name: str,
) -> np.ndarray:
    """:func:`neighbour_sum` of every customer's list at once, (n, n_items) f4 (the workspace
    array ``name``): the same f4 products added in f8 in the same order, into bins
    ``customer * (n_items + 1) + item + 1`` (bin 0 of each customer takes the pads)."""
    n, n_items = indptr.shape[0] - 1, model.n_items
    shape = (items.shape[0], model.neighbour_bins.shape[1])
    bins = np.take(
        model.neighbour_bins, items, axis=0, out=workspace.array("bins", shape, np.int64)
    )
    sims = np.take(model.neighbour_scores, items, axis=0,
                   out=workspace.array("sims", shape, np.float32))  # fmt: skip
    sims *= weights[:, None]
    sims64 = workspace.array("sims64", shape, np.float64)
    np.copyto(sims64, sims)
    bins += np.repeat(np.arange(n, dtype=np.int64) * (n_items + 1), np.diff(indptr))[:, None]
    # bincount adds in input order in f8, as np.add.at would, at a fraction of its cost
    summed = np.bincount(
        bins.reshape(-1), weights=sims64.reshape(-1), minlength=n * (n_items + 1)
    ).reshape(n, n_items + 1)
    out = workspace.array(name, (n, n_items), np.float32)
    np.copyto(out, summed[:, 1:], casting="same_kind")
    return out


def score_items_batch(model: RankingModel, batch: CustomerBatch) -> BatchScores:
    """:func:`score_items` of every customer of ``batch`` (all at once: it holds (n, n_items)
    arrays; :func:`rank_items_batch` goes a block at a time): each part but ``cf`` bit for bit
    the single path's, ``cf`` (one matrix product) and so the total within float rounding."""
    return _score_block(model, batch, Workspace())


def _score_block(
    model: RankingModel, batch: CustomerBatch, workspace: Workspace, exact_cf: bool = False
) -> BatchScores:
    """``exact_cf``: ``cf`` from each customer's own matrix-vector product, the single path's
    very operation (:func:`exact_cf_scores`, the items in cached chunks; so every part, and
    the total, bit for bit the single path's), instead of
    one matrix product for the block (faster, within float rounding)."""
    p = model.params
    n, n_items = len(batch), model.n_items
    has_vector = batch.has_vector
    lengths = np.diff(batch.history_indptr)
    has_history = lengths > 0
    active = np.zeros((n, len(REASON_CODES)), dtype=bool)
    total = workspace.array("total", (n, n_items), np.float32)

    cf = None
    if p.cf_weight and has_vector.any():
        cf = workspace.array("cf", (n, n_items), np.float32)
        if exact_cf:
            cf[~has_vector] = 0.0
            rows = np.flatnonzero(has_vector)
            cf[rows] = exact_cf_scores(model.item_factors, batch.user_vectors[rows])
        else:
            vectors = batch.user_vectors
            if not has_vector.all():
                vectors = vectors * has_vector[:, None].astype(np.float32)
            np.matmul(vectors, model.item_factors.T, out=cf)
        cf *= np.float32(p.cf_weight)
        active[:, 0] = has_vector
        np.copyto(total, cf)
    else:
        total.fill(0.0)
    knn = None
    buy_keys, buy_values = _EMPTY_I8, _EMPTY_F4
    if has_history.any():
        repeat = repeat_scores(
            batch.history_counts, batch.history_age_days, p.repeat_half_life_days
        )
        if p.knn_weight:
            knn = _neighbour_sums(
                model, batch.history_indptr, batch.history_items, repeat, workspace, "knn"
            )
            top = np.maximum(knn.max(axis=1), np.float32(0.0)).astype(np.float64)
            scaled = top > 0
            scale = np.zeros(n, dtype=np.float32)
            scale[scaled] = (p.knn_weight / top[scaled]).astype(np.float32)
            knn[~scaled] = 0.0
            knn *= scale[:, None]
            active[:, 1] = scaled
            total += knn
        if p.repeat_weight:
            weighted = (p.repeat_weight * repeat).astype(np.float64)
            owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
            keys = owner * n_items + batch.history_items
            buy_keys, inverse = np.unique(keys, return_inverse=True)
            buy_values = np.bincount(inverse, weights=weighted).astype(np.float32)
            active[:, 2] = has_history
            flat = total.reshape(-1)
            flat[buy_keys] += buy_values
    context = None
    if p.context_weight and batch.context_items.size:
        context = _neighbour_sums(
            model,
            batch.context_indptr,
            batch.context_items,
            batch.context_weights,
            workspace,
            "context",
        )
        context *= np.float32(p.context_weight)
        active[:, 3] = np.diff(batch.context_indptr) > 0
        total += context
    cold = ~has_vector & ~has_history
    pop_weight = np.where(cold, 1.0, p.popularity_weight).astype(np.float32)
    active[:, 4] = pop_weight != 0
    popular = workspace.array("popular", (n, n_items), np.float32)
    np.multiply(model.popularity[None, :], pop_weight[:, None], out=popular)
    total += popular
    return BatchScores(total, cf, knn, buy_keys, buy_values, context, pop_weight, active)


def rank_one(
    model: RankingModel, customer: tuple[Any, ...], k: int, blocked: np.ndarray | None
) -> TopItems:
    """The single path: :func:`score_items` (``customer``: its arguments after the model),
    :func:`top_k`, :meth:`Scores.reasons`."""
    scores = score_items(model, *customer)
    rows, values = top_k(scores.total, k, blocked)
    return TopItems(rows, values, scores.reasons(rows))


def rank_customer(
    model: RankingModel,
    customer: tuple[Any, ...],
    k: int,
    blocked: np.ndarray | None,
    task: str = "all",
) -> TopItems:
    """THE served ranking of one customer for ``task`` (``discovery``: bought items blocked;
    ``all``): the learned ranker's (:mod:`recsys.ranking.candidates`) where the model has
    one for the task, else the blend's (:func:`rank_one`). The page view, the batch and the
    offline evaluation all rank through here. A customer with neither a vector nor a history
    (cold start: popularity and the page's context) is always ranked by the blend."""
    ranker = model.ranker_for(task)
    vector = customer[0]
    known = len(customer[1]) > 0 or (vector is not None and bool(np.any(vector)))
    if ranker is None or model.signals is None or not known:
        return rank_one(model, customer, k, blocked)
    return rank_candidates(model, model.signals, ranker, customer, k, blocked)


def rank_items_batch(
    model: RankingModel,
    batch: CustomerBatch,
    k: int,
    blocked: np.ndarray | None = None,
    blocked_rows: Sequence[np.ndarray] | None = None,
    task: str = "all",
    counts: BatchCounts | None = None,
) -> list[TopItems]:
    """Every customer's best ``k`` items, exactly as :func:`rank_customer` ranks them.

    ``blocked``: items never returned (bool per item, for everyone); ``blocked_rows``: per
    customer, more item rows never returned. The rows and reasons are the single path's; the
    scores equal its within float rounding (``cf`` comes from a matrix product). Customers are
    scored a block at a time (:data:`BLOCK_VALUES`): by the blend (:func:`_rank_block`), or
    where a learned ranker serves ``task`` by the two-stage ranking of the whole block
    (:func:`recsys.ranking.candidates_block.rank_candidates_block`: one ranker run a block),
    a customer whose answer float rounding could change ranked again by :func:`rank_customer`.
    """
    n, n_items = len(batch), model.n_items
    size = max(MIN_BLOCK_ROWS, BLOCK_VALUES // max(n_items, 1))
    mask = None if blocked is None else np.asarray(blocked, dtype=bool)
    learned = model.ranker_for(task) is not None
    out: list[TopItems] = []
    with borrowed_workspace() as workspace:
        for start in range(0, n, size):
            stop = min(start + size, n)
            extra = None if blocked_rows is None else blocked_rows[start:stop]
            block = batch.block(start, stop)
            if learned:
                out += _rank_learned_block(model, block, k, mask, extra, task, workspace, counts)
            else:
                out += _rank_block(model, block, k, mask, extra, workspace)
    if counts is not None:
        counts.customers += n
    return out


def _rank_learned_block(
    model: RankingModel,
    batch: CustomerBatch,
    k: int,
    blocked: np.ndarray | None,
    blocked_rows: Sequence[np.ndarray] | None,
    task: str,
    workspace: Workspace,
    counts: BatchCounts | None,
) -> list[TopItems]:
    n, n_items = len(batch), model.n_items
    k = min(int(k), n_items)
    ranker, signals = model.ranker_for(task), model.signals
    if k <= 0 or ranker is None or signals is None:
        return [TopItems(np.zeros(0, np.int32), _EMPTY_F4, []) for _ in range(n)]
    scores = _score_block(model, batch, workspace, exact_cf=True)
    banned = banned_rows(workspace.array("banned", (n, n_items), np.bool_), blocked, blocked_rows)
    found = rank_candidates_block(model, signals, ranker, batch, scores, k, banned)
    if counts is not None:
        cold = ~batch.has_vector & (np.diff(batch.history_indptr) == 0)
        counts.cold += int(cold.sum())
        counts.redone += int((found.redo & ~cold).sum())
    return block_answers(
        found.rows,
        found.scores,
        found.reasons,
        found.counts,
        found.redo,
        lambda i: rank_customer(
            model, batch.customer(i), k, _mask_of(n_items, blocked, blocked_rows, i), task
        ),
    )


def _rank_block(
    model: RankingModel,
    batch: CustomerBatch,
    k: int,
    blocked: np.ndarray | None,
    blocked_rows: Sequence[np.ndarray] | None,
    workspace: Workspace,
) -> list[TopItems]:
    n, n_items = len(batch), model.n_items
    k = min(int(k), n_items)
    if k <= 0:
        return [TopItems(np.zeros(0, np.int32), _EMPTY_F4, []) for _ in range(n)]
    scores = _score_block(model, batch, workspace)
    component_error, total_error = _cf_error_bounds(model, batch, scores)
    total = scores.total  # masked in place: ours
    if blocked is not None:
        total[:, blocked] = -np.inf
    if blocked_rows is not None:
        for i, rows in enumerate(blocked_rows):
            if len(rows):
                total[i, np.asarray(rows, dtype=np.int64)] = -np.inf
    wide = min(k + 1, n_items)  # the one after the k-th tells whether the cut is clear
    best, values = _best(total, wide, workspace)
    finite = np.isfinite(values)
    chosen, chosen_values = best[:, :k], values[:, :k]
    parts = scores.components_at(model.popularity, np.maximum(chosen, 0))
    codes = np.argmax(parts, axis=2)
    codes[~scores.active.any(axis=1)] = REASON_CODES.index("popular")

    # ranked again by the single path: a tie at the cut (top_k's argpartition settles it its
    # own way), or, with cf, neighbours among the best k + 1, or a reason's best two
    # components, closer than the rounding of cf could move them
    redo = np.zeros(n, dtype=bool)
    if wide > k:
        redo |= finite[:, k] & (values[:, k - 1] == values[:, k])
    uses_cf = scores.active[:, 0]
    if uses_cf.any():
        with np.errstate(invalid="ignore"):
            gaps = values[:, :-1] - values[:, 1:]
        redo |= uses_cf & (finite[:, 1:] & (gaps <= 2.0 * total_error[:, None])).any(axis=1)
        cf_part, others = parts[:, :, 0], parts[:, :, 1:].max(axis=2)
        with np.errstate(invalid="ignore"):
            near = np.abs(cf_part - others) <= 2.0 * component_error[:, None]
        redo |= uses_cf & (near & finite[:, :k]).any(axis=1)

    return block_answers(
        chosen,
        chosen_values,
        codes,
        finite[:, :k].sum(axis=1),
        redo,
        lambda i: rank_one(
            model, batch.customer(i), k, _mask_of(n_items, blocked, blocked_rows, i)
        ),
    )


def _best(total: np.ndarray, wide: int, workspace: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``wide`` best finite scores, best first, equal scores by column: the columns
    (-1 pads) and the scores (-inf pads), both (n, wide)."""
    n, n_items = total.shape
    cut = workspace.array("cut", total.shape, np.float32)
    np.copyto(cut, total)
    cut.partition(n_items - wide, axis=1)  # in place: no (n, n_items) index array
    threshold = np.maximum(cut[:, n_items - wide], -np.finfo(np.float32).max)
    keep = workspace.array("keep", total.shape, np.bool_)
    np.greater_equal(total, threshold[:, None], out=keep)
    flat = np.flatnonzero(keep)  # (np.nonzero of a 2-d array is ten times slower)
    rows, cols = np.divmod(flat, n_items)
    found = total.reshape(-1)[flat]
    order = np.lexsort((cols, -found, rows))
    rows, cols, found = rows[order], cols[order], found[order]
    return segment_heads(rows, cols, found, np.searchsorted(rows, np.arange(n)), n, wide)


def _mask_of(
    n_items: int, blocked: np.ndarray | None, blocked_rows: Sequence[np.ndarray] | None, i: int
) -> np.ndarray | None:
    extra = None if blocked_rows is None else blocked_rows[i]
    if extra is None or not len(extra):
        return blocked
    mask = np.zeros(n_items, dtype=bool) if blocked is None else blocked.copy()
    mask[np.asarray(extra, dtype=np.int64)] = True
    return mask


def _largest_magnitude(values: np.ndarray) -> np.ndarray:
    """Each row's largest absolute value (without an (n, n_items) temporary)."""
    return np.maximum(values.max(axis=1), -values.min(axis=1)).astype(np.float64)


def _cf_error_bounds(
    model: RankingModel, batch: CustomerBatch, scores: BatchScores
) -> tuple[np.ndarray, np.ndarray]:
    """Per customer, how far the batch's ``cf`` component and total can be from the single
    path's (0 without cf).

    A dot product of ``f`` terms summed in any order is within ``gamma_f * sum |u_j y_j|`` of
    the exact one (``gamma_f = f eps / (1 - f eps)``, ``eps = 2**-24``) and ``sum |u_j y_j| <=
    |u| |y|`` (Cauchy-Schwarz), so the matrix product and the matrix-vector product differ by
    at most ``2 gamma_f |u| max|y|``; the weight's product rounds once more (``eps`` of the
    component each), and each of the blend's four additions at most ``eps`` of the largest
    partial sum, bounded by the sum of the components' largest magnitudes. Both bounds are
    doubled for safety.
    """
    n = len(batch)
    uses = scores.active[:, 0]
    if scores.cf is None:
        return np.zeros(n), np.zeros(n)
    p = model.params
    f = model.item_factors.shape[1]
    gamma = f * _EPS / (1.0 - f * _EPS)
    vectors = batch.user_vectors.astype(np.float64)
    reach = np.sqrt(np.einsum("ij,ij->i", vectors, vectors)) * model.item_norm_max
    cf_largest = abs(p.cf_weight) * reach * (1.0 + 4.0 * gamma)
    component = 2.0 * (2.0 * gamma * abs(p.cf_weight) * reach + 2.0 * _EPS * cf_largest)
    largest = cf_largest
    if scores.knn is not None:
        largest = largest + (
            abs(p.knn_weight) * 1.01
            if model.neighbours_nonnegative
            else _largest_magnitude(scores.knn)
        )
    if scores.buy_keys.size:
        largest = largest + np.bincount(
            scores.buy_keys // model.n_items, weights=np.abs(scores.buy_values), minlength=n
        )
    if scores.context is not None:
        largest = largest + _largest_magnitude(scores.context)
    largest = largest + np.abs(scores.pop_weight) * float(np.abs(model.popularity).max())
    total = component + 2.0 * 8.0 * _EPS * largest
    return np.where(uses, component, 0.0), np.where(uses, total, 0.0)

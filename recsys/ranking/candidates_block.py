"""The two-stage ranking (:mod:`recsys.ranking.candidates`) of a block of customers at once.

:func:`rank_candidates_block` gives every customer of a block what
:func:`~recsys.ranking.candidates.rank_candidates` gives it alone (the same rows, order and
reasons; scores within float rounding), at a fraction of the cost:

* stage 1 over the block's score matrices (the blend's, from the batch scorer: one matrix
  product for ``cf``): each generator's best per row by a partition of the whole matrix, EASE
  of every customer as one sparse-by-dense product (the same f4 sums in the same order as the
  single path's), own items, popular, trending and recent lists by a cumulative count of the
  allowed;
* the features of every candidate of the block in one array, ONE ranker run for the block;
* per-customer normalisation by segment reductions (``np.minimum.reduceat``) and the order by
  one ``lexsort`` on (customer, -score, row); reasons for the ``k`` winners only.

The block's blend comes from the batch scorer with ``cf`` from each customer's own
matrix-vector product (``exact_cf``): a matrix product for the block would differ from the
page view's in the last bits, and the rounding bound that ``recsys.ranking.batch`` uses for
the blend is about 100 times the differences seen (7e-5 against 6e-7 on the shared model), so
nearly every customer had a ``cf`` feature within the bound of one of the ranker's 118 split
values on it: 97% of the customers had to be ranked again. The products cost about 30 us a
customer; with them every feature, and so the ranker's output, is bit for bit the single
path's. What is left to the single path (``redo``): a tie at a cut of a generator's best
(``argpartition`` settles it its own way), and a customer with neither vector nor history
(cold start: the blend's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import scipy.sparse as sp

from recsys.ranking.candidates import (
    FEATURES,
    MAX_EASE_HISTORY,
    MAX_OWN,
    PER_GENERATOR,
    TopItems,
)
from recsys.ranking.customer_batch import CustomerBatch
from recsys.ranking.scoring import REASON_CODES, RankingModel
from recsys.ranking.signals import ItemSignals, Ranker

_NONE: Final = np.float32(-1.0)


class BlockScores(Protocol):
    """What the batch scorer gives for a block (``recsys.ranking.batch.BatchScores``)."""

    @property
    def total(self) -> np.ndarray: ...
    @property
    def cf(self) -> np.ndarray | None: ...
    @property
    def knn(self) -> np.ndarray | None: ...
    @property
    def buy_keys(self) -> np.ndarray: ...
    @property
    def buy_values(self) -> np.ndarray: ...
    @property
    def context(self) -> np.ndarray | None: ...
    @property
    def active(self) -> np.ndarray: ...

    def components_at(self, popularity: np.ndarray, rows: np.ndarray) -> np.ndarray: ...


@dataclass
class BatchCounts:
    """What :func:`rank_items_batch` did (added to across calls): customers ranked, and of
    those by the learned ranker, how many the single path ranked again (``redone``: where
    float rounding could have changed the answer, or a tie at a cut) and how many were cold
    (no vector, no history: the blend's)."""

    customers: int = 0
    redone: int = 0
    cold: int = 0


def banned_rows(
    out: np.ndarray, blocked: np.ndarray | None, blocked_rows: Sequence[np.ndarray] | None
) -> np.ndarray:
    """``out`` (bool (n, n_items)): True at the rows never returned to each customer, those
    ``blocked`` for everyone and its own ``blocked_rows``."""
    out[:] = False if blocked is None else blocked[None, :]
    if blocked_rows is not None:
        for i, rows in enumerate(blocked_rows):
            if len(rows):
                out[i, np.asarray(rows, dtype=np.int64)] = True
    return out


@dataclass(frozen=True)
class BlockRanking:
    """Each customer's best ``k``: rows (-1 pads), scores, reason indices into
    :data:`REASON_CODES`, how many; ``redo``: customers the single path must rank."""

    rows: np.ndarray  # i8 (n, k)
    scores: np.ndarray  # f4 (n, k)
    reasons: np.ndarray  # i8 (n, k)
    counts: np.ndarray  # i8 (n,)
    redo: np.ndarray  # bool (n,)


def rank_candidates_block(
    model: RankingModel,
    signals: ItemSignals,
    ranker: Ranker,
    batch: CustomerBatch,
    scores: BlockScores,
    k: int,
    banned: np.ndarray,
) -> BlockRanking:
    """The block's two-stage ranking; ``scores``: the batch scorer's for ``batch`` with
    ``cf`` from each customer's own matrix-vector product (so bit for bit the single
    path's blend); ``banned``: bool (n, n_items), the rows never returned to each customer."""
    n, n_items = len(batch), model.n_items
    lengths = np.diff(batch.history_indptr)
    has_history = lengths > 0
    uses_cf = scores.active[:, 0]
    redo = ~(batch.has_vector | has_history)  # cold: the blend's, the caller's
    allowed = ~banned

    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    recent = np.lexsort((batch.history_age_days, owner))  # stable: ties in history order
    position = np.arange(recent.size) - batch.history_indptr[owner[recent]]
    recent_items = batch.history_items[recent]
    recent_owner = owner[recent]

    parts: list[np.ndarray] = []
    keys, again = _top_n(scores.total, allowed, k)
    parts.append(keys)
    redo |= again
    parts.append(_first_allowed(model.popular_order, allowed, PER_GENERATOR))
    parts.append(_first_allowed(signals.trend_order, allowed, PER_GENERATOR))
    parts.append(_first_allowed(signals.recent_order, allowed, PER_GENERATOR))
    own = position < MAX_OWN
    own &= allowed[recent_owner, recent_items]
    parts.append(recent_owner[own] * n_items + recent_items[own])
    for dense, column in ((scores.knn, 1), (scores.context, 3)):
        if dense is not None:
            mask = allowed & (dense > 0) & scores.active[:, column][:, None]
            keys, again = _top_n(dense, mask, PER_GENERATOR)
            parts.append(keys)
            redo |= again
    if scores.cf is not None:
        keys, again = _top_n(scores.cf, allowed & uses_cf[:, None], PER_GENERATOR)
        parts.append(keys)
        redo |= again
    ease = _ease_block(signals, n, recent_owner, recent_items, position)
    if ease is not None:
        columns = signals.ease_columns
        mask = allowed[:, columns] & (ease > 0) & has_history[:, None]
        keys, again = _top_n(ease, mask, PER_GENERATOR)
        parts.append(keys // columns.size * n_items + columns[keys % columns.size])
        redo |= again

    chosen = np.zeros((n, n_items), dtype=bool)
    for part in parts:
        chosen.reshape(-1)[part] = True
    chosen[redo] = False  # no ranker work for those the single path ranks
    keys = np.flatnonzero(chosen).astype(np.int64)  # sorted, distinct
    customer, rows = np.divmod(keys, n_items)
    starts = np.searchsorted(customer, np.arange(n + 1))
    features = _features(model, signals, batch, scores, ease, keys, customer, rows, starts)
    if keys.size:
        learned = np.asarray(ranker.predict(features), dtype=np.float32).reshape(-1)
    else:
        learned = np.zeros(0, dtype=np.float32)
    final = _normalised(learned, starts, customer)
    if scores.context is not None and scores.active[:, 3].any():
        final = _with_context(scores, final, customer, rows, starts)

    order = _descending(final, customer)  # ties by row: the keys are sorted
    ranked_customer, ranked_rows, ranked = customer[order], rows[order], final[order]
    out_rows, out_scores = segment_heads(ranked_customer, ranked_rows, ranked, starts, n, k)
    counts = np.minimum(np.diff(starts), k)

    components = scores.components_at(model.popularity, np.maximum(out_rows, 0))
    codes = np.argmax(components, axis=2)
    codes[~scores.active.any(axis=1)] = REASON_CODES.index("popular")
    return BlockRanking(out_rows, out_scores, codes, counts, redo)


def _top_n(values: np.ndarray, allowed: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat keys (``row * columns + column``) of each row's ``n`` best allowed values, and
    the rows whose cut is a tie (the ``n``-th and the next equal: ``argpartition`` settles
    it its own way, the single path's)."""
    count, columns = values.shape
    redo = np.zeros(count, dtype=bool)
    if n <= 0 or count == 0:
        return np.zeros(0, dtype=np.int64), redo
    threshold = np.full(count, -np.inf, dtype=np.float32)
    if columns > n:
        over = np.count_nonzero(allowed, axis=1) > n
        if over.any():
            every = bool(over.all())
            negated = np.negative(values if every else values[over])
            negated[~(allowed if every else allowed[over])] = np.inf
            negated.partition(n, axis=1)  # in place; one pass: [:, n] is the next after the cut
            nth = -negated[:, :n].max(axis=1)
            threshold[over] = nth
            redo[over] = nth == -negated[:, n]
    keep = np.greater_equal(values, threshold[:, None])
    keep &= allowed
    return np.flatnonzero(keep).astype(np.int64), redo


def _first_allowed(order: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Flat keys of each row's first ``n`` allowed items of a fixed ``order``."""
    count, n_items = allowed.shape
    head = order[: 4 * n]
    ok = allowed[:, head]
    taken = np.cumsum(ok, axis=1, dtype=np.int32)
    keep = ok & (taken <= n)
    customer, at = np.nonzero(keep)
    keys = customer * n_items + head[at]
    short = (taken[:, -1] < n) if head.size else np.ones(count, dtype=bool)
    if order.size > head.size and short.any():
        rows = np.flatnonzero(short)
        ok = allowed[rows][:, order]
        keep = ok & (np.cumsum(ok, axis=1, dtype=np.int32) <= n)
        which, at = np.nonzero(keep)
        keys = np.concatenate([keys[~short[customer]], rows[which] * n_items + order[at]])
    return keys.astype(np.int64)


def _ease_block(
    signals: ItemSignals,
    n: int,
    owner: np.ndarray,
    items: np.ndarray,
    position: np.ndarray,
) -> np.ndarray | None:
    """f4 (n, m): each customer's EASE scores over the EASE columns from its
    :data:`MAX_EASE_HISTORY` most recent items (``owner``/``items``/``position``: the
    histories most recent first), a sparse-by-dense product: the rows of the customer's
    columns added in column order in f4, as :meth:`ItemSignals.ease_scores` adds them."""
    m = signals.ease_columns.size
    if not m or not owner.size:
        return None
    columns = signals.ease_position[items[position < MAX_EASE_HISTORY]]
    who = owner[position < MAX_EASE_HISTORY]
    keys = np.unique(who[columns >= 0] * m + columns[columns >= 0])
    row, column = np.divmod(keys, m)
    indptr = np.searchsorted(row, np.arange(n + 1))
    ones = np.ones(keys.size, dtype=np.float32)
    x = sp.csr_matrix((ones, column, indptr), shape=(n, m))
    return np.asarray(x @ signals.ease_weights, dtype=np.float32)


def _per_customer(
    values: np.ndarray, indptr: np.ndarray, reduce: np.ufunc, empty: float
) -> np.ndarray:
    """f4 (n,): ``reduce`` over each customer's segment of ``values``, ``empty`` where none."""
    n = indptr.shape[0] - 1
    out = np.full(n, empty, dtype=np.float32)
    full = indptr[1:] > indptr[:-1]
    if full.any():
        out[full] = reduce.reduceat(values, indptr[:-1][full])
    return out


def _descending(values: np.ndarray, customer: np.ndarray) -> np.ndarray:
    """The order by customer, then value (highest first), then position: a stable sort of
    one u8 key (the customer over the order-preserving bits of ``-value``), a ``lexsort`` on
    (customer, -value) in one pass; -0 and 0 are one value, as in a float sort."""
    negated = np.negative(values, dtype=np.float32) + np.float32(0.0)  # -0 -> +0
    bits = negated.view(np.uint32)
    ordered = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    key = (customer.astype(np.uint64) << np.uint64(32)) | ordered.astype(np.uint64)
    return np.argsort(key, kind="stable")


def block_answers(
    rows: np.ndarray,
    scores: np.ndarray,
    codes: np.ndarray,
    counts: np.ndarray,
    redo: np.ndarray,
    single: Callable[[int], TopItems],
) -> list[TopItems]:
    """A block's answers: customer ``i``'s first ``counts[i]`` rows, scores and reasons
    (``codes`` into :data:`REASON_CODES`), or ``single(i)``, the single path, where ``redo``."""
    rows_i4 = rows.astype(np.int32)
    names = [[REASON_CODES[j] for j in row] for row in codes.tolist()]
    out: list[TopItems] = []
    for i, (c, again) in enumerate(zip(counts.tolist(), redo.tolist(), strict=True)):
        if again:
            out.append(single(i))
        else:
            out.append(TopItems(rows_i4[i, :c], scores[i, :c], names[i][:c]))
    return out


def segment_heads(
    segment: np.ndarray,
    columns: np.ndarray,
    values: np.ndarray,
    starts: np.ndarray,
    n: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``width`` columns and values of each of ``n`` segments, one row a segment,
    padded with -1 and -inf: ``segment`` (sorted) names each element's segment, ``starts[i]``
    is where segment ``i`` begins."""
    rank = np.arange(segment.size) - starts[segment]
    take = rank < width
    heads = np.full((n, width), -1, dtype=np.int64)
    head_values = np.full((n, width), -np.inf, dtype=np.float32)
    heads[segment[take], rank[take]] = columns[take]
    head_values[segment[take], rank[take]] = values[take]
    return heads, head_values


def _rank_in_segments(values: np.ndarray, customer: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """0 for each customer's best value, ties by position (``_rank_among`` per segment)."""
    rank = np.empty(values.shape[0], dtype=np.float32)
    rank[_descending(values, customer)] = np.arange(values.shape[0]) - starts[customer]
    return rank


def _features(
    model: RankingModel,
    signals: ItemSignals,
    batch: CustomerBatch,
    scores: BlockScores,
    ease: np.ndarray | None,
    keys: np.ndarray,
    customer: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
) -> np.ndarray:
    """The candidates' :data:`FEATURES`, as ``candidates._features`` computes each one's."""
    n, n_items = len(batch), model.n_items
    out = np.empty((keys.size, len(FEATURES)), dtype=np.float32)
    zero = np.zeros(keys.size, dtype=np.float32)
    uses_cf = scores.active[:, 0]
    cf = zero if scores.cf is None else scores.cf[customer, rows]
    cf = np.where(uses_cf[customer], cf, np.float32(0.0))
    if ease is None:
        ease_values = zero
    else:
        at = signals.ease_position[rows]
        ease_values = np.where(at >= 0, ease[customer, np.maximum(at, 0)], np.float32(0.0))
    knn = zero if scores.knn is None else scores.knn[customer, rows]
    buy = zero
    if scores.buy_keys.size:
        at = np.minimum(np.searchsorted(scores.buy_keys, keys), scores.buy_keys.size - 1)
        buy = np.where(scores.buy_keys[at] == keys, scores.buy_values[at], np.float32(0.0))

    indptr = batch.history_indptr
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    history = owner * n_items + batch.history_items
    counts, ages = batch.history_counts, batch.history_age_days
    own_orders = np.zeros(keys.size, dtype=np.float32)
    days = np.full(keys.size, np.inf, dtype=np.float32)
    if history.size and keys.size:
        at = np.minimum(np.searchsorted(keys, history), keys.size - 1)
        mine = keys[at] == history
        np.add.at(own_orders, at[mine], counts[mine])
        np.minimum.at(days, at[mine], ages[mine])
    bought = np.isfinite(days)
    gap = signals.gap_days[rows]
    distinct = np.unique(history)
    out[:, 0] = cf
    out[:, 1] = _rank_in_segments(cf, customer, starts)
    out[:, 2] = ease_values
    out[:, 3] = _rank_in_segments(ease_values, customer, starts)
    out[:, 4] = knn
    out[:, 5] = _rank_in_segments(knn, customer, starts)
    out[:, 6] = buy
    out[:, 7] = model.popularity[rows]
    out[:, 8] = signals.trend[rows]
    out[:, 9] = own_orders
    out[:, 10] = np.where(bought, days, _NONE)
    with np.errstate(invalid="ignore", divide="ignore"):
        rhythm = days / np.maximum(gap, 1e-3)
    out[:, 11] = np.where(bought & (gap > 0), rhythm, _NONE)
    out[:, 12] = signals.repeat_rate[rows]
    out[:, 13] = gap
    out[:, 14] = signals.log_price[rows]
    out[:, 15] = np.bincount(distinct // n_items, minlength=n).astype(np.float32)[customer]
    most = np.maximum(_per_customer(counts, indptr, np.maximum, 0.0), np.float32(0.0))
    out[:, 16] = most[customer]
    out[:, 17] = _per_customer(ages, indptr, np.minimum, -1.0)[customer]
    out[:, 18] = _per_customer(ages, indptr, np.maximum, -1.0)[customer]
    out[:, 19] = uses_cf[customer].astype(np.float32)
    out[:, 20] = signals.recent[rows]
    return out


def _normalised(learned: np.ndarray, starts: np.ndarray, customer: np.ndarray) -> np.ndarray:
    """Each customer's ranker scores scaled to [0, 1] over its candidates (0 if all equal)."""
    low = _per_customer(learned, starts, np.minimum, 0.0)[customer]
    high = _per_customer(learned, starts, np.maximum, 0.0)[customer]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (learned - low) / (high - low)
    return np.where(high > low, scaled, np.float32(0.0)).astype(np.float32)


def _with_context(
    scores: BlockScores,
    final: np.ndarray,
    customer: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
) -> np.ndarray:
    """The customers with a page context: the ranker's order mapped onto the range of the
    blend's context-free total over the candidates, plus the context."""
    assert scores.context is not None
    at = scores.context[customer, rows]
    personal = scores.total[customer, rows] - at
    floor = _per_customer(personal, starts, np.minimum, 0.0)
    span = _per_customer(personal, starts, np.maximum, 0.0) - floor
    mapped = floor[customer] + final * span[customer] + at
    return np.where(scores.active[customer, 3], mapped, final).astype(np.float32)

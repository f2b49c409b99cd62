"""Stage 1's selections: each generator's best allowed rows, all generators in one pass.

:func:`best_rows` is the definition: the rows of the ``n`` best allowed values (an
``argpartition``; positive values only for the generators that score a few items, ``knn``,
``context``, EASE). :func:`union_of_best` gives the union of several such selections at a
fraction of the cost: the values stacked once (``-inf`` on blocked rows), a lower bound of
each one's ``n``-th best value from block maxima, and a sort of the few rows above it. Where
exactly ``n`` rows reach the ``n``-th value the selection is the only possible one, so it is
the definition's; where more tie with it (the definition's ``argpartition`` then chooses among
the tied rows its own way), that generator's rows are taken from the definition itself, as
they are for every generator when a value is not finite (never seen from the blend).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from recsys.ranking.scoring import top_k

#: A selection: the values over every item, how many rows, positive values only or not, and
#: whether it is the blend's :func:`top_k` (any value counts) rather than a generator's.
Source = tuple[np.ndarray, int, bool, bool]
_LOWEST: Final = -np.finfo(np.float32).max
_TINY: Final = np.nextafter(np.float32(0), np.float32(1))
#: Blocks of the block-maximum bound (at most this many rows per selection take the fast path).
BLOCKS: Final = 128


def best_rows(values: np.ndarray, blocked: np.ndarray | None, n: int, positive: bool) -> np.ndarray:
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


def first_allowed(order: np.ndarray, blocked: np.ndarray | None, n: int) -> np.ndarray:
    """The first ``n`` rows of a fixed ``order`` that are not blocked."""
    if blocked is None:
        return order[:n]
    head = order[: 4 * n]
    head = head[~blocked[head]]
    return head[:n] if head.size >= n else order[~blocked[order]][:n]


def _defined(source: Source, blocked: np.ndarray | None) -> np.ndarray:
    values, n, positive, blend = source
    if blend:
        return top_k(values, n, blocked)[0].astype(np.int64)
    return best_rows(values, blocked, n, positive)


def union_of_best(
    sources: Sequence[Source], blocked: np.ndarray | None, n_items: int
) -> np.ndarray:
    """bool (n_items,): the union of every source's selection (:func:`best_rows`, or
    :func:`top_k` for the blend's), as the definitions select them.

    The values are stacked with ``-inf`` on blocked rows and cut into :data:`BLOCKS` blocks;
    the ``n``-th largest block maximum is at most the ``n``-th largest value (those ``n``
    maxima are ``n`` values), so the rows at or above it hold the selection: a few times
    ``n`` rows, sorted to find the ``n``-th value exactly.
    """
    chosen = np.zeros(n_items, dtype=bool)
    sources = [s for s in sources if s[1] > 0]
    if not sources or n_items == 0:
        return chosen
    wanted = [min(s[1], n_items) for s in sources]
    width = -(-n_items // BLOCKS)
    stack = np.empty((len(sources), BLOCKS * width), dtype=np.float32)
    stack[:, n_items:] = -np.inf
    for i, (values, _, _, _) in enumerate(sources):
        stack[i, :n_items] = values
    if max(wanted) > BLOCKS or not np.isfinite(stack[:, :n_items]).all():
        for source in sources:
            chosen[_defined(source, blocked)] = True
        return chosen
    if blocked is not None:
        np.copyto(stack[:, :n_items], -np.inf, where=blocked)
    # block j: columns j, j + BLOCKS, ... (a maximum over rows of a (width, BLOCKS) view)
    maxima = np.sort(stack.reshape(len(sources), width, BLOCKS).max(axis=1), axis=1)
    bound = maxima[np.arange(len(sources)), BLOCKS - np.array(wanted)]
    floors = np.array([_TINY if s[2] else _LOWEST for s in sources], dtype=np.float32)
    # positive values only where asked; never a -inf (blocked) row
    np.maximum(bound, floors, out=bound)
    flat = np.flatnonzero(stack >= bound[:, None])
    owner, rows = np.divmod(flat, BLOCKS * width)
    values = stack.reshape(-1)[flat]
    order = np.lexsort((-values, owner))  # by source, best first
    rows, values = rows[order], values[order]
    starts = np.searchsorted(owner[order], np.arange(len(sources) + 1)).tolist()
    for i, want in enumerate(wanted):
        start, stop = starts[i], starts[i + 1]
        if stop - start > want and values[start + want] == values[start + want - 1]:
            # tied at the cut: argpartition chooses among the tied its own way
            chosen[_defined(sources[i], blocked)] = True
        else:  # the best ``want``, or every allowed row when there are fewer
            chosen[rows[start : min(start + want, stop)]] = True
    return chosen

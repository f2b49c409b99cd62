"""Many customers' scoring inputs at once, in CSR form: what the batch scorer takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

_EMPTY_I8: Final = np.zeros(0, dtype=np.int64)
_EMPTY_F4: Final = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class CustomerBatch:
    """What :func:`score_items` takes, for ``n`` customers at once (lists in CSR form).

    Customer ``i``'s history is ``history_items[history_indptr[i]:history_indptr[i + 1]]``
    (counts and ages alike), its context likewise; ``has_vector[i]`` False means no user vector
    (its row of ``user_vectors`` is then zero). Build it with :meth:`build`.
    """

    user_vectors: np.ndarray  # f4 (n, f)
    has_vector: np.ndarray  # bool (n,)
    history_indptr: np.ndarray  # i8 (n + 1,)
    history_items: np.ndarray  # i8
    history_counts: np.ndarray  # f4
    history_age_days: np.ndarray  # f4
    context_indptr: np.ndarray  # i8 (n + 1,)
    context_items: np.ndarray  # i8
    context_weights: np.ndarray  # f4

    def __len__(self) -> int:
        return int(self.has_vector.shape[0])

    @classmethod
    def build(
        cls,
        n_factors: int,
        user_vectors: Sequence[np.ndarray | None],
        histories: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        contexts: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> CustomerBatch:
        """From per-customer arguments of :func:`score_items`: the user vector (or None),
        ``(history_items, history_counts, history_age_days)`` and ``(context_items,
        context_weights)`` (None: no context for anyone). An all-zero vector counts as none."""
        n = len(user_vectors)
        zero = np.zeros(n_factors, dtype=np.float32)
        given = np.fromiter((v is not None for v in user_vectors), dtype=bool, count=n)
        vectors = np.zeros((n, n_factors), dtype=np.float32)
        if n:
            vectors[:] = [zero if v is None else v for v in user_vectors]
        items, counts, ages = zip(*histories, strict=True) if n else ((), (), ())
        if contexts is None:
            contexts = [(_EMPTY_I8, _EMPTY_F4)] * n
        context_items, context_weights = zip(*contexts, strict=True) if n else ((), ())
        return cls(
            user_vectors=vectors,
            has_vector=given & vectors.any(axis=1),
            history_indptr=_indptr(items),
            history_items=_concat(items, np.int64),
            history_counts=_concat(counts, np.float32),
            history_age_days=_concat(ages, np.float32),
            context_indptr=_indptr(context_items),
            context_items=_concat(context_items, np.int64),
            context_weights=_concat(context_weights, np.float32),
        )

    def customer(self, i: int) -> tuple[Any, ...]:
        """Customer ``i``'s positional arguments of :func:`score_items` after the model."""
        h0, h1 = int(self.history_indptr[i]), int(self.history_indptr[i + 1])
        c0, c1 = int(self.context_indptr[i]), int(self.context_indptr[i + 1])
        return (
            self.user_vectors[i] if self.has_vector[i] else None,
            self.history_items[h0:h1],
            self.history_counts[h0:h1],
            self.history_age_days[h0:h1],
            self.context_items[c0:c1],
            self.context_weights[c0:c1],
        )

    def block(self, start: int, stop: int) -> CustomerBatch:
        """Customers ``start`` to ``stop`` (exclusive) as a batch of their own."""
        h0, h1 = int(self.history_indptr[start]), int(self.history_indptr[stop])
        c0, c1 = int(self.context_indptr[start]), int(self.context_indptr[stop])
        return CustomerBatch(
            user_vectors=self.user_vectors[start:stop],
            has_vector=self.has_vector[start:stop],
            history_indptr=self.history_indptr[start : stop + 1] - h0,
            history_items=self.history_items[h0:h1],
            history_counts=self.history_counts[h0:h1],
            history_age_days=self.history_age_days[h0:h1],
            context_indptr=self.context_indptr[start : stop + 1] - c0,
            context_items=self.context_items[c0:c1],
            context_weights=self.context_weights[c0:c1],
        )


def _indptr(lists: Sequence[Any]) -> np.ndarray:
    out = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=out[1:])
    return out


def _concat(arrays: Sequence[Any], dtype: type) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(arrays, dtype=dtype, casting="same_kind")

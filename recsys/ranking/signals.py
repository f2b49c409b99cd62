"""What the two-stage ranking needs beyond the blend's arrays: item signals and the ranker.

* :class:`ItemSignals` (``signals.npz`` in the bundle): the EASE item-item weights over the
  ``ease_columns`` most-bought products (dense ``m x m`` f4; ``m`` is at most
  :data:`EASE_MAX_ITEMS`, so the bundle and every serving process hold at most 36 MB of it
  whatever the catalogue's size; the rest of the catalogue is reached by the sparse top-K
  co-purchase neighbours, ALS, popularity and trend), each item's repurchase rhythm (the
  median days between two orders of it by one customer, -1 when nobody bought it twice), its
  repurchase rate (the share of its buyers who bought it in two orders or more), trend prior,
  log price and recent popularity (``recent``: the distinct buyers of the 14 days before the
  cutoff over the top item's, in [0, 1]; a bundle written before it has none and loads with
  zeros: no recent best sellers, a zero feature column).
* :class:`Ranker`: anything that scores a feature matrix (rows: candidates, columns:
  :data:`recsys.ranking.candidates.FEATURES`). ``recsys`` runs no ONNX itself (no
  onnxruntime here); serving and training inject their session.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Final, Protocol

import numpy as np

#: The largest EASE matrix stored: its products by number of buyers (3000^2 f4 = 36 MB).
EASE_MAX_ITEMS: Final = 3000
#: The tasks a ranker is trained for: ``discovery`` (bought items excluded) and ``all``.
TASKS: Final = ("discovery", "all")


def positive_order(values: np.ndarray) -> np.ndarray:
    """i8: the rows with a positive value, highest first, ties by row."""
    rows = np.flatnonzero(values > 0)
    return rows[np.argsort(-values[rows], kind="stable")].astype(np.int64)


class Ranker(Protocol):
    """A learned ranker: one score per row of an f4 feature matrix, higher first."""

    def predict(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ItemSignals:
    """Per-item arrays for candidate generation and features (rows follow the item table)."""

    ease_columns: np.ndarray  # i8 (m,) item rows EASE covers, sorted
    ease_weights: np.ndarray  # f4 (m, m), zero diagonal
    trend: np.ndarray  # f4 (n_items,) trending prior in [0, 1]
    repeat_rate: np.ndarray  # f4 (n_items,)
    gap_days: np.ndarray  # f4 (n_items,), -1 unknown
    log_price: np.ndarray  # f4 (n_items,), -1 unknown
    recent: np.ndarray  # f4 (n_items,) recent popularity in [0, 1]

    @cached_property
    def ease_position(self) -> np.ndarray:
        """i8 (n_items,): each item's EASE column, -1 outside them."""
        position = np.full(self.trend.shape[0], -1, dtype=np.int64)
        position[self.ease_columns] = np.arange(self.ease_columns.shape[0])
        return position

    @cached_property
    def trend_order(self) -> np.ndarray:
        """i8: the trending items (prior > 0), most trending first, ties by row."""
        return positive_order(self.trend)

    @cached_property
    def recent_order(self) -> np.ndarray:
        """i8: the recent best sellers (recent popularity > 0), best first, ties by row."""
        return positive_order(self.recent)

    def ease_scores(self, history_items: np.ndarray) -> np.ndarray:
        """f4 (n_items,): ``x_u B`` of the binary history (0 outside the EASE columns)."""
        out = np.zeros(self.trend.shape[0], dtype=np.float32)
        if not self.ease_columns.size or not len(history_items):
            return out
        # the distinct EASE columns, ascending (np.unique's); a short list: plain Python
        at = self.ease_position[np.asarray(history_items, dtype=np.int64)].tolist()
        cols = sorted({col for col in at if col >= 0})
        if cols:
            out[self.ease_columns] = _row_sum(self.ease_weights, cols)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "ease_columns": self.ease_columns.astype(np.int64),
            "ease_weights": self.ease_weights.astype(np.float32),
            "trend": self.trend.astype(np.float32),
            "repeat_rate": self.repeat_rate.astype(np.float32),
            "gap_days": self.gap_days.astype(np.float32),
            "log_price": self.log_price.astype(np.float32),
            "recent": self.recent.astype(np.float32),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ItemSignals:
        """The arrays of :meth:`to_arrays`; without ``recent`` (an older bundle), zeros."""
        trend = np.asarray(arrays["trend"], dtype=np.float32)
        recent = arrays.get("recent")
        return cls(
            ease_columns=np.asarray(arrays["ease_columns"], dtype=np.int64),
            ease_weights=np.ascontiguousarray(arrays["ease_weights"], dtype=np.float32),
            trend=trend,
            repeat_rate=np.asarray(arrays["repeat_rate"], dtype=np.float32),
            gap_days=np.asarray(arrays["gap_days"], dtype=np.float32),
            log_price=np.asarray(arrays["log_price"], dtype=np.float32),
            recent=np.zeros_like(trend) if recent is None else np.asarray(recent, np.float32),
        )


def _row_sum(weights: np.ndarray, rows: list[int]) -> np.ndarray:
    """f4: ``weights[rows].sum(axis=0)`` (``rows`` not empty) without gathering the rows: the
    same additions in the same order (a sum over the first axis adds row after row into the
    first), while the gathered copy (up to a hundred rows of ``m`` floats, about a
    megabyte) would be written and read again on every page view."""
    first, *rest = rows
    total = weights[first].copy()
    for row in rest:
        total += weights[row]
    return total

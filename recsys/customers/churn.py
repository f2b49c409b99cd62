"""Churn: the scorer contract, the model input, and calibration as a separate step.

*Churn* is "buys nothing in the next ``horizon`` days" (``TrainingConfig.churn_horizon_days``).
Training (``training/churn.py``) fits a LightGBM classifier and a logistic regression on RFM on
time-shifted windows and exports **their blend** (``training/churn_blend.py``, one ONNX graph
over this input) to ONNX; the calibration (a Platt pair on the raw margin, or an isotonic
table) is stored beside it as JSON and applied here, because a calibrated classifier does not
convert to ONNX faithfully (see the conventions, "Calibrated LightGBM to ONNX").

The model input is built by :func:`churn_matrix`, the one function used both to train and to
serve: it takes the feature table of ``recsys.customers.features`` (a DataFrame) or a list of
feature dicts (the online path) and returns ``float32`` rows in the order of
:data:`CHURN_FEATURES`. Missing values become :data:`MISSING` (-1; every raw feature is >= 0), so
the ONNX trees and LightGBM never disagree about where a NaN goes.

``p_alive`` is the BG/NBD probability of being alive (``recsys.customers.clv``) under the model
fitted on the same feature table's customers (``alive``); training fits one per window, the
bundle stores the one fitted at ``as_of`` (``extra["churn"]["alive"]``) and serving passes it, so
the column is computed the same way everywhere. Without ``alive`` the column is missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from recsys.customers.clv import BetaGeoModel, clv_inputs

MISSING: Final = -1.0
_GRID: Final = 1024.0

#: Feature columns taken as they are from the customer feature table.
BASE_FEATURES: Final[tuple[str, ...]] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "days_since_last_event",
    "inter_purchase_mean_days",
    "inter_purchase_std_days",
    "orders_30d",
    "orders_90d",
    "spend_30d",
    "spend_90d",
    "return_rate",
    "views_30d",
    "carts_30d",
    "n_items_distinct",
    "nps",
    "csat",
    "ces",
    "email_opens_90d",
    "email_clicks_90d",
)

#: Features derived here from the base ones (same code offline and online).
DERIVED_FEATURES: Final[tuple[str, ...]] = (
    "recency_over_rhythm",  # recency_days / inter_purchase_mean_days: "overdue" factor
    "orders_per_month",  # frequency / tenure in 30-day months
    "gap_cv",  # inter_purchase_std / inter_purchase_mean: regularity of the rhythm
    "recency_z",  # (recency - mean gap) / max(std gap, 1): overdue in the customer's own units
    "recent_rate_ratio",  # orders_90d / the 90-day share of lifetime orders: trend
    "orders_30d_share",  # orders_30d / orders_90d: is the recent activity fading
    "items_per_order",  # n_items_distinct / frequency: basket breadth
    "p_alive",  # BG/NBD P(alive) under ``alive`` (see the module docstring)
)

#: Columns besides BASE_FEATURES that ``p_alive`` reads (``recsys.customers.clv.clv_inputs``).
ALIVE_INPUTS: Final[tuple[str, ...]] = (
    "first_purchase_at",
    "last_purchase_at",
    "avg_repeat_order_value",
)

#: The ordered columns of the model input.
CHURN_FEATURES: Final[tuple[str, ...]] = BASE_FEATURES + DERIVED_FEATURES


@runtime_checkable
class ChurnScorer(Protocol):
    """Anything that turns :func:`churn_matrix` rows into calibrated churn probabilities."""

    def score(self, features: np.ndarray) -> np.ndarray:
        """``features``: ``float32 (n, len(CHURN_FEATURES))`` -> probabilities ``(n,)``."""
        ...


def churn_matrix(
    features: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    alive: BetaGeoModel | None = None,
) -> np.ndarray:
    """The model input, ``float32 (n, len(CHURN_FEATURES))``, from a table or feature dicts.

    A single dict gives one row. Absent or non-numeric values count as missing; so does
    ``p_alive`` without ``alive`` (the BG/NBD model, see the module docstring). A table
    (training) goes through pandas; dicts (the event path) through :func:`churn_rows`, plain
    numpy, which gives the same numbers (``tests/recsys/customers/test_churn_rows.py``).
    """
    if isinstance(features, Mapping):
        features = [features]
    if not isinstance(features, pd.DataFrame):
        return churn_rows(features, alive)
    base = np.empty((len(features), len(BASE_FEATURES)), dtype=np.float64)
    for j, name in enumerate(BASE_FEATURES):
        if name in features.columns:
            base[:, j] = pd.to_numeric(features[name], errors="coerce").to_numpy(np.float64)
        else:
            base[:, j] = np.nan
    return _with_derived(base, _p_alive(features, alive))


_PLAIN: Final = frozenset({float, int, bool, type(None)})


def _number(value: Any) -> float:
    """One value as ``pd.to_numeric(errors="coerce")`` reads it: numbers (and bools) as they
    are, numeric text parsed (ASCII, no ``_`` separators), anything else NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool | int | float | np.number):
        try:
            return float(value)
        except (OverflowError, TypeError, ValueError):
            return math.nan
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str) and value.isascii() and "_" not in value:
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def churn_rows(rows: Sequence[Mapping[str, Any]], alive: BetaGeoModel | None = None) -> np.ndarray:
    """:func:`churn_matrix` of feature dicts without pandas (the per-event path): one
    ``np.array`` over the rows' values when they are all plain numbers or None (the online
    features always are), else value by value with :func:`_number`."""
    values = [[row.get(name) for name in BASE_FEATURES] for row in rows]
    base: np.ndarray | None = None
    if all(type(v) in _PLAIN for row in values for v in row):
        try:
            base = np.array(values, dtype=np.float64).reshape(len(values), len(BASE_FEATURES))
        except OverflowError:  # an int too large for a float
            base = None
    if base is None:
        parsed = [[_number(v) for v in row] for row in values]
        base = np.array(parsed, dtype=np.float64).reshape(len(values), len(BASE_FEATURES))
    return _with_derived(base, _p_alive_rows(rows, alive))


def _with_derived(base: np.ndarray, p_alive: np.ndarray) -> np.ndarray:
    """The base columns (float64, NaN missing) with the derived ones, missing as MISSING."""
    col = {name: base[:, j] for j, name in enumerate(BASE_FEATURES)}
    recency, freq = col["recency_days"], col["frequency"]
    gap_mean, gap_std = col["inter_purchase_mean_days"], col["inter_purchase_std_days"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rhythm = recency / np.maximum(gap_mean, 1.0)
        per_month = freq / np.maximum(col["tenure_days"] / 30.0, 1.0)
        gap_cv = gap_std / np.maximum(gap_mean, 1.0)
        recency_z = (recency - gap_mean) / np.maximum(gap_std, 1.0)
        expected_90d = freq * 90.0 / np.maximum(col["tenure_days"], 90.0)
        recent_rate = col["orders_90d"] / np.where(freq > 0, expected_90d, np.nan)
        share_30d = col["orders_30d"] / np.where(col["orders_90d"] > 0, col["orders_90d"], np.nan)
        breadth = col["n_items_distinct"] / np.where(freq > 0, freq, np.nan)
    derived = np.column_stack(
        [rhythm, per_month, gap_cv, recency_z, recent_rate, share_30d, breadth, p_alive]
    )
    # on a grid of 1/1024: the values and the midpoints between them are exact in float32 and
    # float64, so LightGBM (double thresholds) and the ONNX trees (float32) split them alike
    matrix = np.column_stack([base, np.round(derived * _GRID) / _GRID])
    matrix[~np.isfinite(matrix)] = MISSING
    return matrix.astype(np.float32)


def _p_alive(features: pd.DataFrame, alive: BetaGeoModel | None) -> np.ndarray:
    if alive is None or not all(name in features.columns for name in ALIVE_INPUTS):
        return np.full(len(features), np.nan)
    inp = clv_inputs(features)
    p = alive.p_alive(inp["x"], inp["t_x"], inp["T"])
    return np.where(inp["bought"], p, np.nan)


def _p_alive_rows(rows: Sequence[Mapping[str, Any]], alive: BetaGeoModel | None) -> np.ndarray:
    """:func:`_p_alive` of feature dicts, each read by ``clv_inputs``'s one-row path."""
    if alive is None or not rows:
        return np.full(len(rows), np.nan)
    inputs = [clv_inputs(row) for row in rows]
    x, t_x, big_t, bought = (
        np.concatenate([inp[name] for inp in inputs]) for name in ("x", "t_x", "T", "bought")
    )
    return np.where(bought, alive.p_alive(x, t_x, big_t), np.nan)


def _logit(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


@dataclass(frozen=True)
class PlattCalibration:
    """``p = sigmoid(a * logit(raw) + b)``: Platt scaling on the raw margin."""

    a: float
    b: float

    def apply(self, raw_probs: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * _logit(raw_probs) + self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def fit(cls, raw_probs: np.ndarray, labels: np.ndarray) -> PlattCalibration:
        """Maximum likelihood ``(a, b)`` (Newton's method on the log loss)."""
        z = _logit(raw_probs)
        y = np.asarray(labels, dtype=np.float64)
        x = np.column_stack([z, np.ones_like(z)])
        w = np.array([1.0, 0.0])
        for _ in range(100):
            p = _sigmoid(x @ w)
            grad = x.T @ (p - y)
            hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.max(np.abs(step)) < 1e-10:
                break
        return cls(a=float(w[0]), b=float(w[1]))


@dataclass(frozen=True)
class IsotonicCalibration:
    """A monotone step table: ``np.interp(raw, x, y)`` (clipped at the ends)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def apply(self, raw_probs: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(raw_probs, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}


@dataclass(frozen=True)
class IdentityCalibration:
    def apply(self, raw_probs: np.ndarray) -> np.ndarray:
        return np.asarray(raw_probs, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "identity"}


Calibration = PlattCalibration | IsotonicCalibration | IdentityCalibration


def calibration_from_dict(data: Mapping[str, Any] | None) -> Calibration:
    """The inverse of ``to_dict``; ``None`` or ``{}`` means no calibration.

    A Platt pair with a ``context`` (``training/churn_context.py``: ``names``, ``coef`` and
    the ``values`` at the bundle's ``as_of``) has its context terms folded into the intercept,
    ``b + sum(coef * values)``: the context is one value per cutoff, the same for everyone.
    """
    if not data:
        return IdentityCalibration()
    method = data.get("method")
    if method == "platt":
        context = data.get("context") or {}
        shift = sum(
            float(c) * float(v)
            for c, v in zip(context.get("coef", ()), context.get("values", ()), strict=True)
        )
        return PlattCalibration(a=float(data["a"]), b=float(data["b"]) + shift)
    if method == "isotonic":
        return IsotonicCalibration(x=tuple(map(float, data["x"])), y=tuple(map(float, data["y"])))
    if method == "identity":
        return IdentityCalibration()
    raise ValueError(f"unknown churn calibration method {method!r}")

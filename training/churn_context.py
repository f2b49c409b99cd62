"""What moves the churn base rate between cutoffs: shop-level context and the calibration on it.

The churn rate of a window is not a constant: on the development data it climbs from 0.40
(cutoff 2011-01-01) to 0.51 (2011-06-01) as the customer base ages, and on the later period it
falls to 0.41 before Christmas. The customer features carry the ageing (recency, rhythm,
``p_alive``); what they cannot carry is the *shop's* state at the cutoff: the season ahead and
the shop's trend. Those are the **cutoff context** (:data:`CONTEXT_FEATURES`), one value per
cutoff ``t`` from the orders before ``t`` only:

===================  ==========================================================  ========
feature              meaning                                                     lookback
===================  ==========================================================  ========
seasonal_lift_yoy    log of orders in ``[t-365, t-275)`` over ``[t-455, t-365)``:    455 d
                     a year earlier, how the 90 days ahead compared with the 90
                     days before (the season ahead)
orders_trend_yoy     log of orders in ``[t-90, t)`` over ``[t-455, t-365)``: the      455 d
                     shop against itself a year earlier
active_share_365d    customers with an order in ``[t-90, t)`` over those with one    365 d
                     in ``[t-365, t)``
===================  ==========================================================  ========

A feature is **missing** at ``t`` when the data do not reach back over its lookback: measured on
the development data (9 months), the shorter signals that do exist there (active share of all
customers so far, orders of the last 30 or 90 days against the previous window) only follow the
growth of the customer base since the data begin, and a calibration that extrapolated them
moved the mean risk the wrong way (0.55 at 2011-09-01, against 0.41 observed after it); hence
the year-long lookbacks.

**Calibration** (:func:`fit_calibration`): Platt scaling on the raw margin, plus one coefficient
per context feature present in every calibration window, fitted on all the training windows
pooled (they are at different cutoffs, so the rate varies and the coefficients say how it
follows the context), with an L2 pull (:data:`CONTEXT_L2`) on the standardized context
coefficients; only when at least :data:`MIN_CONTEXT_CUTOFFS` windows carry the context.
Otherwise (the development data) it is plain Platt on the newest labelled window. The fitted
terms are folded with the context **at** ``as_of`` into the stored Platt pair
(``{"method": "platt", "a", "b", "context": {...}}``, see
``recsys.customers.churn.calibration_from_dict``): the context is the same for every customer
at serving time, so serving and the per-event path apply one ``(a, b)`` and the ONNX input does
not change. The context is refreshed with the bundle, at each training run (its ``as_of``).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.customers.churn import PlattCalibration, _logit, _sigmoid

DAY: Final = pd.Timedelta(days=1)
#: name -> lookback in days (module docstring).
CONTEXT_FEATURES: Final[dict[str, int]] = {
    "seasonal_lift_yoy": 455,
    "orders_trend_yoy": 455,
    "active_share_365d": 365,
}
MIN_CONTEXT_CUTOFFS: Final = 8
CONTEXT_L2: Final = 0.01


def shop_orders(interactions: pd.DataFrame) -> pd.DataFrame:
    """One row per order (``timestamp``: its first line, ``customer_id``), sorted by time."""
    buys = interactions.loc[interactions["event_type"].astype(str).eq("purchase")]
    customer = buys["customer_id"].astype(str)
    if "order_id" in buys.columns:
        key = buys["order_id"].astype(object).where(buys["order_id"].notna())
    else:
        key = pd.Series(None, index=buys.index, dtype=object)
    key = key.fillna(customer + "|" + buys["timestamp"].astype(str))
    orders = (
        pd.DataFrame({"key": key, "timestamp": buys["timestamp"], "customer_id": customer})
        .groupby("key", sort=False)
        .agg(timestamp=("timestamp", "min"), customer_id=("customer_id", "first"))
    )
    return orders.sort_values("timestamp").reset_index(drop=True)


def cutoff_context(
    orders: pd.DataFrame, cutoff: pd.Timestamp, data_start: pd.Timestamp
) -> dict[str, float]:
    """The context at ``cutoff`` (NaN where the data do not cover a feature's lookback)."""
    cutoff = pd.Timestamp(cutoff)
    times = orders["timestamp"].to_numpy()

    def count(start_days: int, end_days: int) -> int:
        lo, hi = np.searchsorted(
            times,
            np.array([cutoff - start_days * DAY, cutoff - end_days * DAY]).astype(times.dtype),
        )
        return int(hi - lo)

    def customers(days: int) -> int:
        since = orders["timestamp"].ge(cutoff - days * DAY) & orders["timestamp"].lt(cutoff)
        return int(orders.loc[since, "customer_id"].nunique())

    covered = {name: cutoff - days * DAY >= data_start for name, days in CONTEXT_FEATURES.items()}
    out = dict.fromkeys(CONTEXT_FEATURES, float("nan"))
    if covered["seasonal_lift_yoy"]:
        out["seasonal_lift_yoy"] = float(np.log((count(365, 275) + 1) / (count(455, 365) + 1)))
        out["orders_trend_yoy"] = float(np.log((count(90, 0) + 1) / (count(455, 365) + 1)))
    if covered["active_share_365d"]:
        year = customers(365)
        out["active_share_365d"] = customers(90) / year if year else float("nan")
    return out


def _logistic(x: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Weights of ``sigmoid(x @ w)`` minimizing the mean log loss + ``penalty * w**2``."""
    w = np.zeros(x.shape[1])
    w[0] = 1.0
    for _ in range(100):
        p = _sigmoid(x @ w)
        grad = x.T @ (p - y) / len(y) + 2 * penalty * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(y) + np.diag(2 * penalty)
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def fit_calibration(
    raws: list[np.ndarray],
    labels: list[np.ndarray],
    contexts: list[dict[str, float]],
    context_now: dict[str, float],
) -> dict[str, Any]:
    """The stored calibration (module docstring). ``raws``, ``labels`` and ``contexts`` are per
    window, newest first; ``context_now`` is the context at ``as_of``."""
    usable = [
        name
        for name in CONTEXT_FEATURES
        if np.isfinite(context_now.get(name, np.nan))
        and all(np.isfinite(c.get(name, np.nan)) for c in contexts)
        and len({c[name] for c in contexts}) > 1
    ]
    if len(contexts) < MIN_CONTEXT_CUTOFFS or not usable:
        return PlattCalibration.fit(raws[0], labels[0]).to_dict()
    z = np.array([[c[name] for name in usable] for c in contexts])
    mean, scale = z.mean(axis=0), np.maximum(z.std(axis=0), 1e-9)
    rows = np.concatenate([np.full(len(r), k) for k, r in enumerate(raws)])
    zs = (z[rows] - mean) / scale
    x = np.column_stack([_logit(np.concatenate(raws)), np.ones(len(rows)), zs])
    penalty = np.r_[0.0, 0.0, np.full(len(usable), CONTEXT_L2)]
    w = _logistic(x, np.concatenate(labels).astype(np.float64), penalty)
    coef = w[2:] / scale  # per unit of the raw context value
    offset = float(w[1] - coef @ mean)
    values = [float(context_now[name]) for name in usable]
    return {
        "method": "platt",
        "a": float(w[0]),
        "b": offset,
        "context": {"names": usable, "coef": [float(c) for c in coef], "values": values},
    }

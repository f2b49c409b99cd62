"""CLV on a time split: BG/NBD x Gamma-Gamma against a learned model and a naive baseline.

The question a CLV figure answers is "how much will this customer spend next". The backtest at
``as_of`` takes the customers who bought before ``as_of`` and their actual net spend (product
purchases minus returns) over the ``period`` days after it, and compares three forecasts of it,
each from data before ``as_of`` only:

* ``bgnbd_gamma_gamma``: :class:`recsys.customers.clv.CLVModel` fitted at ``as_of``, predicting
  the spend over ``period`` days (what the bundle serves, scaled to the period);
* ``gradient_boosting``: a LightGBM regressor on the churn model's input
  (:func:`recsys.customers.churn.churn_matrix`, the same customer features), trained on
  time-shifted windows ``as_of - period - k * step_days`` (k >= 0: every target ends by
  ``as_of``) whose target is the spend in ``[c, c + period)``;
* ``naive_last_90d``: the spend of the last 90 days, scaled to the period.

Pearson correlation and mean absolute error come with 95% bootstrap intervals over customers
and a paired comparison with the served model (:mod:`training.bootstrap`). :func:`clv_choice`
names the winner: the learned model only when it beats the parametric one on MAE by a margin
outside the paired interval and is not worse on Pearson.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor

from recsys.customers.churn import churn_matrix
from recsys.customers.clv import CLVModel
from recsys.customers.features import compute_customer_features
from training.bootstrap import _interval, mean_interval, paired_difference, resample_weights
from training.bootstrap import verdict as interval_verdict
from training.churn import build_window, fit_alive

DAY = pd.Timedelta(days=1)
SERVED = "bgnbd_gamma_gamma"
LEARNED = "gradient_boosting"
NAIVE = "naive_last_90d"
MIN_CUSTOMERS = 20

GBM_PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 8,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "num_threads": 1,
    "verbose": -1,
}


def spend_after(
    interactions: pd.DataFrame,
    customers: pd.DataFrame,
    start: pd.Timestamp,
    days: float,
    catalog: pd.DataFrame | None,
) -> np.ndarray:
    """Each customer's net product spend in ``[start, start + days)`` (rows of ``customers``,
    a feature table at ``start``)."""
    later = compute_customer_features(interactions, start + days * DAY, catalog)
    total = later.set_index("customer_id")["monetary"].reindex(customers["customer_id"])
    return total.to_numpy(np.float64) - customers["monetary"].to_numpy(np.float64)


def fit_spend_model(
    interactions: pd.DataFrame,
    as_of: pd.Timestamp,
    period_days: float,
    catalog: pd.DataFrame | None = None,
    *,
    n_windows: int = 4,
    step_days: int = 14,
    random_state: int = 42,
) -> LGBMRegressor | None:
    """The learned spend model on windows whose targets end by ``as_of`` (None: no data)."""
    past = interactions.loc[interactions["timestamp"].lt(as_of)]
    xs, ys = [], []
    for k in range(n_windows):
        cutoff = as_of - period_days * DAY - k * step_days * DAY
        window = build_window(past, cutoff, max(1, round(period_days)), catalog)
        if not len(window.labels):
            continue
        xs.append(window.matrix())
        ys.append(spend_after(past, window.features, cutoff, period_days, catalog))
    if not xs:
        return None
    model = LGBMRegressor(**{**GBM_PARAMS, "random_state": random_state})
    return model.fit(np.vstack(xs), np.concatenate(ys))


def weighted_pearson(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` under each row of bootstrap ``weights``."""
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=1)
    ma, mb = (w @ a) / total, (w @ b) / total
    cov = (w @ (a * b)) / total - ma * mb
    va = (w @ (a * a)) / total - ma**2
    vb = (w @ (b * b)) / total - mb**2
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(va * vb)
    return np.where(np.isfinite(r), r, np.nan)  # a replicate without variance has none


def regression_intervals(
    actual: np.ndarray, predicted: dict[str, np.ndarray], reference: str, seed: int = 0
) -> dict[str, Any]:
    """Pearson and MAE with bootstrap intervals per forecast, and ``reference`` against each
    other forecast on the same replicates (paired)."""
    y = np.asarray(actual, dtype=np.float64)
    w = resample_weights(len(y), seed=seed)
    out: dict[str, Any] = {"forecasts": {}, "comparisons": {}}
    pearson = {}
    for name, p in predicted.items():
        p = np.asarray(p, dtype=np.float64)
        pearson[name] = weighted_pearson(p, y, w)
        point = float(weighted_pearson(p, y, np.ones((1, len(y))))[0])
        out["forecasts"][name] = {
            "pearson": _interval(point, pearson[name], 0.95),
            "mae": mean_interval(np.abs(p - y), w),
        }
    ref = np.asarray(predicted[reference], dtype=np.float64)
    for name, p in predicted.items():
        if name == reference:
            continue
        p = np.asarray(p, dtype=np.float64)
        mae = paired_difference(np.abs(ref - y), np.abs(p - y), w)
        point = out["forecasts"][reference]["pearson"]["value"]
        point -= out["forecasts"][name]["pearson"]["value"]
        r = _interval(point, pearson[reference] - pearson[name], 0.95)
        out["comparisons"][name] = {
            "pearson_difference": {**r, "verdict": interval_verdict(r, reference, name)},
            "mae_difference": {
                **mae,
                "verdict": interval_verdict(mae, reference, name, higher_is_better=False),
            },
        }
    return out


def clv_choice(intervals: dict[str, Any]) -> dict[str, str]:
    """Which forecast to serve (module docstring) and why."""
    row = intervals["comparisons"].get(LEARNED)
    if row is None:
        return {"served": SERVED, "why": "no learned model to compare"}
    mae, r = row["mae_difference"], row["pearson_difference"]
    if mae["lo"] > 0 and r["hi"] <= 0 or mae["lo"] > 0 and r["lo"] < 0 < r["hi"]:
        return {
            "served": LEARNED,
            "why": f"MAE {mae['verdict']}; Pearson {r['verdict']}",
        }
    return {"served": SERVED, "why": f"MAE {mae['verdict']}; Pearson {r['verdict']}"}


def clv_backtest(
    interactions: pd.DataFrame,
    as_of: pd.Timestamp,
    catalog: pd.DataFrame | None = None,
    period_days: float | None = None,
) -> dict[str, Any]:
    """The three forecasts against the actual spend after ``as_of`` (module docstring);
    ``period_days`` defaults to the days of data after ``as_of``."""
    as_of = pd.Timestamp(as_of)
    end = interactions["timestamp"].max() + pd.Timedelta(seconds=1)
    days = float((end - as_of) / DAY) if period_days is None else float(period_days)
    if not interactions["timestamp"].lt(as_of).any():
        raise ValueError(f"no events before {as_of:%Y-%m-%d} for a CLV backtest")
    before = compute_customer_features(interactions, as_of, catalog)
    buyers = before.loc[before["frequency"] > 0].reset_index(drop=True)
    if len(buyers) < MIN_CUSTOMERS:
        raise ValueError(f"{len(buyers)} buyers before {as_of:%Y-%m-%d}: too few for a backtest")
    actual = spend_after(interactions, buyers, as_of, days, catalog)
    if np.ptp(actual) == 0:
        raise ValueError(f"every customer spent the same after {as_of:%Y-%m-%d}: no backtest")
    clv = CLVModel(horizon_days=365).fit(before, interactions["timestamp"].min())
    predicted = {
        SERVED: clv.predict(buyers, horizon_days=days)["clv"].to_numpy(),
        NAIVE: buyers["spend_90d"].to_numpy() * days / 90.0,
    }
    gbm = fit_spend_model(interactions, as_of, days, catalog)
    if gbm is not None:
        alive = fit_alive(buyers)
        learned = np.asarray(gbm.predict(churn_matrix(buyers, alive)), np.float64)
        if np.ptp(learned) > 0:  # a constant forecast: too little data to learn a split
            predicted[LEARNED] = learned
    intervals = regression_intervals(actual, predicted, reference=SERVED)
    return {
        "period_days": round(days, 2),
        "customers": int(len(buyers)),
        "mean_actual": float(np.mean(actual)),
        "actual": actual,
        "predicted": predicted,
        "intervals": intervals,
        "choice": clv_choice(intervals),
        "params": clv.to_dict(),
    }

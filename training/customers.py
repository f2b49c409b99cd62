"""Customer intelligence for a bundle: features, churn model, CLV, RFM segments, journey stages.

:func:`train_customer_models` is the one call the training pipeline needs. It returns the
customer feature table with the profile columns added (``churn_risk, clv,
expected_purchases_365d, p_alive, r_score, f_score, m_score, segment, journey_stage``), the
churn artifacts (ONNX bytes and calibration) and the JSON-able extras serving needs to redo the
same computations online (``extra["churn"]``, ``extra["clv"]``, ``extra["rfm"]``,
``extra["offers"]``). Only events before ``as_of`` are used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.customers.churn import calibration_from_dict, churn_matrix
from recsys.customers.clv import CLVModel
from recsys.customers.features import compute_customer_features
from recsys.customers.segments import JourneyRules, RFMScorer, SegmentRules, describe_customers
from recsys.decisions.offer_set import DEFAULT_OFFERS, load_offer_set
from training.churn import ChurnArtifacts, raw_probabilities, train_churn
from training.clv_backtest import SERVED, clv_backtest
from training.interactions import rows_before
from training.sampling import sample_customers

log = logging.getLogger(__name__)


@dataclass
class TrainedCustomerModels:
    features: pd.DataFrame
    churn: ChurnArtifacts | None
    extra: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def train_customer_models(
    interactions: pd.DataFrame,
    as_of: pd.Timestamp | str,
    catalog: pd.DataFrame | None = None,
    *,
    horizon_days: int = 90,
    offers_path: Path | str | None = None,
    with_churn: bool = True,
    segment_rules: SegmentRules | None = None,
    journey_rules: JourneyRules | None = None,
    backtest_customers: int | None = None,
    seed: int = 0,
) -> TrainedCustomerModels:
    """Everything about customers a bundle holds (module docstring). ``backtest_customers``:
    the CLV backtest runs on a fixed random sample (``seed``) of at most this many customers
    (``training.sampling``; the features and models cover everyone)."""
    as_of = pd.Timestamp(as_of)
    events = rows_before(interactions, as_of)
    features = compute_customer_features(events, as_of, catalog)
    extra: dict[str, Any] = {}
    metrics: dict[str, Any] = {}

    churn: ChurnArtifacts | None = None
    risk = np.full(len(features), np.nan)
    if with_churn:
        try:
            churn = train_churn(events, as_of, horizon_days, catalog)
        except ValueError as exc:  # too little history or a single class
            log.warning("no churn model: %s", exc)
            metrics["churn"] = {"skipped": str(exc)}
    if churn is not None:
        raw = raw_probabilities(churn.model, churn_matrix(features, churn.alive_model()))
        risk = calibration_from_dict(churn.calibration).apply(raw)
        extra["churn"] = {
            "calibration": churn.calibration,
            "alive": churn.alive,
            "feature_names": churn.feature_names,
            "horizon_days": horizon_days,
        }
        metrics["churn"] = churn.metrics

    clv = pd.DataFrame(index=features.index)
    try:
        clv_model = CLVModel(horizon_days=365).fit(features, events["timestamp"].min())
        clv = clv_model.predict(features).set_index(features.index)
        extra["clv"] = clv_model.to_dict()
        sample = sample_customers(events, backtest_customers, seed)
        served = clv_served(sample.interactions, as_of, catalog)
        if sample.sampled and isinstance(served.get("backtest"), dict):
            served["backtest"]["customer_sample"] = sample.to_dict()
        metrics["clv"] = {"fit": clv_model.fit_report_, **served}
    except ValueError as exc:
        log.warning("no CLV model: %s", exc)
        metrics["clv"] = {"skipped": str(exc)}

    rfm = RFMScorer().fit(features)
    extra["rfm"] = rfm.to_dict()
    described = describe_customers(
        features,
        rfm,
        churn_risk=risk,
        clv=clv["clv"].to_numpy() if "clv" in clv else np.full(len(features), np.nan),
        segment_rules=segment_rules,
        journey_rules=journey_rules,
    )
    if "expected_purchases" in clv:
        described["expected_purchases_365d"] = clv["expected_purchases"].to_numpy()
        described["p_alive"] = clv["p_alive"].to_numpy()
    extra["segment_rules"] = (segment_rules or SegmentRules()).model_dump(mode="json")
    extra["journey_rules"] = (journey_rules or JourneyRules()).model_dump(mode="json")
    offer_set = load_offer_set(offers_path or DEFAULT_OFFERS)
    extra["offers"] = offer_set.model_dump(mode="json")
    return TrainedCustomerModels(features=described, churn=churn, extra=extra, metrics=metrics)


def clv_served(
    events: pd.DataFrame, as_of: pd.Timestamp, catalog: pd.DataFrame | None, days: int = 90
) -> dict[str, Any]:
    """Which CLV forecast the bundle serves and the backtest behind it: the forecasts of
    ``training.clv_backtest`` at ``as_of - days`` over the ``days`` before ``as_of``. Only the
    parametric model can be served online today, so a learned winner is recorded and logged."""
    start = as_of - pd.Timedelta(days=days)
    try:
        backtest = clv_backtest(events, start, catalog, period_days=days)
    except (ValueError, KeyError, IndexError) as exc:  # too little history for a backtest
        return {"served": SERVED, "backtest": {"skipped": str(exc)}}
    winner = backtest["choice"]["served"]
    if winner != SERVED:
        log.warning("CLV: %s won the backtest but only %s is served online", winner, SERVED)
    forecasts = backtest["intervals"]["forecasts"]
    return {
        "served": SERVED,
        "backtest_winner": winner,
        "why": backtest["choice"]["why"],
        "backtest": {
            "as_of": f"{start:%Y-%m-%d}",
            "period_days": days,
            "customers": backtest["customers"],
            **{name: {k: v["value"] for k, v in row.items()} for name, row in forecasts.items()},
        },
    }

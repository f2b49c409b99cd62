from __future__ import annotations

import json

import numpy as np
import pandas as pd

from recsys.customers.clv import CLVModel
from recsys.customers.segments import JOURNEY_STAGES, SEGMENTS, RFMScorer, describe_one
from recsys.decisions.offer_set import parse_offer_set
from training.customers import train_customer_models


def test_customer_table_has_the_profile_columns_and_json_extras(clustered):
    as_of = clustered["timestamp"].max() + pd.Timedelta(days=1)
    intel = train_customer_models(clustered, as_of, with_churn=False)
    table = intel.features
    for name in ("clv", "churn_risk", "segment", "journey_stage", "r_score", "p_alive"):
        assert name in table.columns
    assert set(table["segment"]) <= set(SEGMENTS)
    assert set(table["journey_stage"]) <= set(JOURNEY_STAGES)
    assert table["churn_risk"].isna().all()  # no churn model asked for
    assert (table["clv"] >= 0).all()
    extra = json.loads(json.dumps(intel.extra))
    assert parse_offer_set(extra["offers"]).offers
    clv = CLVModel.from_dict(extra["clv"]).predict(table)
    np.testing.assert_allclose(clv["clv"], table["clv"])
    rfm = RFMScorer.from_dict(extra["rfm"])
    row = table.iloc[0].to_dict()
    assert describe_one(row, rfm)["segment"] == table["segment"].iloc[0]


def test_the_manifest_says_how_the_clv_fits_went_and_which_model_is_served(clustered):
    as_of = clustered["timestamp"].max() + pd.Timedelta(days=1)
    metrics = train_customer_models(clustered, as_of, with_churn=False).metrics["clv"]
    assert metrics["served"] == "bgnbd_gamma_gamma"
    for part in ("bgnbd", "gamma_gamma"):
        assert set(metrics["fit"][part]) >= {"converged", "method", "message", "penalizer"}
    backtest = metrics["backtest"]
    # a few customers: the backtest says why it was not run instead of failing the training
    assert "skipped" in backtest or {"bgnbd_gamma_gamma", "naive_last_90d"} <= set(backtest)
    json.dumps(metrics)

"""Sane customer states, batch (feature tables) and online (after an event): known answers.

* a customer who has just bought (a first order included) is not ``at_risk``;
* a win-back offer never follows a purchase of the last days;
* welcome and win-back never go to the same customer;
* profile figures are rounded to the precision they mean.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from recsys.customers.live_update import CustomerSnapshot, OnlineModel, plan_updates
from recsys.customers.precision import rounded
from recsys.customers.segments import journey_stages
from recsys.decisions.offer_set import load_offer_set
from recsys.decisions.offers import WELCOME_MAX_DAYS, WIN_BACK_MIN_QUIET_DAYS, offer_matrix
from recsys.events import Event
from recsys.store import BatchRecord, LiveRecord

NOW = datetime(2024, 6, 1)
OFFERS = load_offer_set()
TYPES = [o.type for o in OFFERS.offers]


def _eligible(features: pd.DataFrame | dict, offer_type: str) -> np.ndarray:
    eligible, _ = offer_matrix(features, OFFERS, NOW)
    return eligible[:, TYPES.index(offer_type)]


def _table() -> pd.DataFrame:
    """Rows: a first order today, a first order 75 days ago, a prospect, a repeat customer who
    bought yesterday, a repeat customer quiet for 45 days, a first order 20 days ago; all with
    a high churn risk."""
    return pd.DataFrame(
        {
            "frequency": [1, 1, 0, 6, 6, 1],
            "recency_days": [0.2, 75.0, np.nan, 1.0, 45.0, 20.0],
            "inter_purchase_mean_days": [np.nan, np.nan, np.nan, 20.0, 20.0, np.nan],
            "churn_risk": [0.95, 0.95, np.nan, 0.8, 0.8, 0.9],
            "avg_order_value": [1.79, 30.0, np.nan, 50.0, 50.0, 40.0],
            "clv": [200.0, 100.0, 0.0, 900.0, 900.0, 300.0],
        }
    )


def test_batch_stage_a_fresh_purchase_is_not_at_risk() -> None:
    stages = journey_stages(_table()).tolist()
    # first order today: purchase, not at_risk; 75 days quiet one-order customer: at_risk
    assert stages == ["purchase", "at_risk", "awareness", "retention", "at_risk", "at_risk"]


def test_batch_offers_win_back_only_after_quiet_days_and_never_with_welcome() -> None:
    table = _table()
    win_back, welcome = _eligible(table, "win_back"), _eligible(table, "welcome")
    assert win_back.tolist() == [False, True, False, False, True, False]
    assert welcome.tolist() == [True, False, True, False, False, True]
    assert not np.any(win_back & welcome)


def test_win_back_starts_at_the_quiet_threshold() -> None:
    edge = pd.DataFrame(
        {
            "frequency": [3, 3, 1, 1],
            "recency_days": [
                WIN_BACK_MIN_QUIET_DAYS - 0.5,
                WIN_BACK_MIN_QUIET_DAYS,
                WELCOME_MAX_DAYS - 0.5,
                WELCOME_MAX_DAYS,
            ],
            "churn_risk": [0.9, 0.9, 0.9, 0.9],
            "clv": [500.0, 500.0, 500.0, 500.0],
        }
    )
    assert _eligible(edge, "win_back").tolist() == [False, True, False, True]
    assert _eligible(edge, "welcome").tolist() == [False, False, True, False]


def _purchase(customer: str, day: float) -> Event:
    return Event.model_validate(
        {
            "customer_id": customer,
            "event_type": "purchase",
            "item_id": "a",
            "price": 1.79,
            "order_id": f"o-{customer}",
            "timestamp": NOW + timedelta(days=day),
        }
    )


def test_online_a_first_purchase_makes_a_welcomed_buyer_not_at_risk() -> None:
    model = OnlineModel(version="v1", as_of=NOW)
    snap = CustomerSnapshot("new1", batch=None, live=LiveRecord())
    plans = plan_updates(model, {"new1": snap}, [_purchase("new1", 1.0)], NOW + timedelta(days=1))
    features = {**plans["new1"].features, "churn_risk": 0.95}  # whatever the model says
    assert features["frequency"] == 1 and features["recency_days"] < 1
    assert journey_stages(features).tolist() == ["purchase"]
    assert _eligible(features, "welcome").tolist() == [True]
    assert _eligible(features, "win_back").tolist() == [False]


def test_online_a_lapsed_customer_who_buys_again_gets_no_win_back() -> None:
    lapsed_at = NOW - timedelta(days=60)
    batch_features = {
        "frequency": 3,
        "recency_days": 60.0,
        "monetary": 90.0,
        "avg_order_value": 30.0,
        "avg_repeat_order_value": 30.0,
        "inter_purchase_mean_days": 20.0,
        "inter_purchase_std_days": 0.0,
        "tenure_days": 100.0,
        "first_purchase_at": str(lapsed_at - timedelta(days=40)),
        "last_purchase_at": str(lapsed_at),
        "first_seen_at": str(lapsed_at - timedelta(days=40)),
        "days_since_last_event": 60.0,
        "churn_risk": 0.9,
        "clv": 300.0,
    }
    before = dict(batch_features)
    assert _eligible(before, "win_back").tolist() == [True]
    assert journey_stages(before).tolist() == ["at_risk"]
    model = OnlineModel(version="v1", as_of=NOW)
    snap = CustomerSnapshot("old1", batch=BatchRecord(features=batch_features), live=LiveRecord())
    plans = plan_updates(model, {"old1": snap}, [_purchase("old1", 0.5)], NOW + timedelta(days=1))
    after = {**batch_features, **plans["old1"].features}
    assert after["frequency"] == 4 and after["recency_days"] < 1
    assert after["churn_risk"] == 0.9  # not re-scored here: the rules alone must hold
    assert _eligible(after, "win_back").tolist() == [False]
    assert _eligible(after, "welcome").tolist() == [False]
    assert journey_stages(after).tolist() == ["retention"]


def test_profile_figures_are_rounded_to_their_meaning() -> None:
    out = rounded(
        {
            "clv": 1655.19688021,
            "monetary": 10.005001,
            "churn_risk": 0.42347191,
            "p_alive": 0.999999,
            "recency_days": 12.6,
            "tenure_days": 3.2,
            "expected_purchases_365d": 4.51178944,
            "frequency": 3.0,
            "segment": "loyal",
            "nps": None,
            "odd_feature": 0.123456789,
        }
    )
    assert out == {
        "clv": 1655.2,
        "monetary": 10.01,
        "churn_risk": 0.4235,
        "p_alive": 1.0,
        "recency_days": 13,
        "tenure_days": 3,
        "expected_purchases_365d": 4.51,
        "frequency": 3.0,
        "segment": "loyal",
        "nps": None,
        "odd_feature": 0.123456789,
    }
    assert isinstance(out["recency_days"], int)
    assert rounded({"clv": float("nan")})["clv"] != rounded({"clv": float("nan")})["clv"]
    assert rounded({"churn_risk": True})["churn_risk"] is True
    assert pytest.approx(0.1235) == rounded({"return_rate": 0.12345678})["return_rate"]

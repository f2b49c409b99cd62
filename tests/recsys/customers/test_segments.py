from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.customers.segments import (
    SEGMENTS,
    JourneyRules,
    RFMScorer,
    SegmentRule,
    SegmentRules,
    describe_customers,
    describe_one,
    journey_stages,
    segments,
)


@pytest.fixture
def table() -> pd.DataFrame:
    """Buyers with recency 10, 20, ..., 100 days, 1..10 orders and spend 100..1000; one prospect."""
    n = np.arange(1, 11)
    buyers = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in n],
            "recency_days": 10.0 * n,
            "frequency": n,
            "monetary": 100.0 * n,
        }
    )
    prospect = pd.DataFrame(
        {"customer_id": ["p"], "recency_days": [np.nan], "frequency": [0], "monetary": [0.0]}
    )
    return pd.concat([buyers, prospect], ignore_index=True)


def test_rfm_scores_are_quintiles_learned_on_buyers(table):
    rfm = RFMScorer().fit(table)
    assert rfm.edges_["frequency"] == pytest.approx([2.8, 4.6, 6.4, 8.2])
    r, f, m = rfm.scores(table)
    assert r.tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0]
    assert f.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0]
    assert m.tolist() == f.tolist()


def test_a_value_on_an_edge_takes_the_lower_score():
    rfm = RFMScorer().fit(
        pd.DataFrame(
            {"recency_days": [5.0] * 5, "frequency": [1, 1, 1, 1, 3], "monetary": [1.0] * 5}
        )
    )
    _, f, _ = rfm.scores(
        pd.DataFrame({"recency_days": [5.0, 5.0], "frequency": [1, 2], "monetary": [1.0, 1.0]})
    )
    assert f.tolist() == [1, 5]


def test_rfm_scorer_round_trips_through_a_dict(table):
    rfm = RFMScorer().fit(table)
    again = RFMScorer.from_dict(rfm.to_dict())
    for a, b in zip(rfm.scores(table), again.scores(table), strict=True):
        assert a.tolist() == b.tolist()


@pytest.mark.parametrize(
    ("r", "f", "expected"),
    [
        (5, 5, "champions"),
        (5, 4, "champions"),
        (4, 5, "loyal"),
        (3, 4, "loyal"),
        (2, 5, "cant_lose"),
        (1, 3, "at_risk"),
        (2, 4, "at_risk"),
        (1, 1, "lost"),
        (2, 1, "hibernating"),
        (1, 2, "hibernating"),
        (5, 1, "new"),
        (4, 1, "promising"),
        (5, 3, "potential_loyalist"),
        (4, 2, "potential_loyalist"),
        (3, 3, "need_attention"),
        (3, 2, "about_to_sleep"),
        (0, 0, "prospect"),
    ],
)
def test_default_segment_of_each_score_pair(r, f, expected):
    got = segments(np.array([r]), np.array([f]), np.array([3 if r else 0]))
    assert got.tolist() == [expected]


def test_default_rules_name_every_score_combination():
    r, f, m = (g.ravel() for g in np.meshgrid(*[np.arange(1, 6)] * 3))
    got = set(segments(r, f, m).tolist())
    assert got == set(SEGMENTS) - {"prospect"}


def test_segment_rules_are_configurable():
    rules = SegmentRules(rules=[SegmentRule(segment="whales", m=(5, 5))], fallback="others")
    got = segments(np.array([3, 3]), np.array([3, 3]), np.array([5, 4]), rules)
    assert got.tolist() == ["whales", "others"]


STAGE_CASES = {
    "awareness": {"frequency": 0, "views_30d": 0},
    "consideration": {"frequency": 0, "views_30d": 3, "carts_30d": 1},
    "purchase": {"frequency": 1, "recency_days": 5.0},
    "retention": {"frequency": 3, "recency_days": 10.0, "inter_purchase_mean_days": 20.0},
    "advocacy": {"frequency": 3, "recency_days": 10.0, "inter_purchase_mean_days": 20, "nps": 10},
    "at_risk": {"frequency": 3, "recency_days": 10.0, "churn_risk": 0.9, "nps": 10},
    "churned": {"frequency": 3, "recency_days": 100.0, "inter_purchase_mean_days": 20.0},
}


@pytest.mark.parametrize("stage", list(STAGE_CASES))
def test_journey_stage_of_a_known_customer(stage):
    assert journey_stages(STAGE_CASES[stage]).tolist() == [stage]


def test_frequent_buyer_reaches_advocacy_unless_a_detractor():
    frequent = {"frequency": 12, "recency_days": 3.0, "inter_purchase_mean_days": 10.0}
    assert journey_stages(frequent).tolist() == ["advocacy"]
    assert journey_stages({**frequent, "csat": 1}).tolist() == ["retention"]


def test_churned_follows_the_customer_rhythm():
    slow = {"frequency": 4, "recency_days": 150.0, "inter_purchase_mean_days": 60.0}
    fast = {**slow, "inter_purchase_mean_days": 10.0}
    assert journey_stages(slow).tolist() == ["retention"]
    assert journey_stages(fast).tolist() == ["churned"]
    strict = JourneyRules(churned_rhythm_factor=2.0)
    assert journey_stages(slow, rules=strict).tolist() == ["churned"]


def test_table_and_single_dict_paths_agree():
    frame = pd.DataFrame(list(STAGE_CASES.values()))
    frame["monetary"] = 50.0
    rfm = RFMScorer().fit(frame)
    described = describe_customers(frame, rfm)
    assert described["journey_stage"].tolist() == list(STAGE_CASES)
    for i, row in enumerate(frame.to_dict("records")):
        one = describe_one(row, rfm)
        assert one["segment"] == described["segment"].iloc[i]
        assert one["journey_stage"] == described["journey_stage"].iloc[i]
        assert one["r_score"] == described["r_score"].iloc[i]

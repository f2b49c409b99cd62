from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from recsys.decisions.nba import ACTION_TYPES, NBAParams, next_best_action
from recsys.decisions.offer_set import load_offer_set
from recsys.decisions.offers import rank_offers

NOW = datetime(2024, 7, 1)


def customer(**overrides):
    base = {
        "frequency": 3,
        "recency_days": 12.0,
        "orders_30d": 0,
        "orders_90d": 1,
        "avg_order_value": 100.0,
        "clv": 300.0,
        "churn_risk": 0.3,
        "marketing_consent": True,
        "segment": "potential_loyalist",
        "inter_purchase_mean_days": 30.0,
        "nps": np.nan,
        "csat": np.nan,
    }
    return {**base, **overrides}


def decide(features, items=("i1", "i2"), channel=None, **kw):
    offers = rank_offers(features, load_offer_set(), now=NOW, items=items, channel=channel)
    return next_best_action(features, offers=offers, items=items, channel=channel, **kw)


def test_detractor_is_routed_to_service_recovery_and_gets_no_sales_action():
    decision = decide(customer(nps=2, churn_risk=0.9, clv=5000.0))
    assert decision.action.type == "service_recovery"
    # the built-in recovery (0.5 * (40 + 0.5 * 5000) - 10) beats the catalogue's (0.5 * 40 - 10)
    assert decision.action.action_id == "service_recovery"
    assert decision.action.expected_value == pytest.approx(0.5 * (40 + 0.5 * 5000) - 10)
    assert [a.type for a in decision.alternatives] == ["do_nothing"]
    assert "detractor" in decision.action.reason
    small = decide(customer(csat=1, clv=0.0))
    assert (small.action.type, small.action.action_id) == ("service_recovery", "service-recovery")
    assert small.action.expected_value == pytest.approx(10.0)


def test_high_risk_high_value_customer_gets_the_win_back_offer():
    decision = decide(customer(churn_risk=0.85, clv=2000.0))
    assert (decision.action.type, decision.action.action_id) == ("offer", "win-back-15")
    assert decision.action.items == ["i1", "i2"]
    assert decision.churn_risk == pytest.approx(0.85)


def test_promoter_without_better_options_is_asked_for_a_referral():
    features = customer(nps=10, clv=0.0, avg_order_value=10.0)
    decision = decide(features, items=())
    # the catalogue's referral offer stands for the referral action: 0.15 * 60 - 1
    assert (decision.action.type, decision.action.action_id) == ("referral", "refer-a-friend")
    assert decision.action.expected_value == pytest.approx(8.0)
    assert "referral" not in {a.type for a in decision.alternatives}
    without_catalogue = next_best_action(features)
    assert without_catalogue.action.action_id == "referral"
    assert without_catalogue.action.expected_value == pytest.approx(8.0)


def test_recent_buyer_without_a_rating_gets_a_review_request_when_nothing_else_pays():
    features = customer(orders_30d=1, clv=0.0, avg_order_value=0.0, marketing_consent=False)
    decision = decide(features, items=())
    assert (decision.action.type, decision.action.action_id) == (
        "review_request",
        "review-request",
    )
    assert next_best_action(features).action.action_id == "review_request"


def test_loyal_customer_is_invited_to_the_loyalty_programme_unless_a_member():
    params = NBAParams(recommend_margin=0.0)
    features = customer(frequency=12, segment="champions", clv=3000.0, churn_risk=0.1)
    decision = next_best_action(features, items=("i1",), params=params)
    assert decision.action.type == "loyalty_invitation"
    member = next_best_action({**features, "loyalty_member": True}, items=("i1",), params=params)
    assert member.action.type != "loyalty_invitation"


def test_nothing_worth_its_cost_means_do_nothing():
    decision = next_best_action(customer(clv=0.0, avg_order_value=0.0), items=())
    assert decision.action.type == "do_nothing"
    assert decision.action.expected_value == 0.0


def test_no_email_recommendation_without_consent():
    features = customer(marketing_consent=False)
    by_email = next_best_action(features, items=("i1",), channel="email")
    on_web = next_best_action(features, items=("i1",), channel="web")
    assert "recommend" not in {a.type for a in [by_email.action, *by_email.alternatives]}
    assert on_web.action.type == "recommend"


def test_decision_is_ranked_and_shaped_like_the_api():
    decision = decide(customer(nps=9, orders_30d=1))
    body = decision.to_dict()
    assert set(body) == {"action", "alternatives", "journey_stage", "churn_risk"}
    assert set(body["action"]) >= {"action_id", "type", "title", "reason", "expected_value"}
    values = [body["action"]["expected_value"]] + [
        a["expected_value"] for a in body["alternatives"]
    ]
    assert values == sorted(values, reverse=True)
    assert {a["type"] for a in body["alternatives"]} <= set(ACTION_TYPES)
    assert body["journey_stage"] == "advocacy"

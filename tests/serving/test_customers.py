"""A customer's profile, export and erasure."""

from __future__ import annotations

import pytest
import redis
from servingkit import ADMIN, CLV_PARAMS, READ, VERSION_1, WRITE, TestClient, write_live

from recsys.customers.clv import CLVModel
from recsys.store import LiveRecord

CONTRACT_FEATURES = {
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "clv",
    "churn_risk",
    "segment",
    "journey_stage",
    "nps",
    "csat",
    "last_purchase_at",
}


def test_the_profile_holds_the_batch_features_and_none_where_absent(client: TestClient) -> None:
    response = client.get("/v1/customers/kitchen-1", headers=READ)
    assert response.status_code == 200, response.text
    profile = response.json()
    features = profile["features"]
    assert CONTRACT_FEATURES <= set(features)
    assert (features["recency_days"], features["frequency"], features["monetary"]) == (5, 3, 42.5)
    assert (features["nps"], features["segment"]) == (9, "champions")
    assert features["last_purchase_at"].startswith("2025-12-27")
    assert features["clv"] is None and features["churn_risk"] is None
    assert profile["segment"] == "champions"
    assert profile["in_model"] is True and profile["model_version"] == VERSION_1


def test_a_missing_survey_answer_is_null_not_nan(client: TestClient) -> None:
    assert client.get("/v1/customers/garden-1", headers=READ).json()["features"]["nps"] is None


def test_live_features_override_the_batch_ones(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    live = LiveRecord(features={"nps": 3}, recent_views=("G1",), cart=("G2",))
    write_live(redis_client, redis_prefix, "kitchen-1", live)
    profile = client.get("/v1/customers/kitchen-1", headers=READ).json()
    assert profile["features"]["nps"] == 3
    assert (profile["recent_views"], profile["cart"]) == (["G1"], ["G2"])


def test_an_unknown_customer_profile_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/v1/customers/stranger-42", headers=READ)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "stranger-42" in response.json()["detail"]


def test_export_needs_admin_and_holds_the_batch_record(client: TestClient) -> None:
    assert client.get("/v1/customers/kitchen-1/export", headers=READ).status_code == 403
    response = client.get("/v1/customers/kitchen-1/export", headers=ADMIN)
    assert response.status_code == 200
    held = response.json()
    assert held["customer_id"] == "kitchen-1"
    assert held["batch"][VERSION_1]["features"]["segment"] == "champions"


def test_delete_erases_the_customer_and_is_idempotent(client: TestClient) -> None:
    assert client.delete("/v1/customers/kitchen-1", headers=READ).status_code == 403
    response = client.delete("/v1/customers/kitchen-1", headers=ADMIN)
    assert response.status_code == 204 and response.content == b""
    assert client.get("/v1/customers/kitchen-1", headers=READ).status_code == 404
    held = client.get("/v1/customers/kitchen-1/export", headers=ADMIN).json()
    assert held["erased"] is True and held["batch"] == {}
    url = "/v1/customers/kitchen-1/recommendations"
    assert client.get(url, headers=READ).json()["strategy"] == "cold_start"
    assert client.delete("/v1/customers/kitchen-1", headers=ADMIN).status_code == 204


def test_the_profile_is_redescribed_after_events_change_the_features(
    offers_client: TestClient,
) -> None:
    before = offers_client.get("/v1/customers/detractor-1", headers=READ).json()
    assert (before["segment"], before["features"]["clv"]) == ("loyal", 200.0)  # the batch's
    purchase = {"customer_id": "detractor-1", "event_type": "purchase", "item_id": "K3",
                "quantity": 1, "price": 40.0, "order_id": "o-1"}  # fmt: skip
    assert offers_client.post("/v1/events", json=purchase, headers=WRITE).status_code == 202
    after = offers_client.get("/v1/customers/detractor-1", headers=READ).json()
    features = after["features"]
    assert features["frequency"] == 5 and features["recency_days"] == pytest.approx(0, abs=1e-3)
    # R: bought today -> 5; F: 5 orders -> 4 (edges 1, 2, 3, 5): champions
    assert (features["r_score"], features["f_score"], after["segment"]) == (5, 4, "champions")
    assert after["journey_stage"] == "retention"  # a detractor is no advocate
    expected = CLVModel.from_dict(CLV_PARAMS).predict(features)
    assert features["clv"] == round(float(expected["clv"][0]), 2)  # money: cents
    assert features["clv"] != 200.0 and features["p_alive"] > 0.5
    assert features["nps"] == 3 and features["last_purchase_at"] is not None


def test_a_profile_without_a_batch_journey_stage_gets_one_computed(client: TestClient) -> None:
    profile = client.get("/v1/customers/garden-1", headers=READ).json()
    assert profile["journey_stage"] == "purchase"  # one order, and no RFM in the bundle
    assert profile["segment"] == "new"

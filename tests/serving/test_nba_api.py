"""``GET /v1/customers/{id}/next-best-action`` over HTTP, on the offers bundle's customers."""

from __future__ import annotations

from typing import Any

import pytest
from servingkit import READ, WRITE, TestClient, get_json

SALES = {"recommend", "offer", "loyalty_invitation", "referral"}


def nba(client: TestClient, customer_id: str, **params: Any) -> dict:
    response = client.get(
        f"/v1/customers/{customer_id}/next-best-action", params=params, headers=READ
    )
    assert response.status_code == 200, response.text
    return get_json(response)


def test_a_detractor_is_routed_to_service_recovery_and_offered_no_sale(
    offers_client: TestClient,
) -> None:
    body = nba(offers_client, "detractor-1", channel="email")
    action = body["action"]
    assert action["type"] == "service_recovery"
    # the built-in action: 0.5 x (40 + 0.5 x clv 200) - 10 beats the catalogue's offer (10)
    assert (action["action_id"], action["expected_value"]) == ("service_recovery", 60.0)
    assert {a["type"] for a in body["alternatives"]} <= {"do_nothing"}
    assert (body["journey_stage"], body["churn_risk"]) == ("retention", 0.3)


def test_a_promoter_is_asked_for_a_referral_with_the_other_levers_as_alternatives(
    offers_client: TestClient,
) -> None:
    body = nba(offers_client, "loyal-1", channel="email")
    # the catalogue's referral offer (8.0) stands for the referral action (a tie: one kept)
    assert (body["action"]["type"], body["action"]["action_id"]) == ("referral", "refer-a-friend")
    assert body["action"]["expected_value"] == pytest.approx(8.0)
    alternatives = {a["type"]: a for a in body["alternatives"]}
    assert set(alternatives) == {"loyalty_invitation", "recommend", "do_nothing"}
    assert alternatives["recommend"]["items"][:3] == ["K0", "K1", "K2"]
    values = [body["action"]["expected_value"]] + [
        a["expected_value"] for a in body["alternatives"]
    ]
    assert values == sorted(values, reverse=True)
    assert (body["journey_stage"], body["churn_risk"], body["model_version"]) == (
        "advocacy",
        0.1,
        "20260301T000000Z-cccccc",
    )


def test_without_consent_email_gets_no_recommendation_but_a_review_request(
    offers_client: TestClient,
) -> None:
    body = nba(offers_client, "no-consent-1", channel="email")
    assert body["action"]["type"] == "review_request"
    assert body["action"]["expected_value"] == pytest.approx(0.9)
    assert not SALES & {a["type"] for a in body["alternatives"]}


def test_an_unknown_customer_gets_the_welcome_offer(offers_client: TestClient) -> None:
    body = nba(offers_client, "stranger-7")
    assert (body["action"]["type"], body["action"]["action_id"]) == ("offer", "welcome-5")
    assert (body["journey_stage"], body["churn_risk"]) == ("awareness", None)


def test_a_bad_survey_answer_turns_the_next_best_action_to_service_recovery(
    offers_client: TestClient,
) -> None:
    survey = {"customer_id": "loyal-1", "event_type": "survey",
              "properties": {"metric": "csat", "score": 1}}  # fmt: skip
    assert offers_client.post("/v1/events", json=survey, headers=WRITE).status_code == 202
    body = nba(offers_client, "loyal-1", channel="app")
    assert body["action"]["type"] == "service_recovery"
    assert not SALES & {a["type"] for a in body["alternatives"]}


def test_a_bad_channel_is_a_422(offers_client: TestClient) -> None:
    response = offers_client.get(
        "/v1/customers/loyal-1/next-best-action", params={"channel": "??"}, headers=READ
    )
    assert response.status_code == 422

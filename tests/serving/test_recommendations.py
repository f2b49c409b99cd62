"""``GET /v1/customers/{id}/recommendations``: strategies, filters, context, validation."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from servingkit import READ, VERSION_1, TestClient, get_json, item_ids, write_live

from recsys.store import LiveRecord

URL = "/v1/customers/{}/recommendations"


def recommend(client: TestClient, customer_id: str, **params: object) -> dict:
    response = client.get(URL.format(customer_id), params=params, headers=READ)
    assert response.status_code == 200, response.text
    return get_json(response)


def test_a_kitchen_customer_gets_kitchen_items_in_factor_order(client: TestClient) -> None:
    body = recommend(client, "kitchen-1", k=3)
    assert body["strategy"] == "personalized"
    assert body["model_version"] == VERSION_1
    assert body["customer_id"] == "kitchen-1"
    assert body["context"] == "home"
    assert item_ids(body) == ["K1", "K2", "K3"]
    first = body["items"][0]
    assert set(first) == {"item_id", "score", "reason", "title", "category", "price"}
    assert (first["title"], first["category"]) == ("Item K1", "kitchen")
    assert first["reason"] == "recommended_for_you"
    assert [i["score"] for i in body["items"]] == sorted(
        (i["score"] for i in body["items"]), reverse=True
    )


def test_k_defaults_to_ten_and_never_returns_blocked_items(client: TestClient) -> None:
    body = recommend(client, "garden-1")
    assert len(body["items"]) == 10
    assert not {"POST", "OOS", "G0"} & set(item_ids(body))  # non-product, out of stock, bought


def test_purchased_items_are_excluded_by_default_and_included_on_request(
    client: TestClient,
) -> None:
    assert "K0" not in item_ids(recommend(client, "kitchen-1", k=12))
    assert item_ids(recommend(client, "kitchen-1", k=1, exclude_purchased="false")) == ["K0"]


def test_excluded_ids_are_never_returned(client: TestClient) -> None:
    body = recommend(client, "kitchen-1", k=2, exclude=["K1", "K2"])
    assert item_ids(body) == ["K3", "K4"]


def test_category_filter_keeps_only_that_category_case_insensitively(client: TestClient) -> None:
    body = recommend(client, "kitchen-1", k=3, category="Garden")
    assert item_ids(body) == ["G0", "G1", "G2"]
    assert recommend(client, "kitchen-1", category="no-such-category")["items"] == []


def test_an_unknown_customer_gets_a_cold_start_of_popular_items(client: TestClient) -> None:
    body = recommend(client, "stranger-42", k=3)
    assert body["strategy"] == "cold_start"
    assert item_ids(body) == ["G0", "G1", "G2"]  # POST and OOS sell best but are blocked
    assert body["items"][0]["reason"] == "popular"


def test_a_product_page_drives_similar_items_and_hides_the_product_itself(
    client: TestClient,
) -> None:
    body = recommend(client, "stranger-42", k=2, context="product", item_id="K3")
    assert item_ids(body) == ["K2", "K4"]
    assert body["items"][0]["reason"] == "similar_to_viewed"
    assert "K3" not in item_ids(recommend(client, "stranger-42", context="product", item_id="K3"))


def test_an_unknown_product_on_the_page_degrades_to_no_context(client: TestClient) -> None:
    body = recommend(client, "stranger-42", k=3, context="product", item_id="NOPE")
    assert item_ids(body) == ["G0", "G1", "G2"]


def test_the_cart_page_uses_the_cart_and_does_not_repeat_it(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    write_live(redis_client, redis_prefix, "visitor-1", LiveRecord(cart=("G3",)))
    body = recommend(client, "visitor-1", k=3, context="cart")
    assert body["strategy"] == "cold_start"
    assert item_ids(body)[0] == "G4"  # G3's nearest in-stock neighbour (OOS is nearer)
    assert not {"G3", "OOS"} & set(item_ids(recommend(client, "visitor-1", context="cart")))


def test_recent_views_steer_the_home_page(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    write_live(redis_client, redis_prefix, "visitor-2", LiveRecord(recent_views=("K5",)))
    assert item_ids(recommend(client, "visitor-2", k=1))[0] == "K4"


def test_live_purchases_and_dislikes_are_excluded_on_the_next_request(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    assert item_ids(recommend(client, "kitchen-1", k=1)) == ["K1"]
    live = LiveRecord(purchased={"K1": 1.0}, disliked=frozenset({"K2"}))
    write_live(redis_client, redis_prefix, "kitchen-1", live)
    assert item_ids(recommend(client, "kitchen-1", k=2)) == ["K3", "K4"]


def test_a_folded_in_live_vector_personalizes_a_new_customer(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    live = LiveRecord(user_vector=np.array([0.0, 1.0], dtype=np.float32), recent_views=("G1",))
    write_live(redis_client, redis_prefix, "visitor-3", live)
    body = recommend(client, "visitor-3", k=2, context="email")
    assert body["strategy"] == "personalized"
    assert item_ids(body) == ["G0", "G1"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": 101}, "k"),
        ({"k": "ten"}, "k"),
        ({"context": "checkout"}, "context"),
        ({"exclude_purchased": "perhaps"}, "exclude_purchased"),
    ],
)
def test_bad_query_parameters_are_422_problems_naming_the_field(
    client: TestClient, params: dict, field: str
) -> None:
    response = client.get(URL.format("kitchen-1"), params=params, headers=READ)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Unprocessable Content"
    assert problem["type"].endswith("validation")
    assert [error["loc"] for error in problem["errors"]] == [["query", field]]
    assert field in problem["detail"]


def test_a_malformed_customer_id_is_a_422_not_a_500(client: TestClient) -> None:
    response = client.get(URL.format("no%20spaces%7Ballowed%7D"), headers=READ)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "customer_id"]

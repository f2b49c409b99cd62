"""Items: similar items, popular items, and catalogue changes through ``PUT /v1/items/{id}``."""

from __future__ import annotations

from servingkit import ADMIN, READ, WRITE, TestClient, get_json, item_ids

from recsys.config import Settings
from serving.app import create_app


def similar(client: TestClient, item_id: str, **params: object) -> dict:
    response = client.get(f"/v1/items/{item_id}/similar", params=params, headers=READ)
    assert response.status_code == 200, response.text
    return get_json(response)


def popular(client: TestClient, **params: object) -> dict:
    response = client.get("/v1/popular", params=params, headers=READ)
    assert response.status_code == 200, response.text
    return get_json(response)


def recommended(client: TestClient, customer_id: str, **params: object) -> list[str]:
    url = f"/v1/customers/{customer_id}/recommendations"
    return item_ids(get_json(client.get(url, params=params, headers=READ)))


def test_similar_items_are_the_stored_neighbours_best_first(client: TestClient) -> None:
    body = similar(client, "K3", k=3)
    assert body["item_id"] == "K3"
    assert item_ids(body) == ["K2", "K4", "K1"]
    assert body["items"][0]["reason"] == "also_bought"
    assert body["model_version"]


def test_similar_items_never_include_out_of_stock_items(client: TestClient) -> None:
    assert item_ids(similar(client, "G3")) == ["G4", "G1", "G5", "G0"]


def test_similar_items_of_an_unknown_item_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/v1/items/NOPE/similar", headers=READ)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 404 and "NOPE" in problem["detail"]
    assert problem["instance"] == "/v1/items/NOPE/similar"


def test_similar_validates_k(client: TestClient) -> None:
    assert client.get("/v1/items/K3/similar?k=0", headers=READ).status_code == 422


def test_popular_blends_best_sellers_and_trending_items(client: TestClient) -> None:
    body = popular(client, k=3)
    assert item_ids(body) == ["G5", "G0", "G1"]  # POST and OOS sell best but are blocked
    assert [item["reason"] for item in body["items"]] == ["trending", "popular", "popular"]


def test_popular_in_a_category(client: TestClient) -> None:
    assert item_ids(popular(client, k=2, category="kitchen")) == ["K0", "K1"]
    assert popular(client, category="unknown")["items"] == []
    assert client.get("/v1/popular?k=101", headers=READ).status_code == 422


def test_a_hidden_item_is_never_recommended_from_the_next_request(client: TestClient) -> None:
    assert recommended(client, "kitchen-1", k=1) == ["K1"]
    response = client.put("/v1/items/K1", json={"hidden": True}, headers=WRITE)
    assert response.status_code == 200, response.text
    item = response.json()
    assert (item["hidden"], item["recommendable"], item["title"]) == (True, False, "Item K1")
    assert item["revision"] >= 1
    assert "K1" not in recommended(client, "kitchen-1", k=12)
    assert "K1" not in item_ids(similar(client, "K2"))
    assert "K1" not in item_ids(popular(client, k=12, category="kitchen"))


def test_a_catalogue_change_reaches_every_process_on_its_next_request(
    client: TestClient, settings: Settings
) -> None:
    with TestClient(create_app(settings)) as other_process:
        assert recommended(other_process, "kitchen-1", k=1) == ["K1"]
        changed = {"in_stock": False, "title": "Renamed", "price": 9.5}
        assert client.put("/v1/items/K1", json=changed, headers=ADMIN).status_code == 200
        assert recommended(other_process, "kitchen-1", k=1) == ["K2"]
        got = other_process.get("/v1/items/K1", headers=READ).json()
        assert (got["title"], got["price"], got["in_stock"]) == ("Renamed", 9.5, False)


def test_fields_left_out_of_a_put_keep_their_value(client: TestClient) -> None:
    client.put("/v1/items/K2", json={"hidden": True}, headers=WRITE)
    item = client.put("/v1/items/K2", json={"price": 1.25}, headers=WRITE).json()
    assert (item["hidden"], item["price"]) == (True, 1.25)
    item = client.put("/v1/items/K2", json={"hidden": False}, headers=WRITE).json()
    assert (item["hidden"], item["price"], item["recommendable"]) == (False, 1.25, True)


def test_put_rejects_bad_bodies_with_422(client: TestClient) -> None:
    for body in ({}, {"price": -1}, {"title": None}, {"colour": "red"}, {"in_stock": "maybe"}):
        response = client.put("/v1/items/K1", json=body, headers=WRITE)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"


def test_put_of_an_unknown_item_is_404(client: TestClient) -> None:
    assert client.put("/v1/items/NOPE", json={"hidden": True}, headers=WRITE).status_code == 404


def test_put_needs_the_write_or_admin_scope(client: TestClient) -> None:
    response = client.put("/v1/items/K1", json={"hidden": True}, headers=READ)
    assert response.status_code == 403
    assert response.json()["type"].endswith("forbidden")

"""Liveness, readiness, metrics, and serving without a model."""

from __future__ import annotations

from pathlib import Path

from servingkit import API_KEYS, READ, TestClient, metric

from recsys.config import Settings
from serving.app import create_app


def test_healthz_and_readyz_are_ok_with_a_model_and_a_store(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"]


def test_metrics_count_requests_by_route_template_without_customer_ids(
    client: TestClient,
) -> None:
    client.get("/v1/customers/kitchen-1/recommendations", headers=READ)
    client.get("/v1/customers/kitchen-1/recommendations?k=0", headers=READ)
    client.get("/no/such/path/for-customer-x")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = "/v1/customers/{customer_id}/recommendations"
    requests = "recsys_http_requests_total"
    assert metric(text, requests, route=route, method="GET", status="200") == 1
    assert metric(text, requests, route=route, method="GET", status="422") == 1
    assert metric(text, requests, route="<unmatched>", method="GET", status="404") == 1
    latency = "recsys_http_request_duration_seconds_count"
    assert metric(text, latency, route=route, method="GET") == 2
    strategies = "recsys_recommendations_total"
    assert metric(text, strategies, endpoint="recommendations", strategy="personalized") == 1
    assert "kitchen-1" not in text and "customer-x" not in text


def test_without_a_model_the_service_starts_degraded(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=tmp_path, api_keys=API_KEYS
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert "no model" in ready.json()["detail"]
        recs = client.get("/v1/customers/kitchen-1/recommendations", headers=READ)
        assert recs.status_code == 200
        assert recs.json() | {"items": []} == recs.json()
        assert (recs.json()["strategy"], recs.json()["model_version"]) == ("fallback", None)
        assert client.get("/v1/popular", headers=READ).json()["items"] == []
        assert client.get("/v1/items/K1/similar", headers=READ).status_code == 503
        assert client.get("/v1/model", headers=READ).status_code == 503
        metrics = client.get("/metrics").text
        assert metric(metrics, "recsys_fallbacks_total", reason="model_unavailable") == 2


def test_the_openapi_schema_documents_every_route_and_the_api_key(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    recs = paths["/v1/customers/{customer_id}/recommendations"]["get"]
    assert {p["name"] for p in recs["parameters"]} >= {
        "customer_id", "k", "context", "item_id", "exclude_purchased", "exclude", "category"
    }  # fmt: skip
    assert "application/problem+json" in recs["responses"]["422"]["content"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    for path in ("/v1/items/{item_id}/similar", "/v1/popular", "/v1/model", "/readyz"):
        assert path in paths

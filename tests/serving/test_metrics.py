"""Operator metrics: process and platform collectors, event and offer counters, the page view's
Redis read histogram, and the documentation routes named (``serving.metrics``)."""

from __future__ import annotations

from servingkit import ADMIN, READ, WRITE, TestClient, metric

EVENTS = "recsys_events_total"
OFFERS = "recsys_offers_served_total"
REDIS = "recsys_redis_page_view_read_duration_seconds"
REQUESTS = "recsys_http_requests_total"


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_process_and_platform_metrics_are_exported(client: TestClient) -> None:
    text = scrape(client)
    assert (metric(text, "process_resident_memory_bytes") or 0) > 10_000_000
    assert (metric(text, "process_cpu_seconds_total") or 0) > 0
    assert "python_info{" in text


def test_events_are_counted_as_accepted_duplicate_and_rejected(client: TestClient) -> None:
    event = {"customer_id": "kitchen-1", "event_type": "view", "item_id": "K2", "event_id": "m-1"}
    assert client.post("/v1/events", json=event, headers=WRITE).status_code == 202
    assert client.post("/v1/events", json=event, headers=WRITE).status_code == 202  # again
    bad_batch = {"events": [{**event, "event_id": "m-2"}, {"customer_id": "kitchen-1"}]}
    assert client.post("/v1/events", json=bad_batch, headers=WRITE).status_code == 422
    text = scrape(client)
    assert metric(text, EVENTS, outcome="accepted") == 1
    assert metric(text, EVENTS, outcome="duplicate") == 1
    assert metric(text, EVENTS, outcome="rejected") == 2  # all or nothing: both of the batch
    batch = {"events": [{**event, "event_id": f"m-{i}"} for i in range(3, 6)]}
    assert client.post("/v1/events", json=batch, headers=WRITE).json()["accepted"] == 3
    assert metric(scrape(client), EVENTS, outcome="accepted") == 4


def test_offers_are_counted_by_endpoint_and_type(offers_client: TestClient) -> None:
    body = offers_client.get("/v1/customers/loyal-1/offers?k=3", headers=READ).json()
    types = [offer["type"] for offer in body["offers"]]
    assert types == ["referral_invitation", "discount", "loyalty_reward"]
    batch = {"customer_ids": ["loyal-1", "at-risk-1"], "k": 1, "channel": "email"}
    results = offers_client.post("/v1/offers/batch", json=batch, headers=READ).json()["results"]
    batch_types = [offer["type"] for result in results for offer in result["offers"]]
    nba = offers_client.get("/v1/customers/loyal-1/next-best-action", headers=READ).json()
    export = offers_client.get("/v1/offers/export?channel=email&k=1", headers=ADMIN)
    exported = [line for line in export.text.splitlines() if line]
    text = scrape(offers_client)
    for offer_type in types:
        assert metric(text, OFFERS, endpoint="offers", type=offer_type) == 1
    for offer_type in set(batch_types):
        expected = batch_types.count(offer_type)
        assert metric(text, OFFERS, endpoint="offers_batch", type=offer_type) == expected
    assert metric(text, OFFERS, endpoint="next_best_action", type=nba["action"]["type"]) == 1
    exported_total = sum(
        s for s in [metric(text, OFFERS, endpoint="offers_export", type=t) for t in
                    ("referral_invitation", "win_back", "discount", "welcome", "loyalty_reward",
                     "service_recovery", "review_request", "cart_reminder")] if s
    )  # fmt: skip
    assert exported and exported_total == len(exported)  # k=1: one offer a line


def test_the_page_view_read_is_timed_in_a_histogram(client: TestClient) -> None:
    before = metric(scrape(client), f"{REDIS}_count") or 0
    for _ in range(3):
        client.get("/v1/customers/kitchen-1/recommendations", headers=READ)
    text = scrape(client)
    assert metric(text, f"{REDIS}_count") == before + 3
    assert 0 < (metric(text, f"{REDIS}_sum") or 0) < 3.0
    assert metric(text, f"{REDIS}_bucket", le="+Inf") == before + 3


def test_documentation_routes_are_named_not_unmatched(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert client.get("/redoc").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    asset = next(
        part.split('"')[1] for part in docs.text.split("src=")[1:] if "static-offline" in part
    )
    assert client.get(asset).status_code == 200
    client.get("/no/such/page")
    text = scrape(client)
    for route in ("/docs", "/redoc", "/openapi.json", "/static-offline-docs/{path}"):
        assert metric(text, REQUESTS, route=route, method="GET", status="200") == 1, route
    assert metric(text, REQUESTS, route="<unmatched>", method="GET", status="404") == 1

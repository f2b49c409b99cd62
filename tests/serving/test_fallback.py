"""A store that goes away: answers degrade to the fallback, fast, and come back with the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from servingkit import API_KEYS, READ, TestClient, item_ids, metric, serve

from feature_store import keys
from feature_store.embedded import EmbeddedRedis
from recsys.config import Settings
from serving.app import create_app

RECS = "/v1/customers/kitchen-1/recommendations"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis", persist=False) as server:
        yield server


@pytest.fixture
def own_settings(own_redis: EmbeddedRedis, artifacts: Path) -> Settings:
    return Settings(redis_url=own_redis.url, artifacts=artifacts, api_keys=API_KEYS)


def test_a_dead_store_gives_a_fast_200_fallback_over_http(
    own_redis: EmbeddedRedis, own_settings: Settings
) -> None:
    with serve(create_app(own_settings)) as base, httpx.Client(base_url=base, headers=READ) as http:
        assert http.get(RECS).json()["strategy"] == "personalized"
        own_redis.stop()
        started = time.perf_counter()
        response = http.get(RECS, params={"k": 3}, headers={"X-Request-ID": "during-outage"})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "during-outage"
        body = response.json()
        assert body["strategy"] == "fallback" and body["model_version"]
        assert item_ids(body) == ["G0", "G1", "G2"]  # popular, never POST or OOS
        assert elapsed < 1.0
        context = http.get(RECS, params={"k": 2, "context": "product", "item_id": "K3"}).json()
        assert (context["strategy"], item_ids(context)) == ("fallback", ["K2", "K4"])
        assert http.get("/v1/popular", params={"k": 1}).status_code == 200
        assert http.get("/readyz").status_code == 503
        assert http.get("/v1/customers/kitchen-1").status_code == 503
        metrics = http.get("/metrics").text
        assert (metric(metrics, "recsys_fallbacks_total", reason="store_unavailable") or 0) >= 2


def test_answers_come_back_when_the_store_does(
    own_redis: EmbeddedRedis, own_settings: Settings
) -> None:
    with serve(create_app(own_settings)) as base, httpx.Client(base_url=base, headers=READ) as http:
        port = own_redis.port
        own_redis.stop()
        assert http.get(RECS).json()["strategy"] == "fallback"
        own_redis.port = port
        own_redis.start()  # an empty server: the features are gone, readiness reloads them
        time.sleep(own_settings.serving.circuit_open_s)
        assert wait_until_ready(http)
        assert http.get(RECS).json()["strategy"] == "personalized"


def wait_until_ready(http: httpx.Client, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http.get("/readyz").status_code == 200:
            return True
        time.sleep(0.05)
    return False


def test_a_store_down_at_start_still_serves_the_fallback(
    own_redis: EmbeddedRedis, own_settings: Settings
) -> None:
    own_redis.stop()
    with serve(create_app(own_settings)) as base, httpx.Client(base_url=base, headers=READ) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 503
        body = http.get(RECS, params={"k": 1}).json()
        assert (body["strategy"], item_ids(body)) == ("fallback", ["G0"])
        own_redis.start()
        time.sleep(own_settings.serving.circuit_open_s)
        assert wait_until_ready(http)
        assert http.get(RECS).json()["strategy"] == "personalized"


def test_a_corrupt_record_still_gets_the_page_an_answer(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_client.set(keys.customer_live(redis_prefix, "broken-1"), b"not a hash")  # WRONGTYPE
    body = client.get("/v1/customers/broken-1/recommendations?k=1", headers=READ).json()
    assert (body["strategy"], item_ids(body)) == ("fallback", ["G0"])
    assert metric(client.get("/metrics").text, "recsys_fallbacks_total", reason="store_error") == 1
    profile = client.get("/v1/customers/broken-1", headers=READ)
    assert profile.status_code == 500  # not the page-view path: an honest error, no internals
    assert "WRONGTYPE" not in profile.text and profile.json()["type"].endswith("internal")

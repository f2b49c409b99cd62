"""``GET /v1/model`` and ``POST /v1/admin/reload`` (hot reload without dropping a request)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from servingkit import (
    ADMIN,
    API_KEYS,
    READ,
    VERSION_1,
    VERSION_2,
    TestClient,
    make_bundle,
    metric,
    serve,
)

from recsys.bundle import write_bundle
from recsys.config import Settings
from serving.app import create_app


@pytest.fixture
def own_artifacts(tmp_path: Path) -> Path:
    write_bundle(make_bundle(VERSION_1), tmp_path)
    return tmp_path


@pytest.fixture
def own_settings(redis_url: str, redis_prefix: str, own_artifacts: Path) -> Settings:
    return Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=own_artifacts, api_keys=API_KEYS
    )


def test_model_describes_the_served_version(client: TestClient) -> None:
    response = client.get("/v1/model", headers=READ)
    assert response.status_code == 200
    model = response.json()
    assert model["version"] == VERSION_1
    assert model["trained_on"]["source"] == "synthetic"
    assert model["trained_on"]["as_of"].startswith("2026-01-01")
    assert model["metrics"] == {"recall@10": 0.5}
    assert (model["n_items"], model["n_customers"]) == (14, 2)
    assert model["ranker_evaluator"] == {}  # no learned ranker in this version


def test_reload_needs_admin(client: TestClient) -> None:
    assert client.post("/v1/admin/reload", headers=READ).status_code == 403


def test_reload_without_a_new_version_changes_nothing(client: TestClient) -> None:
    body = client.post("/v1/admin/reload", headers=ADMIN).json()
    assert body == {"previous_version": VERSION_1, "version": VERSION_1, "changed": False}


def test_reload_switches_to_the_newest_version_and_its_features(
    own_settings: Settings, own_artifacts: Path
) -> None:
    with TestClient(create_app(own_settings)) as client:
        write_bundle(make_bundle(VERSION_2), own_artifacts)
        body = client.post("/v1/admin/reload", headers=ADMIN).json()
        assert body == {"previous_version": VERSION_1, "version": VERSION_2, "changed": True}
        recs = client.get("/v1/customers/kitchen-1/recommendations", headers=READ).json()
        assert (recs["model_version"], recs["strategy"]) == (VERSION_2, "personalized")
        assert client.get("/v1/model", headers=READ).json()["version"] == VERSION_2
        metrics = client.get("/metrics").text
        assert metric(metrics, "recsys_model_info", version=VERSION_2) == 1
        assert metric(metrics, "recsys_model_info", version=VERSION_1) is None


def test_no_request_fails_while_the_model_is_reloaded(
    own_settings: Settings, own_artifacts: Path
) -> None:
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer(base: str) -> None:
        with httpx.Client(base_url=base, headers=READ) as http:
            while not stop.is_set():
                response = http.get("/v1/customers/kitchen-1/recommendations")
                statuses.append(response.status_code)
                versions.add(response.json()["model_version"])

    with serve(create_app(own_settings)) as base:
        threads = [threading.Thread(target=hammer, args=(base,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        write_bundle(make_bundle(VERSION_2), own_artifacts)
        reload = httpx.post(f"{base}/v1/admin/reload", headers=ADMIN, timeout=30)
        after = httpx.get(f"{base}/v1/customers/kitchen-1/recommendations", headers=READ)
        stop.set()
        for thread in threads:
            thread.join()
    assert reload.status_code == 200 and after.json()["model_version"] == VERSION_2
    assert statuses and set(statuses) == {200}
    assert versions <= {VERSION_1, VERSION_2}


def test_sample_ids_are_known_to_the_served_version(client: TestClient) -> None:
    body = client.get("/v1/model/sample-ids?n=100&seed=3", headers=READ).json()
    bundle = make_bundle(VERSION_1)
    products = {
        str(i) for i, p in zip(bundle.items.item_ids, bundle.items.is_product, strict=True) if p
    }
    assert body["model_version"] == VERSION_1
    assert sorted(body["customer_ids"]) == sorted(str(c) for c in bundle.customer_ids)
    assert set(body["item_ids"]) == products  # every product, no non-product code
    assert set(body["popular_item_ids"]) <= products and body["popular_item_ids"]
    few = client.get("/v1/model/sample-ids?n=3&seed=3", headers=READ).json()
    assert len(few["customer_ids"]) == 2 and len(few["item_ids"]) == 3
    assert set(few["item_ids"]) <= products
    again = client.get("/v1/model/sample-ids?n=3&seed=3", headers=READ).json()
    assert again == few  # the same seed, the same sample


def test_sample_ids_need_read_scope_and_a_bounded_n(client: TestClient) -> None:
    assert client.get("/v1/model/sample-ids").status_code == 401
    response = client.get("/v1/model/sample-ids?n=0", headers=READ)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")

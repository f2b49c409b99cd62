"""Model versions across processes and live state: every worker follows the store's active
version, old namespaces are dropped, and a folded vector is only used with its own version."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import redis
from servingkit import (
    ADMIN,
    API_KEYS,
    READ,
    VERSION_1,
    VERSION_2,
    WRITE,
    TestClient,
    churn_onnx,
    get_json,
    item_ids,
    make_bundle,
    metric,
    write_live,
)

from feature_store import codec, keys
from feature_store.redis_store import RedisFeatureStore
from recsys.bundle import ModelBundle, write_bundle
from recsys.config import Settings
from recsys.store import LiveRecord
from serving.app import create_app

VERSION_3 = "20260301T000000Z-cccccc"
RECS = "/v1/customers/{}/recommendations"


def swapped_bundle(version: str) -> ModelBundle:
    """The known-answer bundle with its two factor axes swapped (kitchen on axis 1)."""
    bundle = make_bundle(version)
    return dataclasses.replace(
        bundle,
        item_factors=np.ascontiguousarray(bundle.item_factors[:, ::-1]),
        user_factors=np.ascontiguousarray(bundle.user_factors[:, ::-1]),
    )


@pytest.fixture
def own_artifacts(tmp_path: Path) -> Path:
    write_bundle(make_bundle(VERSION_1), tmp_path)
    return tmp_path


@pytest.fixture
def own_settings(redis_url: str, redis_prefix: str, own_artifacts: Path) -> Settings:
    return Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=own_artifacts, api_keys=API_KEYS
    )


@pytest.fixture
def two_workers(own_settings: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two serving processes' apps over the same store and artifacts directory."""
    with TestClient(create_app(own_settings)) as a, TestClient(create_app(own_settings)) as b:
        yield a, b


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[RedisFeatureStore]:
    store = RedisFeatureStore(redis.Redis.from_url(redis_url), redis_prefix)
    yield store
    store.close()


def recommend(client: TestClient, customer_id: str, **params: object) -> dict:
    response = client.get(RECS.format(customer_id), params=params, headers=READ)
    assert response.status_code == 200, response.text
    return get_json(response)


def served_version(client: TestClient) -> str:
    return str(recommend(client, "kitchen-1", k=1)["model_version"])


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def reload(client: TestClient) -> dict:
    response = client.post("/v1/admin/reload", headers=ADMIN)
    assert response.status_code == 200, response.text
    return get_json(response)


# -- live vectors and versions ------------------------------------------------------------------


def test_a_live_vector_folded_against_another_version_is_ignored(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    garden = np.array([0.0, 1.0], dtype=np.float32)
    stale = LiveRecord(user_vector=garden, user_vector_version="20251201T000000Z-old000")
    write_live(redis_client, redis_prefix, "kitchen-1", stale)
    body = recommend(client, "kitchen-1", k=2, context="email")
    assert (body["strategy"], item_ids(body)) == ("personalized", ["K1", "K2"])  # batch vector
    current = LiveRecord(user_vector=garden, user_vector_version=VERSION_1)
    write_live(redis_client, redis_prefix, "kitchen-1", current)
    assert item_ids(recommend(client, "kitchen-1", k=2, context="email")) == ["G0", "G1"]


def test_after_a_reload_a_vector_folded_in_the_old_version_no_longer_steers(
    own_settings: Settings, own_artifacts: Path
) -> None:
    events = [
        {"customer_id": "gardener", "event_type": "purchase", "item_id": item, "event_id": item}
        for item in ("G1", "G3")
    ]
    with TestClient(create_app(own_settings)) as client:
        assert client.post("/v1/events", json={"events": events}, headers=WRITE).status_code == 202
        assert set(item_ids(recommend(client, "gardener", k=2, context="email"))) <= {
            "G0", "G2", "G4", "G5"
        }  # fmt: skip
        write_bundle(swapped_bundle(VERSION_2), own_artifacts)  # garden is axis 0 there
        assert reload(client)["version"] == VERSION_2
        body = recommend(client, "gardener", k=2, context="email")
        assert body["model_version"] == VERSION_2
        assert set(item_ids(body)) <= {"G0", "G2", "G4", "G5"}  # not the kitchen of axis 1


def test_events_after_a_reload_are_folded_against_the_new_version(
    own_settings: Settings, own_artifacts: Path, redis_client: redis.Redis, redis_prefix: str
) -> None:
    with TestClient(create_app(own_settings)) as client:
        write_bundle(swapped_bundle(VERSION_2), own_artifacts)
        reload(client)
        event = {"customer_id": "new-gardener", "event_type": "purchase", "item_id": "G1"}
        assert client.post("/v1/events", json=event, headers=WRITE).status_code == 202
    raw = redis_client.hgetall(keys.customer_live(redis_prefix, "new-gardener"))
    live = codec.decode_live(cast(dict[bytes, bytes], raw))
    assert live.user_vector_version == VERSION_2
    assert live.user_vector is not None and live.user_vector[0] > abs(live.user_vector[1])


def profile(client: TestClient, customer_id: str) -> dict:
    response = client.get(f"/v1/customers/{customer_id}", headers=READ)
    assert response.status_code == 200, response.text
    return get_json(response)


def with_churn_model(version: str, onnx_bytes: bytes) -> ModelBundle:
    platt = {"method": "platt", "a": 0.5, "b": 0.0}  # raw 0.8 -> sigmoid(ln 2) = 2/3
    bundle = make_bundle(version)
    return dataclasses.replace(
        bundle, churn_onnx=onnx_bytes, extra={"churn": {"calibration": platt}}
    )


def test_a_purchase_is_rescored_by_the_versions_calibrated_churn_model(
    own_settings: Settings, own_artifacts: Path
) -> None:
    write_bundle(with_churn_model(VERSION_2, churn_onnx(0.8)), own_artifacts)
    with TestClient(create_app(own_settings)) as client:
        assert profile(client, "kitchen-1")["churn_risk"] is None
        event = {"customer_id": "kitchen-1", "event_type": "purchase", "item_id": "K4"}
        assert client.post("/v1/events", json=event, headers=WRITE).status_code == 202
        assert profile(client, "kitchen-1")["churn_risk"] == pytest.approx(2 / 3, abs=1e-4)


def test_a_version_with_an_unusable_churn_model_still_serves_and_takes_events(
    own_settings: Settings, own_artifacts: Path
) -> None:
    write_bundle(with_churn_model(VERSION_2, b"not an onnx model"), own_artifacts)
    with TestClient(create_app(own_settings)) as client:
        assert served_version(client) == VERSION_2
        event = {"customer_id": "kitchen-1", "event_type": "purchase", "item_id": "K4"}
        assert client.post("/v1/events", json=event, headers=WRITE).status_code == 202
        assert profile(client, "kitchen-1")["churn_risk"] is None


# -- several workers ----------------------------------------------------------------------------


def test_a_reload_on_one_worker_reaches_the_other_without_a_failed_request(
    two_workers: tuple[TestClient, TestClient], own_artifacts: Path
) -> None:
    a, b = two_workers
    assert served_version(a) == served_version(b) == VERSION_1
    write_bundle(make_bundle(VERSION_2), own_artifacts)
    assert reload(a) == {"previous_version": VERSION_1, "version": VERSION_2, "changed": True}
    assert eventually(lambda: served_version(b) == VERSION_2)  # every request answered 200
    assert b.get("/v1/model", headers=READ).json()["version"] == VERSION_2
    assert metric(b.get("/metrics").text, "recsys_model_info", version=VERSION_2) == 1


def test_a_version_older_than_the_previous_one_is_dropped_from_the_store(
    two_workers: tuple[TestClient, TestClient],
    own_artifacts: Path,
    store: RedisFeatureStore,
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    a, b = two_workers
    for version in (VERSION_2, VERSION_3):
        write_bundle(make_bundle(version), own_artifacts)
        assert reload(a)["version"] == version
    assert (store.active_version(), store.previous_version()) == (VERSION_3, VERSION_2)
    assert not store.has_version(VERSION_1)
    assert not list(redis_client.scan_iter(match=keys.version_pattern(redis_prefix, VERSION_1)))
    assert store.has_version(VERSION_2)  # kept: a worker may still be on it
    assert eventually(lambda: served_version(b) == VERSION_3)
    assert recommend(b, "kitchen-1")["strategy"] == "personalized"


def test_a_switch_back_to_an_older_version_in_the_store_reaches_every_worker(
    two_workers: tuple[TestClient, TestClient], own_artifacts: Path, store: RedisFeatureStore
) -> None:
    a, b = two_workers
    write_bundle(make_bundle(VERSION_2), own_artifacts)
    reload(a)
    assert eventually(lambda: served_version(b) == VERSION_2)
    store.activate(VERSION_1)  # a rollback
    assert eventually(lambda: served_version(a) == VERSION_1)
    assert eventually(lambda: served_version(b) == VERSION_1)


def test_an_active_version_missing_from_this_disk_leaves_the_worker_on_its_own(
    client: TestClient, store: RedisFeatureStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    elsewhere = "20990101T000000Z-zzzzzz"  # loaded by a machine with newer artifacts
    redis_client.set(keys.loaded_marker(redis_prefix, elsewhere), b"{}")
    store.activate(elsewhere)
    serving = client.app.state.serving  # type: ignore[attr-defined]
    assert serving.follow_active(elsewhere) == VERSION_1
    assert served_version(client) == VERSION_1
    assert store.active_version() == elsewhere  # not fought over


# -- k limits and exclusions --------------------------------------------------------------------


def test_k_limits_come_from_the_settings(own_settings: Settings) -> None:
    limited = own_settings.model_copy(
        update={"serving": own_settings.serving.model_copy(update={"default_k": 3, "max_k": 5})}
    )
    with TestClient(create_app(limited)) as client:
        assert len(recommend(client, "garden-1")["items"]) == 3
        assert len(recommend(client, "garden-1", k=5)["items"]) == 5
        for url in (RECS.format("garden-1"), "/v1/popular", "/v1/items/K3/similar"):
            response = client.get(url, params={"k": 6}, headers=READ)
            assert response.status_code == 422, url
            assert response.json()["errors"][0]["loc"] == ["query", "k"]
        assert len(get_json(client.get("/v1/popular", headers=READ))["items"]) == 3


def test_exclude_takes_repeated_and_comma_separated_ids(client: TestClient) -> None:
    body = recommend(client, "kitchen-1", k=2, exclude=["K1,K2", "K3"])
    assert item_ids(body) == ["K4", "K5"]
    assert item_ids(recommend(client, "kitchen-1", k=1, exclude="K1, K2,,K3")) == ["K4"]


def test_a_control_character_in_an_excluded_id_is_a_422(client: TestClient) -> None:
    response = client.get(RECS.format("kitchen-1"), params={"exclude": "K1,\x01"}, headers=READ)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "exclude"]

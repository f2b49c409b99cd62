"""Synthetic events -> training pipeline -> bundle -> Redis -> HTTP, once, on a small data set."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from servingkit import API_KEYS, READ, TestClient, get_json, item_ids

from recsys.bundle import ModelBundle, read_bundle
from recsys.config import Settings, TrainingConfig
from serving.app import create_app


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small bundle trained by the real pipeline (serving itself never imports training)."""
    from recsys.io.synthetic import generate_events, write_events
    from training.pipeline import train_bundle

    root = tmp_path_factory.mktemp("trained")
    events, catalog = generate_events(200, 60, 120, seed=11)
    write_events(events, root / "events.csv.gz")
    catalog.to_csv(root / "catalog.csv", index=False)
    with warnings.catch_warnings():
        # implicit warns when OpenBLAS may use threads (OPENBLAS_NUM_THREADS unset): slow, fine.
        warnings.filterwarnings("ignore", "OpenBLAS is configured", RuntimeWarning)
        return train_bundle(
            root / "events.csv.gz",
            root / "artifacts",
            catalog_path=root / "catalog.csv",
            config=TrainingConfig(factors=8, iterations=5),
            holdout_days=None,
        )


@pytest.fixture
def trained_client(
    trained: Path, redis_url: str, redis_prefix: str
) -> Iterator[tuple[TestClient, ModelBundle]]:
    settings = Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=trained.parent, api_keys=API_KEYS
    )
    with TestClient(create_app(settings)) as client:
        yield client, read_bundle(trained)


def test_a_trained_bundle_is_served_end_to_end(
    trained_client: tuple[TestClient, ModelBundle],
) -> None:
    client, bundle = trained_client
    row = int(np.argmax(np.diff(bundle.history.indptr)))  # the customer with most items bought
    customer_id = str(bundle.customer_ids[row])
    bought = {str(bundle.items.item_ids[i]) for i in bundle.history[row].indices}
    body = get_json(client.get(f"/v1/customers/{customer_id}/recommendations?k=5", headers=READ))
    assert (body["strategy"], body["model_version"]) == ("personalized", bundle.version)
    assert len(body["items"]) == 5 and not bought & set(item_ids(body))
    recommendable = bundle.items.in_stock & bundle.items.is_product
    allowed = set(bundle.items.item_ids[recommendable].tolist())
    assert set(item_ids(body)) <= allowed

    profile = get_json(client.get(f"/v1/customers/{customer_id}", headers=READ))
    features = bundle.features.set_index("customer_id").loc[customer_id]
    assert profile["features"]["frequency"] == pytest.approx(float(features["frequency"]))
    assert profile["features"]["last_purchase_at"] is not None

    best_seller = str(bundle.items.item_ids[int(bundle.popular[0])])
    similar = get_json(client.get(f"/v1/items/{best_seller}/similar?k=3", headers=READ))
    assert 0 < len(similar["items"]) <= 3 and best_seller not in item_ids(similar)
    assert len(get_json(client.get("/v1/popular?k=5", headers=READ))["items"]) == 5
    assert client.get("/readyz").status_code == 200

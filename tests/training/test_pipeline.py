from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trainingkit import CLUSTER_A, CLUSTER_B, START, clustered_interactions, write_events_csv

from recsys.bundle import LATEST_FILE, latest_version_dir, read_bundle
from recsys.config import TrainingConfig
from recsys.errors import DataFileError, InvalidRequestError
from recsys.ranking.scoring import RankingModel, RankingParams, score_items, top_k
from training.build import BuildOptions, build_bundle
from training.pipeline import train_bundle

CONFIG = TrainingConfig(factors=4, regularization=0.1, alpha=2.0, iterations=10, neighbours=5)
FAST = BuildOptions(with_features=False, with_churn=False)
AS_OF = START + pd.Timedelta(days=61)


@pytest.fixture(scope="module")
def bundle(clustered: pd.DataFrame):
    return build_bundle(clustered, None, AS_OF, CONFIG, options=FAST)


def _ranked(bundle, customer: str, k: int, exclude_purchased: bool) -> list[str]:
    model = RankingModel.from_bundle(bundle)
    u = int(np.flatnonzero(bundle.customer_ids == customer)[0])
    h, ages = bundle.history.tocsr(), bundle.history_last_days.tocsr()
    lo, hi = h.indptr[u], h.indptr[u + 1]
    scores = score_items(
        model, bundle.user_factors[u], h.indices[lo:hi], h.data[lo:hi], ages.data[lo:hi]
    )
    blocked = ~bundle.items.is_product
    if exclude_purchased:
        blocked = blocked.copy()
        blocked[h.indices[lo:hi]] = True
    rows, _ = top_k(scores.total, k, blocked)
    return [str(bundle.items.item_ids[r]) for r in rows]


def test_a_customer_who_bought_part_of_a_cluster_gets_the_rest_of_it(bundle) -> None:
    assert set(_ranked(bundle, "probe", 3, exclude_purchased=True)) == {"A3", "A4", "A5"}


def test_the_frequent_reorder_comes_first_when_purchased_items_are_allowed(bundle) -> None:
    ranked = _ranked(bundle, "loyal", 4, exclude_purchased=False)
    assert ranked[0] == "B0"
    assert set(ranked) <= set(CLUSTER_B)


def test_neighbours_stay_in_cluster_and_non_products_are_not_learned(bundle) -> None:
    ids = bundle.items.item_ids
    a0 = int(np.flatnonzero(ids == "A0")[0])
    found = {str(ids[i]) for i in bundle.neighbour_indices[a0] if i >= 0}
    assert found and found <= set(CLUSTER_A)
    post = int(np.flatnonzero(ids == "POST")[0])
    assert not bundle.items.is_product[post]
    assert not bundle.item_factors[post].any()
    assert post not in bundle.popular


def test_bundle_arrays_have_consistent_shapes(bundle) -> None:
    n_items, n_customers = len(bundle.items), len(bundle.customer_ids)
    assert bundle.item_factors.shape == (n_items, CONFIG.factors)
    assert bundle.user_factors.shape == (n_customers, CONFIG.factors)
    assert bundle.neighbour_indices.shape == bundle.neighbour_scores.shape == (n_items, 5)
    assert bundle.history.shape == bundle.history_last_days.shape == (n_customers, n_items)
    assert bundle.user_factors.dtype == np.float32
    assert bundle.manifest.params["ranking"] == RankingParams().to_dict()


def test_only_events_before_as_of_and_not_excluded_customers_are_used(
    clustered: pd.DataFrame,
) -> None:
    as_of = START + pd.Timedelta(days=30)
    b = build_bundle(clustered, None, as_of, CONFIG, exclude_customers={"loyal"}, options=FAST)
    assert "loyal" not in set(b.customer_ids)
    assert b.manifest.data.end < as_of.to_pydatetime()
    assert b.history_last_days.data.min() >= 0


def test_the_stores_erased_set_leaves_its_customers_out_by_digest(
    clustered: pd.DataFrame, redis_url: str, redis_prefix: str
) -> None:
    """What ``recsys train`` passes: a container that digests each id, not a list of ids."""
    from feature_store.connection import connect
    from feature_store.redis_store import RedisFeatureStore

    store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix)
    try:
        store.erase_customer("loyal")
        erased = store.erased_customers()
    finally:
        store.close()
    as_of = START + pd.Timedelta(days=30)
    b = build_bundle(clustered, None, as_of, CONFIG, exclude_customers=erased, options=FAST)
    assert "loyal" not in set(b.customer_ids) and len(b.customer_ids) > 0
    assert b.manifest.counts["excluded_customers"] == 1


def test_no_purchases_before_as_of_is_an_invalid_request(clustered: pd.DataFrame) -> None:
    with pytest.raises(InvalidRequestError):
        build_bundle(clustered, None, START, CONFIG, options=FAST)


def test_train_bundle_writes_a_readable_version_with_a_manifest(tmp_path: Path) -> None:
    events = write_events_csv(clustered_interactions(), tmp_path / "events.csv")
    out = tmp_path / "artifacts"
    path = train_bundle(events, out, config=CONFIG, holdout_days=20)
    assert latest_version_dir(out) == path
    loaded = read_bundle(path)
    m = loaded.manifest
    assert m.version == path.name
    assert m.data.format == "events" and m.data.source == str(events)
    assert m.counts["customers"] == len(loaded.customer_ids)
    assert m.counts["items"] == len(loaded.items)
    assert m.training_seconds and m.training_seconds > 0
    assert m.data.load_report["rows_loaded"] > 0
    assert "served" in m.metrics["offline"]["tasks"]["all"]
    assert loaded.history.shape == (len(loaded.customer_ids), len(loaded.items))
    assert set(loaded.features["customer_id"]) == set(loaded.customer_ids)
    assert RankingModel.from_bundle(loaded).params == RankingParams()


def test_a_failed_training_leaves_the_previous_latest_in_place(tmp_path: Path) -> None:
    out = tmp_path / "artifacts"
    good = train_bundle(
        write_events_csv(clustered_interactions(), tmp_path / "events.csv"),
        out,
        config=CONFIG,
        holdout_days=None,
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,event_type,timestamp\nc1,purchase,not-a-date\n")
    with pytest.raises(DataFileError):
        train_bundle(bad, out, config=CONFIG)
    assert (out / LATEST_FILE).read_text().strip() == good.name
    assert [p.name for p in out.iterdir() if p.is_dir()] == [good.name]


def test_a_failed_first_training_writes_no_latest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,event_type,timestamp\nc1,purchase,not-a-date\n")
    with pytest.raises(DataFileError):
        train_bundle(bad, tmp_path / "artifacts", config=CONFIG)
    assert not (tmp_path / "artifacts" / LATEST_FILE).exists()

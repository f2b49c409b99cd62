"""From a bundle to the store: records built right, loaded once, activated, erased left out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from storekit import spawn_redis

from feature_store import feature_pack, keys
from feature_store.bulk_load import ensure_loaded, load_bundle, records_from_bundle
from feature_store.connection import connect
from feature_store.redis_store import RedisFeatureStore
from recsys.bundle import DataWindow, ItemTable, Manifest, ModelBundle
from recsys.errors import (
    InternalError,
    InvalidRequestError,
    ModelUnavailableError,
    StoreUnavailableError,
)


def make_bundle(version: str = "20261122T000000Z-abc123", n: int = 4) -> ModelBundle:
    """``n`` customers a0..; customer i bought items 0..i-1, i+1 units each, i days ago."""
    n_items = 6
    rows, cols, counts, days = [], [], [], []
    for i in range(n):
        for item in range(i):
            rows.append(i)
            cols.append(item)
            counts.append(float(i + 1))
            days.append(float(i))
    shape = (n, n_items)
    history = sp.csr_matrix((np.array(counts, np.float32), (rows, cols)), shape=shape)
    last_days = sp.csr_matrix((np.array(days, np.float32), (rows, cols)), shape=shape)
    ids = np.array([f"a{i}" for i in range(n)])
    features = pd.DataFrame(
        {
            "customer_id": list(reversed(ids.tolist())) + ["features-only"],  # any order
            "frequency": np.arange(n + 1)[::-1],
            "monetary": [10.25, np.nan, 3.5, 0.1, 7.0][: n + 1][::-1],
            "segment": pd.Series(["loyal", None, "new", "lost", "x"][: n + 1], dtype="string"),
            "last_purchase_at": pd.to_datetime(
                ["2011-08-01 10:30:00", None, "2011-01-02 00:00:00", "2011-05-05 00:00:00", None]
            )[: n + 1],
            "promoter": [True, False, True, False, True][: n + 1],
        }
    )
    return ModelBundle(
        manifest=Manifest(
            version=version,
            created_at=datetime(2026, 11, 22, tzinfo=UTC),
            data=DataWindow(source="test", format="events", as_of=datetime(2011, 9, 1)),
        ),
        items=ItemTable(
            item_ids=np.array([f"i{k}" for k in range(n_items)]),
            titles=np.array([""] * n_items),
            categories=np.array([""] * n_items),
            prices=np.ones(n_items, np.float32),
            in_stock=np.ones(n_items, bool),
            is_product=np.ones(n_items, bool),
        ),
        customer_ids=ids,
        user_factors=np.arange(n * 3, dtype=np.float32).reshape(n, 3),
        item_factors=np.zeros((n_items, 3), np.float32),
        neighbour_indices=np.zeros((n_items, 0), np.int32),
        neighbour_scores=np.zeros((n_items, 0), np.float32),
        popular=np.zeros(0, np.int32),
        popular_scores=np.zeros(0, np.float32),
        trending=np.zeros(0, np.int32),
        trending_scores=np.zeros(0, np.float32),
        history=history,
        history_last_days=last_days,
        features=features,
    )


def test_records_carry_each_customers_row_of_every_array() -> None:
    records = dict(records_from_bundle(make_bundle()))
    assert list(records) == ["a0", "a1", "a2", "a3", "features-only"]
    a2 = records["a2"]
    assert a2.user_vector is not None and a2.user_vector.tolist() == [6.0, 7.0, 8.0]
    assert a2.history_items.tolist() == [0, 1]
    assert a2.history_counts.tolist() == [3.0, 3.0]
    assert a2.history_last_days.tolist() == [2.0, 2.0]
    assert records["a0"].history_items.size == 0


def test_features_become_plain_json_values() -> None:
    records = dict(records_from_bundle(make_bundle()))
    # The feature table is in reverse order: a3 is its first row.
    assert records["a3"].features == {
        "frequency": 4,
        "monetary": 7.0,
        "segment": "loyal",
        "last_purchase_at": "2011-08-01T10:30:00",
        "promoter": True,
    }
    assert records["a2"].features == {
        "frequency": 3,
        "monetary": 0.1,
        "segment": None,  # <NA>
        "last_purchase_at": None,  # NaT
        "promoter": False,
    }
    assert records["a0"].features["monetary"] is None  # NaN
    only = records["features-only"]
    assert only.features["frequency"] == 0 and only.user_vector is None


def test_excluded_customers_are_skipped() -> None:
    ids = [cid for cid, _ in records_from_bundle(make_bundle(), exclude={"a1", "features-only"})]
    assert ids == ["a0", "a2", "a3"]


def test_an_inconsistent_bundle_is_refused() -> None:
    bundle = make_bundle()
    bundle.user_factors = bundle.user_factors[:2]
    with pytest.raises(ModelUnavailableError, match="inconsistent"):
        next(records_from_bundle(bundle))


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[RedisFeatureStore]:
    the_store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix, chunk_size=2)
    yield the_store
    the_store.close()


def test_ensure_loaded_loads_once_and_activates(store: RedisFeatureStore) -> None:
    bundle = make_bundle()
    assert ensure_loaded(store, bundle) is True
    assert store.has_version(bundle.version)
    assert store.active_version() == bundle.version
    assert store.version_info(bundle.version)["records"] == 5  # type: ignore[index]
    state = store.read_customer(bundle.version, "a3")
    assert state.batch is not None and state.batch.features["segment"] == "loyal"
    assert state.batch.history_items.tolist() == [0, 1, 2]
    assert ensure_loaded(store, bundle) is False  # already there: nothing written


def test_ensure_loaded_activates_an_already_loaded_version(store: RedisFeatureStore) -> None:
    old, new = make_bundle("v-old"), make_bundle("v-new")
    ensure_loaded(store, new)
    ensure_loaded(store, old)
    assert store.active_version() == "v-old"
    assert ensure_loaded(store, new) is False
    assert store.active_version() == "v-new"
    assert store.previous_version() == "v-old"


def test_erased_customers_are_not_loaded_again(store: RedisFeatureStore) -> None:
    store.erase_customer("a2")
    bundle = make_bundle()
    ensure_loaded(store, bundle)
    assert store.read_customer(bundle.version, "a2").batch is None
    assert store.read_customer(bundle.version, "a3").batch is not None


def test_ensure_loaded_waits_for_another_loader(store: RedisFeatureStore) -> None:
    bundle = make_bundle()
    with store.load_lock(bundle.version) as acquired:
        assert acquired
        with pytest.raises(StoreUnavailableError, match="waiting for another process"):
            ensure_loaded(store, bundle, wait_s=0.3)

        def other_process_finishes() -> None:
            time.sleep(0.3)
            store.load_version(bundle.version, records_from_bundle(bundle))

        thread = threading.Thread(target=other_process_finishes)
        thread.start()
        assert ensure_loaded(store, bundle, wait_s=10) is False  # it waited, did not load
        thread.join()
    assert store.active_version() == bundle.version


def test_a_crashed_loaders_lock_expires(store: RedisFeatureStore) -> None:
    bundle = make_bundle()
    with store.load_lock(bundle.version, ttl_s=0.2) as acquired:
        assert acquired
        time.sleep(0.3)  # the lock expired: another process may load
        assert ensure_loaded(store, bundle, wait_s=5) is True


def test_a_history_cap_keeps_the_most_recent_items_and_most_bought_on_ties() -> None:
    bundle = make_bundle()
    last = bundle.history_last_days.tolil()
    counts = bundle.history.tolil()
    last[3, 0], last[3, 1], last[3, 2] = 9.0, 1.0, 1.0  # a3: item 0 long ago, 1 and 2 lately
    counts[3, 1], counts[3, 2] = 2.0, 5.0  # item 2 bought more often than item 1
    bundle.history_last_days, bundle.history = last.tocsr(), counts.tocsr()
    records = dict(records_from_bundle(bundle, max_history=1))
    assert records["a3"].history_items.tolist() == [2]
    assert records["a3"].history_counts.tolist() == [5.0]
    two = dict(records_from_bundle(bundle, max_history=2))["a3"]
    assert two.history_items.tolist() == [1, 2] and two.history_last_days.tolist() == [1.0, 1.0]
    assert dict(records_from_bundle(bundle))["a3"].history_items.tolist() == [0, 1, 2]


def test_a_compact_load_stores_float16_vectors_read_back_as_float32(
    store: RedisFeatureStore,
) -> None:
    bundle = make_bundle()
    bundle.user_factors = bundle.user_factors + np.float32(0.1)
    ensure_loaded(store, bundle, compact=True, max_history=2)
    state = store.read_customer(bundle.version, "a3")
    assert state.batch is not None and state.batch.user_vector is not None
    assert state.batch.user_vector.dtype == np.float32
    np.testing.assert_allclose(state.batch.user_vector, bundle.user_factors[3], rtol=1e-3)
    assert state.batch.user_vector.tolist() != bundle.user_factors[3].tolist()  # rounded
    assert state.batch.history_items.tolist() == [0, 1]  # all bought 3 days ago: row order
    key = keys.customer_batch(store.prefix, "a3", bundle.version)
    assert store.client.hget(key, "u") == b"" and len(store.client.hget(key, "u2")) == 6


# -- the bulk load of a bundle: packed features, vectorised chunks ---------------------------


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No feature schema known, as in a process that never loaded or read one."""
    monkeypatch.setattr(feature_pack, "_known", {})
    monkeypatch.setattr(feature_pack, "_by_json", {})


def test_a_bundle_load_reads_back_what_the_json_records_held(store: RedisFeatureStore) -> None:
    bundle = make_bundle()
    assert load_bundle(store, bundle, chunk=2) == 5
    assert store.version_info(bundle.version)["records"] == 5  # type: ignore[index]
    for customer_id, want in records_from_bundle(bundle):
        got = store.read_customer(bundle.version, customer_id).batch
        assert got is not None and got.features == want.features
        if want.user_vector is None:
            assert got.user_vector is None and got.history_items.size == 0
            continue
        assert got.user_vector is not None
        assert got.user_vector.tobytes() == want.user_vector.tobytes()  # float32: exact
        for name in ("history_items", "history_counts", "history_last_days"):
            assert getattr(got, name).tobytes() == getattr(want, name).tobytes()


def test_a_compact_bundle_load_keeps_vectors_within_float16_precision(
    store: RedisFeatureStore,
) -> None:
    bundle = make_bundle()
    bundle.user_factors = bundle.user_factors / np.float32(7)
    load_bundle(store, bundle, compact=True, max_history=2)
    for customer_id, want in records_from_bundle(bundle, max_history=2):
        got = store.read_customer(bundle.version, customer_id).batch
        assert got is not None and got.features == want.features
        if want.user_vector is not None:
            assert got.user_vector is not None and got.user_vector.dtype == np.float32
            np.testing.assert_allclose(got.user_vector, want.user_vector, rtol=1e-3, atol=1e-6)
            assert got.history_items.tolist() == want.history_items.tolist()


def test_packed_features_are_read_by_a_process_that_never_saw_their_schema(
    store: RedisFeatureStore, fresh_process: None
) -> None:
    bundle = make_bundle()
    load_bundle(store, bundle)
    want = dict(records_from_bundle(bundle))["a3"].features
    feature_pack._known.clear()
    feature_pack._by_json.clear()
    assert store.read_customer(bundle.version, "a3").batch.features == want  # type: ignore[union-attr]
    feature_pack._known.clear()
    feature_pack._by_json.clear()
    assert store.export_customer("a3", events=False)["batch"][bundle.version]["features"] == want


def test_event_ingestion_reads_the_packed_batch_features(
    store: RedisFeatureStore, fresh_process: None
) -> None:
    from feature_store.ingest import EventWriter
    from recsys.customers.live_update import OnlineModel, plan_updates
    from recsys.events import utcnow, validate_batch

    bundle = make_bundle()
    load_bundle(store, bundle)
    online = OnlineModel(
        version=bundle.version,
        as_of=datetime(2011, 9, 1),
        item_ids=bundle.items.item_ids.tolist(),
        row_of={item: row for row, item in enumerate(bundle.items.item_ids.tolist())},
        fold=None,
    )
    writer = EventWriter(store.client, store.prefix, stream_maxlen=100)
    event = {"customer_id": "a3", "event_type": "purchase", "item_id": "i1", "price": 2.0}
    writer.ingest(
        validate_batch([event]),
        bundle.version,
        lambda snapshots, events: plan_updates(online, snapshots, events, utcnow()),
    )
    live = store.read_customer(bundle.version, "a3").live
    assert live.features["frequency"] == 5  # 4 in the packed batch record, + 1


def test_a_bundle_record_is_a_small_listpack_naming_no_feature(store: RedisFeatureStore) -> None:
    bundle = make_bundle()
    load_bundle(store, bundle, compact=True)
    key = keys.customer_batch(store.prefix, "a3", bundle.version)
    assert store.client.object("encoding", key) in (b"listpack", b"ziplist")
    packed = store.client.hget(key, keys.BATCH_PACKED_FEATURES)
    assert packed and b"frequency" not in packed and b"loyal" not in packed
    assert store.client.hget(key, keys.BATCH_FEATURES) == b""
    schema = keys.feature_schema(store.prefix, bundle.version)
    assert b"frequency" in store.client.get(schema)  # named once, for the version
    assert store.delete_version(bundle.version) == 5
    assert store.client.exists(schema) == 0


def test_a_bundle_with_a_bad_customer_id_writes_nothing(store: RedisFeatureStore) -> None:
    bundle = make_bundle()
    bundle.customer_ids = np.array(["a0", "a1", "bad id", "a3"])
    with pytest.raises(InvalidRequestError, match="invalid customer id 'bad id'"):
        load_bundle(store, bundle)
    assert store.client.exists(keys.customer_batch(store.prefix, "a0", bundle.version)) == 0


def test_a_load_that_fails_half_way_leaves_no_loaded_marker(store: RedisFeatureStore) -> None:
    bundle = make_bundle()
    blocker = keys.customer_batch(store.prefix, "a3", bundle.version)
    store.client.set(blocker, "not a hash")  # its HSET fails: WRONGTYPE, in the second chunk
    with pytest.raises(InternalError, match="WRONGTYPE"):
        load_bundle(store, bundle, chunk=2)
    assert not store.has_version(bundle.version)
    store.client.delete(blocker)
    assert load_bundle(store, bundle, chunk=2) == 5 and store.has_version(bundle.version)


def test_a_server_whose_listpack_limit_is_too_small_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process, port = spawn_redis(tmp_path, "--hash-max-ziplist-value", "64")
    small = RedisFeatureStore(connect(f"redis://127.0.0.1:{port}", timeout_ms=2000), "p")
    try:
        bundle = make_bundle()
        bundle.user_factors = np.ones((4, 40), np.float32)  # 80 bytes as float16: over 64
        with caplog.at_level(logging.WARNING, logger="feature_store.batch_writer"):
            load_bundle(small, bundle, compact=True)
        assert "hash-max-ziplist-value is 64" in caplog.text and "at least 80" in caplog.text
        key = keys.customer_batch("p", "a3", bundle.version)
        assert small.client.object("encoding", key) == b"hashtable"
        caplog.clear()
        small.client.config_set("hash-max-ziplist-value", 80)
        with caplog.at_level(logging.WARNING, logger="feature_store.batch_writer"):
            load_bundle(small, bundle, compact=True)
        assert caplog.text == ""
    finally:
        small.close()
        process.terminate()
        process.wait(10)

"""RedisFeatureStore against a real Redis: round trips, versions, overrides, privacy, failure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from storekit import assert_same_batch, one_node_cluster, record, records, spawn_redis

from feature_store import codec, keys
from feature_store.connection import connect, is_cluster_url, store_errors
from feature_store.redis_store import RedisFeatureStore
from recsys.config import ServingConfig, Settings
from recsys.errors import (
    InvalidRequestError,
    NotFoundError,
    StoreUnavailableError,
)
from recsys.store import BatchRecord, LiveRecord, ReadPlan


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[RedisFeatureStore]:
    the_store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix, chunk_size=7)
    yield the_store
    the_store.close()


# -- reads (the behaviour of every reader: test_readers.py) --------------------------------------


def test_an_invalid_customer_id_is_not_erased(store: RedisFeatureStore) -> None:
    for bad in ["a}b", "", "x y", "a*"]:
        with pytest.raises(InvalidRequestError, match="invalid customer id"):
            store.erase_customer(bad)


def test_live_customer_ids_finds_every_customer_with_a_live_record(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    store.load_version("v1", records(5))  # batch records only: not listed
    for i in range(25):
        redis_client.hset(keys.customer_live(store.prefix, f"new-{i}"), "views", b"[]")
    pages = list(store.live_customer_ids(count=7))
    assert all(pages)
    assert {c for page in pages for c in page} == {f"new-{i}" for i in range(25)}


# -- versions ------------------------------------------------------------------------------------


def test_a_reader_sees_one_whole_version_before_and_after_the_switch(
    store: RedisFeatureStore,
) -> None:
    ids = [f"c{i}" for i in range(40)]
    store.load_version("v1", records(40, "v1"))
    store.activate("v1")
    seen_during_load: list[set[str]] = []

    def new_records() -> Iterator[tuple[str, BatchRecord]]:
        for i, (customer_id, rec) in enumerate(records(40, "v2")):
            if i in (10, 25):  # chunks of v2 are already in Redis: readers must not see them
                assert not store.has_version("v2")
                active = store.active_version()
                assert active == "v1"
                states = store.read(ReadPlan.of(active, ids)).states
                seen_during_load.append({s.batch.features["version"] for s in states if s.batch})
                assert all(s.batch is not None for s in states)
            yield customer_id, rec

    assert store.load_version("v2", new_records()) == 40
    assert seen_during_load == [{"v1"}, {"v1"}]
    assert store.active_version() == "v1"  # loading does not switch
    store.activate("v2")
    assert store.active_version() == "v2"
    assert store.previous_version() == "v1"
    states = store.read(ReadPlan.of(store.active_version() or "", ids)).states
    assert {s.batch.features["version"] for s in states if s.batch} == {"v2"}
    assert all(s.batch is not None for s in states)


def test_a_half_loaded_version_is_not_a_version(store: RedisFeatureStore) -> None:
    def failing() -> Iterator[tuple[str, BatchRecord]]:
        yield from records(20)
        raise RuntimeError("training output truncated")

    with pytest.raises(RuntimeError):
        store.load_version("v1", failing())
    assert store.read_customer("v1", "c3").batch is not None  # chunks did land...
    assert not store.has_version("v1")  # ...but without the marker it is not a version
    with pytest.raises(NotFoundError):
        store.activate("v1")
    assert store.load_version("v1", records(20)) == 20
    assert store.has_version("v1")
    info = store.version_info("v1")
    assert info is not None and info["records"] == 20 and info["loaded_at"].startswith("20")
    assert store.version_info("v9") is None


def test_reloading_a_version_clears_its_marker_until_done(store: RedisFeatureStore) -> None:
    store.load_version("v1", records(5))

    def checking() -> Iterator[tuple[str, BatchRecord]]:
        assert not store.has_version("v1")
        yield from records(5)

    store.load_version("v1", checking())
    assert store.has_version("v1")


def test_activate_twice_keeps_the_real_previous_version(store: RedisFeatureStore) -> None:
    store.load_version("v1", records(2))
    store.load_version("v2", records(2))
    assert store.active_version() is None
    store.activate("v1")
    store.activate("v2")
    store.activate("v2")
    assert (store.active_version(), store.previous_version()) == ("v2", "v1")


def test_delete_version_drops_only_that_namespace(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    store.load_version("v1", records(30))
    store.load_version("v2", records(30))
    store.activate("v2")
    redis_client.hset(keys.customer_live(store.prefix, "c1"), "views", b'["A"]')
    with pytest.raises(InvalidRequestError, match="active"):
        store.delete_version("v2")
    assert store.delete_version("v1") == 30
    assert not store.has_version("v1")
    assert store.read_customer("v1", "c1").batch is None
    state = store.read_customer("v2", "c1")
    assert state.batch is not None and state.live.recent_views == ("A",)


def test_versions_must_be_key_safe(store: RedisFeatureStore) -> None:
    with pytest.raises(InvalidRequestError, match="invalid model version"):
        store.load_version("v 1", [])


# -- catalogue overrides -------------------------------------------------------------------------


def test_item_overrides_bump_the_revision(store: RedisFeatureStore) -> None:
    assert store.item_revision() == 0
    assert store.item_overrides() == {}
    assert store.set_item_override("85123A", {"price": 2.95, "hidden": False}) == 1
    assert store.set_item_override("22423", {"in_stock": False}) == 2
    assert store.set_item_override("85123A", {"hidden": True}) == 3
    assert store.item_revision() == 3
    assert store.item_overrides() == {"85123A": {"hidden": True}, "22423": {"in_stock": False}}


# -- privacy -------------------------------------------------------------------------------------


def test_export_returns_everything_held_and_erase_removes_it(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    p = store.prefix
    store.load_version("v1", records(3, "v1"))
    store.load_version("v2", records(3, "v2"))
    store.load_version("v3", [(f"c1{i}", record(i)) for i in range(3)])  # c10..c12 only
    live = LiveRecord(recent_views=("A",), features={"nps": 10})
    redis_client.hset(keys.customer_live(p, "c1"), mapping=codec.encode_live(live))
    redis_client.hset(keys.customer_live(p, "c1"), mapping={"rev": 3})
    redis_client.set(keys.customer_online(p, "c1"), b'{"views":2}')  # the event path's state
    redis_client.zadd(keys.customer_contacts(p, "c1"), {"winback": 1700000000})
    redis_client.zadd(keys.customer_event_ids(p, "c1"), {"e-1": 1700000000})
    redis_client.sadd(keys.legacy_customer_event_ids(p, "c1"), "e-2")  # an older store's

    held = store.export_customer("c1")
    assert held["customer_id"] == "c1" and held["erased"] is False
    assert sorted(held["batch"]) == ["v1", "v2"]
    assert held["batch"]["v2"]["features"] == record(1, "v2").features
    assert held["batch"]["v1"]["history_items"] == record(1).history_items.tolist()
    assert held["live"]["recent_views"] == ["A"] and held["live"]["features"] == {"nps": 10}
    assert held["live"]["other_fields"] == {"rev": 3, "agg": {"views": 2}}  # a writer's own
    assert held["contacts"] == {"winback": 1700000000.0}
    assert held["event_ids"] == ["e-1", "e-2"]

    assert store.erase_customer("c1") == 7  # the online state and legacy event-id set too
    assert list(redis_client.scan_iter(match=keys.customer_pattern(p, "c1"))) == []
    assert store.is_erased("c1") and "c1" in store.erased_customers()
    assert store.read_customer("v1", "c1").known is False
    after = store.export_customer("c1")
    assert after["erased"] is True and after["batch"] == {} and after["live"] is None
    # Customers whose ids start alike are untouched.
    for other in ("c10", "c11", "c12"):
        assert store.read_customer("v3", other).batch is not None
    assert store.read_customer("v1", "c2").batch is not None


def test_erasing_an_unknown_customer_removes_nothing(store: RedisFeatureStore) -> None:
    assert store.erase_customer("ghost") == 0
    assert store.is_erased("ghost")


# -- errors and failure --------------------------------------------------------------------------


def test_store_errors_maps_unavailability() -> None:
    with pytest.raises(StoreUnavailableError, match="during test"):
        with store_errors("test"):
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
    with pytest.raises(StoreUnavailableError):
        with store_errors("test"):
            raise redis.exceptions.BusyLoadingError("loading")


# -- connection URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "cluster"),
    [
        ("redis://localhost:6379/0", False),
        ("rediss://user:secret@redis.example:6380", False),
        ("unix:///run/redis.sock?db=1", False),
        ("redis+cluster://10.0.0.1:7000", True),
        ("rediss+cluster://10.0.0.1:7000", True),
        ("redis://10.0.0.1:7000?cluster=true", True),
        ("redis://10.0.0.1:7000?cluster=false", False),
    ],
)
def test_the_url_says_whether_it_is_a_cluster(url: str, cluster: bool) -> None:
    assert is_cluster_url(url) is cluster


def test_clients_have_bounded_timeouts_and_no_timeout_retries(redis_url: str) -> None:
    client = connect(redis_url, timeout_ms=42)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == pytest.approx(0.042)
    assert kwargs["socket_connect_timeout"] == pytest.approx(0.042)
    retry = kwargs["retry"]
    assert retry.get_retries() == 1
    assert redis.exceptions.TimeoutError not in retry._supported_errors
    client.close()


def test_from_settings_uses_the_serving_timeout(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, serving=ServingConfig(redis_timeout_ms=25))
    store = RedisFeatureStore.from_settings(settings)
    assert store.prefix == settings.redis_prefix
    assert store.client.connection_pool.connection_kwargs["socket_timeout"] == pytest.approx(0.025)
    assert store.ping()
    store.close()
    with pytest.raises(InvalidRequestError, match="no Redis URL"):
        RedisFeatureStore.from_settings(Settings(redis_url=None))


def _exercise(store: RedisFeatureStore) -> None:
    data = records(25)
    assert store.load_version("v1", data) == 25
    store.activate("v1")
    assert_same_batch(store.read_customer("v1", "c4").batch, data[4][1])
    assert len(store.read(ReadPlan.of("v1", [f"c{i}" for i in range(25)])).states) == 25
    assert store.set_item_override("X", {"hidden": True}) == 1
    revision = store.read(ReadPlan.of("v1", ["c4"], meta=True)).revision
    assert revision == 1
    assert store.export_customer("c4")["batch"]["v1"]["features"] == data[4][1].features
    assert store.erase_customer("c4") == 1
    store.load_version("v2", data)
    store.activate("v2")
    assert store.delete_version("v1") == 24


def test_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "r.sock"
    process, _ = spawn_redis(tmp_path, "--unixsocket", str(socket_path), "--unixsocketperm", "700")
    try:
        store = RedisFeatureStore(connect(f"unix://{socket_path}?db=0", timeout_ms=1000), "p")
        _exercise(store)
        store.close()
    finally:
        process.terminate()
        process.wait(10)


def test_cluster_url_works_on_a_one_node_cluster(tmp_path: Path) -> None:
    with one_node_cluster(tmp_path) as port:
        client = connect(f"redis+cluster://127.0.0.1:{port}", timeout_ms=1000)
        assert isinstance(client, redis.cluster.RedisCluster)
        store = RedisFeatureStore(client, "p", chunk_size=10)
        _exercise(store)  # cross-slot commands would fail here
        store.close()


def test_concurrent_readers_share_one_store(store: RedisFeatureStore) -> None:
    store.load_version("v1", records(50))
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for i in range(50):
                assert store.read_customer("v1", f"c{i}").batch is not None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

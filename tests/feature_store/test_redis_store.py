"""RedisFeatureStore against a real Redis: round trips, versions, overrides, privacy, failure."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from feature_store import codec, keys
from feature_store.connection import connect, is_cluster_url, store_errors
from feature_store.embedded import EmbeddedRedis, find_redis_server, free_port
from feature_store.redis_store import RedisFeatureStore
from recsys.config import ServingConfig, Settings
from recsys.errors import (
    InternalError,
    InvalidRequestError,
    NotFoundError,
    StoreUnavailableError,
)
from recsys.offers import Contact
from recsys.store import BatchRecord, LiveRecord


def record(n: int, version: str = "v1") -> BatchRecord:
    rng = np.random.default_rng(n)
    k = n % 5
    return BatchRecord(
        features={"n": n, "version": version, "clv": n * 10.5, "segment": "loyal", "nps": None},
        user_vector=rng.standard_normal(8).astype(np.float32),
        history_items=np.arange(k, dtype=np.int32) * 3,
        history_counts=np.ones(k, dtype=np.float32) * n,
        history_last_days=np.arange(k, dtype=np.float32) + 0.5,
    )


def records(n: int, version: str = "v1") -> list[tuple[str, BatchRecord]]:
    return [(f"c{i}", record(i, version)) for i in range(n)]


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[RedisFeatureStore]:
    the_store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix, chunk_size=7)
    yield the_store
    the_store.close()


def assert_same_batch(got: BatchRecord | None, want: BatchRecord) -> None:
    assert got is not None
    assert got.features == want.features
    assert want.user_vector is not None and got.user_vector is not None
    assert got.user_vector.tobytes() == want.user_vector.tobytes()
    for name in ("history_items", "history_counts", "history_last_days"):
        assert getattr(got, name).tobytes() == getattr(want, name).tobytes()
        assert getattr(got, name).dtype == getattr(want, name).dtype


# -- reads ---------------------------------------------------------------------------------------


def test_a_loaded_record_reads_back_exactly(store: RedisFeatureStore) -> None:
    data = records(20)
    assert store.load_version("v1", data) == 20
    state = store.read_customer("v1", "c13")
    assert state.customer_id == "c13" and state.known
    assert_same_batch(state.batch, data[13][1])
    assert state.live == LiveRecord()


def test_an_unknown_customer_reads_as_unknown(store: RedisFeatureStore) -> None:
    store.load_version("v1", records(3))
    state = store.read_customer("v1", "nobody")
    assert state.batch is None and not state.known


def test_a_record_of_another_version_is_not_read(store: RedisFeatureStore) -> None:
    store.load_version("v1", records(3))
    assert store.read_customer("v2", "c1").batch is None


def test_read_reflects_the_live_record(store: RedisFeatureStore, redis_client: redis.Redis) -> None:
    store.load_version("v1", records(3))
    live = LiveRecord(
        recent_views=("B", "A"),
        cart=("C",),
        purchased={"D": 2.0},
        disliked=frozenset({"E"}),
        features={"nps": 3},
        user_vector=np.array([1.0, 2.0], dtype=np.float32),
    )
    redis_client.hset(keys.customer_live(store.prefix, "c2"), mapping=codec.encode_live(live))
    state = store.read_customer("v1", "c2")
    assert state.live.recent_views == ("B", "A")
    assert state.live.cart == ("C",)
    assert state.live.purchased == {"D": 2.0}
    assert state.live.disliked == frozenset({"E"})
    assert state.live.features == {"nps": 3}
    assert state.live.user_vector is not None and state.live.user_vector.tolist() == [1.0, 2.0]
    # A customer known only from live activity is known too.
    redis_client.hset(keys.customer_live(store.prefix, "new"), "views", b'["X"]')
    assert store.read_customer("v1", "new").known


def test_read_customers_answers_every_id_in_order(store: RedisFeatureStore) -> None:
    data = dict(records(30))
    store.load_version("v1", data.items())
    ids = ["c29", "ghost", "c0", "c7", "c29"]
    states = store.read_customers("v1", ids)
    assert [s.customer_id for s in states] == ids
    assert states[1].batch is None
    for state in (states[0], states[2], states[3], states[4]):
        assert_same_batch(state.batch, data[state.customer_id])
    assert store.read_customers("v1", []) == []


def test_read_customer_with_revision_returns_the_catalogue_revision(
    store: RedisFeatureStore,
) -> None:
    store.load_version("v1", records(2))
    store.set_item_override("85123A", {"hidden": True})
    state, revision = store.read_customer_with_revision("v1", "c1")
    assert state.batch is not None and revision == 1


def test_the_newest_contacts_are_read_with_the_customer(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    store.contacts_read = 2
    store.load_version("v1", records(3))
    contacts = keys.customer_contacts(store.prefix, "c1")
    redis_client.zadd(
        contacts, {"old|email": 1.0, "winback|sms": 86_400.0 * 3, "cart-reminder|app": 86_400.0}
    )
    states = store.read_customers("v1", ["c1", "c2"])
    assert states[0].live.contacts == (
        Contact("cart-reminder", "app", datetime(1970, 1, 2)),
        Contact("winback", "sms", datetime(1970, 1, 4)),
    )
    assert states[0].batch is not None and states[1].batch is not None
    assert states[1].live == LiveRecord()


def test_the_offers_batch_read_carries_the_revision_and_active_version(
    store: RedisFeatureStore,
) -> None:
    store.load_version("v1", records(3))
    store.activate("v1")
    store.set_item_override("85123A", {"hidden": True})
    states, revision, active = store.read_customers_with_meta("v1", ["c2", "nobody", "c0"])
    assert [s.customer_id for s in states] == ["c2", "nobody", "c0"]
    assert states[1].batch is None and states[2].batch is not None
    assert (revision, active) == (1, "v1")


def test_live_customer_ids_finds_every_customer_with_a_live_record(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    store.load_version("v1", records(5))  # batch records only: not listed
    for i in range(25):
        redis_client.hset(keys.customer_live(store.prefix, f"new-{i}"), "views", b"[]")
    pages = list(store.live_customer_ids(count=7))
    assert all(pages)
    assert {c for page in pages for c in page} == {f"new-{i}" for i in range(25)}


class CountingConnection(redis.Connection):
    """Counts the writes to the socket: one per command, one per pipeline."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)


def test_reads_are_one_round_trip(redis_url: str, redis_prefix: str) -> None:
    pool = redis.ConnectionPool.from_url(
        redis_url, connection_class=CountingConnection, socket_timeout=2
    )
    client = redis.Redis(connection_pool=pool)
    store = RedisFeatureStore(client, redis_prefix)
    store.load_version("v1", records(1000))
    client.ping()  # the connection handshake is not a read's cost
    CountingConnection.sends = 0
    client.get("a")
    client.get("b")
    assert CountingConnection.sends == 2  # the counter sees every command

    CountingConnection.sends = 0
    assert store.read_customer("v1", "c5").batch is not None
    assert CountingConnection.sends == 1

    CountingConnection.sends = 0
    states = store.read_customers("v1", [f"c{i}" for i in range(1000)])
    assert all(s.batch is not None for s in states)
    assert CountingConnection.sends == 1

    CountingConnection.sends = 0
    store.read_customer_with_revision("v1", "c5")
    assert CountingConnection.sends == 1
    client.close()


def test_an_invalid_customer_id_is_rejected_before_any_call(store: RedisFeatureStore) -> None:
    for bad in ["a}b", "", "x y", "a*"]:
        with pytest.raises(InvalidRequestError, match="invalid customer id"):
            store.read_customer("v1", bad)
        with pytest.raises(InvalidRequestError):
            store.erase_customer(bad)


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
                states = store.read_customers(active, ids)
                seen_during_load.append({s.batch.features["version"] for s in states if s.batch})
                assert all(s.batch is not None for s in states)
            yield customer_id, rec

    assert store.load_version("v2", new_records()) == 40
    assert seen_during_load == [{"v1"}, {"v1"}]
    assert store.active_version() == "v1"  # loading does not switch
    store.activate("v2")
    assert store.active_version() == "v2"
    assert store.previous_version() == "v1"
    states = store.read_customers(store.active_version() or "", ids)
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
    redis_client.hset(keys.customer_live(p, "c1"), mapping={"rev": 3, "agg": b'{"views":2}'})
    redis_client.zadd(keys.customer_contacts(p, "c1"), {"winback": 1700000000})
    redis_client.sadd(keys.customer_event_ids(p, "c1"), "e-1", "e-2")

    held = store.export_customer("c1")
    assert held["customer_id"] == "c1" and held["erased"] is False
    assert sorted(held["batch"]) == ["v1", "v2"]
    assert held["batch"]["v2"]["features"] == record(1, "v2").features
    assert held["batch"]["v1"]["history_items"] == record(1).history_items.tolist()
    assert held["live"]["recent_views"] == ["A"] and held["live"]["features"] == {"nps": 10}
    assert held["live"]["other_fields"] == {"rev": 3, "agg": {"views": 2}}  # a writer's own
    assert held["contacts"] == {"winback": 1700000000.0}
    assert held["event_ids"] == ["e-1", "e-2"]

    assert store.erase_customer("c1") == 5
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


def test_redis_errors_that_are_bugs_become_internal_errors(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    redis_client.set(keys.customer_batch(store.prefix, "c1", "v1"), "not a hash")
    with pytest.raises(InternalError, match="WRONGTYPE"):
        store.read_customer("v1", "c1")


def test_store_errors_maps_unavailability() -> None:
    with pytest.raises(StoreUnavailableError, match="during test"):
        with store_errors("test"):
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
    with pytest.raises(StoreUnavailableError):
        with store_errors("test"):
            raise redis.exceptions.BusyLoadingError("loading")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path, persist=False) as server:
        yield server


def test_reads_fail_fast_when_the_server_is_stopped(own_server: EmbeddedRedis) -> None:
    store = RedisFeatureStore(connect(own_server.url, timeout_ms=100), "p")
    store.load_version("v1", records(3))
    assert store.read_customer("v1", "c1").batch is not None
    assert store.ping()
    own_server.stop()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        store.read_customer("v1", "c1")
    assert time.monotonic() - started < 0.5
    assert store.ping() is False
    store.close()


def test_reads_time_out_when_the_server_stalls(own_server: EmbeddedRedis) -> None:
    timeout_ms = 100
    store = RedisFeatureStore(connect(own_server.url, timeout_ms=timeout_ms), "p")
    store.load_version("v1", records(3))
    admin = redis.Redis.from_url(own_server.url)
    admin.execute_command("CLIENT", "PAUSE", 500, "ALL")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="[Tt]imeout"):
            store.read_customer("v1", "c1")
        elapsed = time.monotonic() - started
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    assert timeout_ms / 1000 * 0.8 <= elapsed < timeout_ms / 1000 * 4  # one timeout, no retries
    assert store.read_customer("v1", "c1").batch is not None  # recovers on a fresh connection
    store.close()


def test_a_pooled_connection_survives_a_server_restart(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedRedis(tmp_path, port=port, persist=True) as server:
        store = RedisFeatureStore(connect(server.url, timeout_ms=500), "p")
        store.load_version("v1", records(3))
    with EmbeddedRedis(tmp_path, port=port, persist=True):
        assert store.read_customer("v1", "c1").batch is not None  # one retry, fresh connection
    store.close()


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


def test_bad_urls_and_timeouts_are_invalid_requests() -> None:
    with pytest.raises(InvalidRequestError, match="bad Redis URL"):
        connect("http://localhost", timeout_ms=50)
    with pytest.raises(InvalidRequestError, match="positive"):
        connect("redis://localhost", timeout_ms=0)


def test_from_settings_uses_the_serving_timeout(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, serving=ServingConfig(redis_timeout_ms=25))
    store = RedisFeatureStore.from_settings(settings)
    assert store.prefix == settings.redis_prefix
    assert store.client.connection_pool.connection_kwargs["socket_timeout"] == pytest.approx(0.025)
    assert store.ping()
    store.close()
    with pytest.raises(InvalidRequestError, match="no Redis URL"):
        RedisFeatureStore.from_settings(Settings(redis_url=None))


def _spawn(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            probe.ping()
            break
        except redis.exceptions.ConnectionError:
            assert process.poll() is None, f"redis-server exited: see {tmp_path}"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    probe.close()
    return process, port


def _exercise(store: RedisFeatureStore) -> None:
    data = records(25)
    assert store.load_version("v1", data) == 25
    store.activate("v1")
    assert_same_batch(store.read_customer("v1", "c4").batch, data[4][1])
    assert len(store.read_customers("v1", [f"c{i}" for i in range(25)])) == 25
    assert store.set_item_override("X", {"hidden": True}) == 1
    _, revision = store.read_customer_with_revision("v1", "c4")
    assert revision == 1
    assert store.export_customer("c4")["batch"]["v1"]["features"] == data[4][1].features
    assert store.erase_customer("c4") == 1
    store.load_version("v2", data)
    store.activate("v2")
    assert store.delete_version("v1") == 24


def test_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "r.sock"
    process, _ = _spawn(tmp_path, "--unixsocket", str(socket_path), "--unixsocketperm", "700")
    try:
        store = RedisFeatureStore(connect(f"unix://{socket_path}?db=0", timeout_ms=1000), "p")
        _exercise(store)
        store.close()
    finally:
        process.terminate()
        process.wait(10)


def test_cluster_url_works_on_a_one_node_cluster(tmp_path: Path) -> None:
    process, port = _spawn(
        tmp_path,
        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        *("--cluster-port", str(free_port())),  # the default, port + 10000, may not exist
    )
    try:
        admin = redis.Redis(port=port)
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "cluster did not come up"
            time.sleep(0.05)
        admin.close()
        client = connect(f"redis+cluster://127.0.0.1:{port}", timeout_ms=1000)
        assert isinstance(client, redis.cluster.RedisCluster)
        store = RedisFeatureStore(client, "p", chunk_size=10)
        _exercise(store)  # cross-slot commands would fail here
        store.close()
    finally:
        process.terminate()
        process.wait(10)


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

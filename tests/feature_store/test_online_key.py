"""The online state in its own key: what the event path reads and writes, what the routes never
read, and a store written by the previous layout (state in the live hash's ``agg``) migrated on
the first write of each customer."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import orjson
import pytest
import redis

from feature_store import codec, keys
from feature_store.connection import connect
from feature_store.ingest import EventWriter, IngestResult
from feature_store.redis_store import RedisFeatureStore
from recsys.customers.live_update import OnlineModel, plan_updates
from recsys.events import Event, utcnow, validate_batch
from recsys.store import BatchRecord, ReadPlan

AS_OF = datetime(2024, 1, 1)


def planner(version: str | None):
    online = OnlineModel(version=version, as_of=AS_OF)
    return lambda snapshots, events: plan_updates(online, snapshots, events, utcnow())


def purchase(order: str, event_id: str) -> list[Event]:
    raw = {"customer_id": "c1", "event_type": "purchase", "item_id": "A", "quantity": 1}
    return validate_batch([{**raw, "price": 2.0, "order_id": order, "event_id": event_id}])


def view(event_id: str) -> list[Event]:
    raw = {"customer_id": "c1", "event_type": "view", "item_id": "B", "event_id": event_id}
    return validate_batch([raw])


def batch_record() -> BatchRecord:
    return BatchRecord(
        features={"frequency": 3, "monetary": 30.0},
        user_vector=np.ones(2, dtype=np.float32),
        history_items=np.array([0], dtype=np.int32),
        history_counts=np.ones(1, dtype=np.float32),
        history_last_days=np.ones(1, dtype=np.float32),
    )


@pytest.fixture
def writer(redis_client: redis.Redis, redis_prefix: str) -> EventWriter:
    return EventWriter(redis_client, redis_prefix, stream_maxlen=0)


@pytest.fixture
def store(redis_url: str, redis_prefix: str):
    the_store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix)
    yield the_store
    the_store.close()


def state(client: redis.Redis, prefix: str) -> dict:
    raw = client.get(keys.customer_online(prefix, "c1"))
    assert raw is not None
    return orjson.loads(raw)


def test_the_online_state_lives_in_its_own_key_not_in_the_live_hash(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    assert writer.ingest(purchase("o1", "e1"), None, planner(None)) == IngestResult(1, 0)
    live = redis_client.hgetall(keys.customer_live(redis_prefix, "c1"))
    assert keys.LEGACY_LIVE_ONLINE.encode() not in live
    assert set(live) == {k.encode() for k in (*keys.LIVE_RECORD[:5], keys.LIVE_REVISION)}
    online = state(redis_client, redis_prefix)
    assert [line[2] for line in online["lines"]] == ["A"]
    assert redis_client.type(keys.customer_online(redis_prefix, "c1")) == b"string"


def test_the_routes_reads_never_fetch_the_online_state(
    writer: EventWriter, store: RedisFeatureStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    writer.ingest(purchase("o1", "e1"), None, planner(None))
    # an unmigrated customer too: the routes name their fields, the state is never among them
    redis_client.hset(keys.customer_live(redis_prefix, "c2"), keys.LEGACY_LIVE_ONLINE, b"x" * 9999)
    redis_client.hset(keys.customer_live(redis_prefix, "c2"), keys.LIVE_CART, b'["Z"]')
    before = redis_client.info("commandstats")
    states = store.read(ReadPlan.of("v1", ["c1", "c2"], meta=False)).states
    after = redis_client.info("commandstats")
    assert states[0].live.purchased == {"A": 1.0} and states[1].live.cart == ("Z",)

    def calls(stats: dict, command: str) -> int:
        return stats.get(command, {}).get("calls", 0)

    assert calls(after, "cmdstat_hgetall") == calls(before, "cmdstat_hgetall")
    # one GET: the version's feature schema (feature_store.feature_pack), never a state key
    assert calls(after, "cmdstat_get") == calls(before, "cmdstat_get") + 1
    assert after["cmdstat_hmget"]["calls"] == before["cmdstat_hmget"]["calls"] + 4


def test_a_store_of_the_previous_layout_is_read_and_migrated_on_first_write(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    p = redis_prefix
    writer.ingest(purchase("o1", "e1"), None, planner(None))
    # the previous layout: the state as the live hash's ``agg`` field, no online key
    old = redis_client.get(keys.customer_online(p, "c1"))
    redis_client.delete(keys.customer_online(p, "c1"))
    redis_client.hset(keys.customer_live(p, "c1"), keys.LEGACY_LIVE_ONLINE, old)

    assert writer.ingest(purchase("o2", "e2"), None, planner(None)) == IngestResult(1, 0)

    live = redis_client.hgetall(keys.customer_live(p, "c1"))
    assert keys.LEGACY_LIVE_ONLINE.encode() not in live  # moved, not copied
    online = state(redis_client, p)
    assert [line[5] for line in online["lines"]] == ["o1", "o2"]  # the old state carried on
    record = codec.decode_live(live)
    assert record.purchased == {"A": 2.0} and record.features["frequency"] == 2


def test_the_state_follows_a_version_switch_and_is_rebased_once(
    writer: EventWriter, store: RedisFeatureStore, redis_client: redis.Redis, redis_prefix: str
) -> None:
    store.load_version("v1", [("c1", batch_record())])
    store.activate("v1")
    writer.ingest(view("e1"), "v1", planner("v1"))
    assert state(redis_client, redis_prefix)["version"] == "v1"
    store.load_version("v2", [("c1", batch_record())])  # a bulk load leaves the state alone
    assert state(redis_client, redis_prefix)["version"] == "v1"
    store.activate("v2")
    writer.ingest(view("e2"), "v2", planner("v2"))
    online = state(redis_client, redis_prefix)
    assert online["version"] == "v2" and online["recent"] == ["B"]
    assert len(online["views"]) == 2  # both views kept across the switch

"""The event path's parsed online states: reused only for the very bytes Redis holds."""

from __future__ import annotations

import orjson
import redis

from feature_store import keys
from feature_store.ingest import EventWriter, IngestResult
from feature_store.online_cache import OnlineCache
from recsys.customers.live_update import OnlineModel, plan_updates
from recsys.events import Event, utcnow, validate_batch

MODEL = OnlineModel(version=None, as_of=None)


def plan(snapshots, fresh):  # type: ignore[no-untyped-def]
    return plan_updates(MODEL, snapshots, fresh, utcnow())


def purchases(customer: str, tag: str, n: int) -> list[Event]:
    return validate_batch(
        [
            {"customer_id": customer, "event_type": "purchase", "item_id": f"I{i}",
             "order_id": f"{tag}-{i // 10}", "price": 1.5, "event_id": f"{tag}-{i}"}
            for i in range(n)
        ]
    )  # fmt: skip


def test_the_same_bytes_are_parsed_once_other_bytes_again() -> None:
    cache = OnlineCache(max_bytes=100, min_bytes=10)
    first = b'{"lines": [[1.0, "p", "A", 1, 2.0, "o", true]]}'
    value = cache.parse("c1", first)
    assert cache.parse("c1", first) is value and cache.hits == 1
    changed = first.replace(b"2.0", b"3.0")
    assert cache.parse("c1", changed) == orjson.loads(changed) and cache.hits == 1
    assert cache.parse("c2", b"{}") == {} and len(cache) == 1  # too small to keep
    cache.put("c3", b"x" * 60, "big")
    cache.put("c4", b"y" * 60, "bigger")  # over 100 bytes kept: the least recent goes
    assert len(cache) == 1 and cache.parse("c4", b"y" * 60) == "bigger"


def test_a_writer_reuses_what_it_wrote_and_rereads_what_another_wrote(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    writer = EventWriter(redis_client, redis_prefix, stream_maxlen=0)
    other = EventWriter(redis_client, redis_prefix, stream_maxlen=0)
    assert writer.ingest(purchases("c1", "a", 120), None, plan) == IngestResult(120, 0)
    assert writer.ingest(purchases("c1", "b", 1), None, plan) == IngestResult(1, 0)
    assert writer.online_cache.hits == 1  # its own write: not parsed again
    assert other.ingest(purchases("c1", "c", 1), None, plan) == IngestResult(1, 0)
    assert writer.ingest(purchases("c1", "d", 1), None, plan) == IngestResult(1, 0)
    assert writer.online_cache.hits == 1  # another writer's state: parsed anew
    state = orjson.loads(redis_client.get(keys.customer_online(redis_prefix, "c1")) or b"{}")
    assert len(state["lines"]) == 123  # every write applied on the state before it

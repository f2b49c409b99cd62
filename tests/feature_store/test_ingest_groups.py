"""Single events of one customer grouped while a write for them is in flight (real Redis).

Every request is answered for its own event; all are applied exactly once, in arrival order, in
fewer plans than requests; duplicates stay idempotent; an erased customer's events are ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio

from feature_store import codec, keys
from feature_store.ingest import AsyncEventWriter, IngestResult
from feature_store.ingest_groups import IngestGroups
from feature_store.multiplexed import Address, MultiplexedConnection
from recsys.customers.live_update import CustomerSnapshot, OnlineModel, plan_updates
from recsys.events import Event, utcnow, validate_batch

VERSION = "v1"
MODEL = OnlineModel(version=VERSION, as_of=None)


def single(customer: str, event_id: str, item: str = "A") -> list[Event]:
    return validate_batch(
        [{"customer_id": customer, "event_type": "purchase", "item_id": item,
          "order_id": event_id, "event_id": event_id}]
    )  # fmt: skip


def run_singles(
    redis_url: str, prefix: str, requests: Sequence[list[Event]]
) -> tuple[list[IngestResult], list[int]]:
    """The requests sent concurrently through one IngestGroups; their answers and the number
    of events each plan saw."""
    planned: list[int] = []

    def plan(snapshots: Mapping[str, CustomerSnapshot], fresh: Sequence[Event]) -> Any:
        planned.append(len(fresh))
        return plan_updates(MODEL, snapshots, fresh, utcnow())

    async def run() -> list[IngestResult]:
        writer = AsyncEventWriter(
            redis.asyncio.Redis.from_url(redis_url),
            prefix,
            stream_maxlen=0,
            multiplexed=MultiplexedConnection(Address.from_url(redis_url), timeout_s=2.0),
        )
        groups = IngestGroups(writer)
        try:
            return await asyncio.gather(*(groups.ingest(r, VERSION, plan) for r in requests))
        finally:
            await writer.aclose()

    return asyncio.run(run()), planned


def stream_ids(client: redis.Redis, prefix: str) -> list[str]:
    entries = client.xrange(keys.event_stream(prefix))
    return [fields[b"event_id"].decode() for _, fields in entries]


def test_concurrent_single_events_are_applied_once_in_order_in_one_grouped_write(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    requests = [single("hot", f"e{n}", item=f"I{n}") for n in range(12)]
    results, planned = run_singles(redis_url, redis_prefix, requests)
    assert results == [IngestResult(1, 0)] * 12  # each acknowledged for its own event
    assert planned == [12]  # one group: one read, one plan, one script
    assert stream_ids(redis_client, redis_prefix) == [f"e{n}" for n in range(12)]
    record = codec.decode_live(redis_client.hgetall(keys.customer_live(redis_prefix, "hot")))
    assert record.purchased == {f"I{n}": 1.0 for n in range(12)}


def test_duplicates_in_and_before_a_group_are_acknowledged_and_applied_once(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    run_singles(redis_url, redis_prefix, [single("hot", "old")])
    requests = [single("hot", "first"), single("hot", "old"), single("hot", "new"),
                single("hot", "new"), single("hot", "last")]  # fmt: skip
    results, planned = run_singles(redis_url, redis_prefix, requests)
    assert results == [
        IngestResult(1, 0), IngestResult(0, 1), IngestResult(1, 0), IngestResult(0, 1),
        IngestResult(1, 0),
    ]  # fmt: skip
    assert planned == [3]  # the group's plan saw only the fresh events
    assert stream_ids(redis_client, redis_prefix) == ["old", "first", "new", "last"]
    record = codec.decode_live(redis_client.hgetall(keys.customer_live(redis_prefix, "hot")))
    assert record.purchased == {"A": 4.0}


def test_other_customers_and_batches_are_not_grouped(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    requests = [single("a", "a1"), single("b", "b1"), single("a", "a2") + single("a", "a3")]
    results, planned = run_singles(redis_url, redis_prefix, requests)
    assert results == [IngestResult(1, 0), IngestResult(1, 0), IngestResult(2, 0)]
    assert sorted(planned) == [1, 1, 2]
    assert sorted(stream_ids(redis_client, redis_prefix)) == ["a1", "a2", "a3", "b1"]


def test_a_server_without_the_script_gets_it_with_the_first_write(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The multiplexed writer calls the script by its SHA1; a server that does not hold it (a
    restarted or flushed one: here, a SHA1 no script has) answers NOSCRIPT, runs nothing, and
    the write is sent with the script's text instead: applied once."""

    async def run() -> IngestResult:
        writer = AsyncEventWriter(
            redis.asyncio.Redis.from_url(redis_url),
            redis_prefix,
            stream_maxlen=0,
            multiplexed=MultiplexedConnection(Address.from_url(redis_url), timeout_s=2.0),
        )
        writer._sha = "0" * 40  # not held by the server
        try:
            return await writer.ingest(
                single("c", "e1"),
                VERSION,
                lambda snaps, fresh: plan_updates(MODEL, snaps, fresh, utcnow()),
            )
        finally:
            await writer.aclose()

    assert asyncio.run(run()) == IngestResult(1, 0)
    assert stream_ids(redis_client, redis_prefix) == ["e1"]
    record = codec.decode_live(redis_client.hgetall(keys.customer_live(redis_prefix, "c")))
    assert record.purchased == {"A": 1.0}

"""Concurrent event writers on a real Redis: serialized per customer inside Redis, none refused.

A conflict is made deterministic by writing one customer from inside another request's plan
(after its read, before its script); the contended runs use real threads and real asyncio tasks
over many overlapping customers. Every writer must succeed, no update may be lost, and only the
live-record fields that changed are sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import redis
import redis.asyncio

from feature_store import codec, keys
from feature_store.ingest import AsyncEventWriter, EventWriter, IngestResult
from feature_store.multiplexed import Address, MultiplexedConnection
from recsys.customers.live_update import CustomerSnapshot, OnlineModel, plan_updates
from recsys.events import Event, utcnow, validate_batch

VERSION = "v1"
MODEL = OnlineModel(version=VERSION, as_of=None)


def plan(snapshots: Mapping[str, CustomerSnapshot], fresh: Sequence[Event]) -> Any:
    return plan_updates(MODEL, snapshots, fresh, utcnow())


def purchases(customers: Sequence[str], tag: str) -> list[Event]:
    return validate_batch(
        [
            {"customer_id": c, "event_type": "purchase", "item_id": "A", "order_id": f"{tag}-{c}",
             "event_id": f"{tag}-{c}"}
            for c in customers
        ]
    )  # fmt: skip


def units(client: redis.Redis, prefix: str, customer: str) -> float:
    record = codec.decode_live(client.hgetall(keys.customer_live(prefix, customer)))
    return record.purchased.get("A", 0.0)


def test_a_customer_written_meanwhile_is_replanned_alone_and_both_writes_count(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    writer = EventWriter(redis_client, redis_prefix, stream_maxlen=0)
    other = EventWriter(redis_client, redis_prefix, stream_maxlen=0)
    calls: list[list[str]] = []

    def interleaved(snapshots: Mapping[str, CustomerSnapshot], fresh: Sequence[Event]) -> Any:
        if not calls:  # read done, script not yet run: another writer gets c1 in first
            assert other.ingest(purchases(["c1"], "other"), VERSION, plan) == IngestResult(1, 0)
        calls.append(sorted(snapshots))
        return plan(snapshots, fresh)

    result = writer.ingest(purchases(["c1", "c2", "c3"], "mine"), VERSION, interleaved)

    assert result == IngestResult(accepted=3, duplicates=0)
    assert calls == [["c1", "c2", "c3"], ["c1"]]  # c2, c3 written at once; c1 re-planned
    assert [units(redis_client, redis_prefix, c) for c in ("c1", "c2", "c3")] == [2.0, 1.0, 1.0]
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == 4


def test_a_repeat_applied_meanwhile_becomes_a_duplicate_not_a_second_purchase(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    writer = EventWriter(redis_client, redis_prefix, stream_maxlen=0)
    calls: list[int] = []

    def racing(snapshots: Mapping[str, CustomerSnapshot], fresh: Sequence[Event]) -> Any:
        if not calls:  # the same request, retried by the client, lands first
            writer.ingest(purchases(["c1"], "same"), VERSION, plan)
        calls.append(len(fresh))
        return plan(snapshots, fresh)

    assert writer.ingest(purchases(["c1", "c2"], "same"), VERSION, racing) == IngestResult(1, 1)
    assert units(redis_client, redis_prefix, "c1") == 1.0
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == 2


def test_eight_threads_writing_overlapping_batches_all_succeed_and_lose_nothing(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    threads, requests, pool = 8, 6, [f"k{i}" for i in range(12)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        client = redis.Redis.from_url(redis_url)
        own = EventWriter(client, redis_prefix, stream_maxlen=0)
        try:
            for r in range(requests):
                batch = purchases(pool, f"t{n}-{r}")  # every request touches every customer
                assert own.ingest(batch, VERSION, plan) == IngestResult(len(pool), 0)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            client.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not errors
    assert {units(redis_client, redis_prefix, c) for c in pool} == {float(threads * requests)}
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == threads * requests * len(pool)


@pytest.mark.parametrize("multiplexed", [False, True], ids=["redis.asyncio", "multiplexed"])
def test_async_writers_on_one_loop_serialize_in_redis_too(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str, multiplexed: bool
) -> None:
    redis_client.script_flush()  # a fresh server: the writers load (or send) the script

    def connection() -> MultiplexedConnection | None:
        address = Address.from_url(redis_url)
        return MultiplexedConnection(address, timeout_s=2.0) if multiplexed else None

    async def run() -> list[IngestResult]:
        clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(4)]
        writers = [
            AsyncEventWriter(c, redis_prefix, stream_maxlen=0, multiplexed=connection())
            for c in clients
        ]
        try:
            return await asyncio.gather(
                *(
                    writers[n % 4].ingest(purchases(["a1", "a2", "a3"], f"w{n}"), VERSION, plan)
                    for n in range(16)
                )
            )
        finally:
            for w in writers:
                await w.aclose()

    assert asyncio.run(run()) == [IngestResult(3, 0)] * 16
    assert [units(redis_client, redis_prefix, c) for c in ("a1", "a2", "a3")] == [16.0] * 3
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == 16 * 3  # durable, once each


class Recording:
    """The writer's own script, recording the field names each call sets (then running it)."""

    def __init__(self, script: Any) -> None:
        self.script, self.fields = script, []

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        # ARGV: maxlen, n, cutoff, horizon, now, id ttl, id cap, the attribution's window, ttls,
        # apply, offers (count, ids...), customer, rev, ids..., fields (count, name, value...)
        pos = 12 + int(args[11])  # after the offer ids
        pos += 2  # the customer's digest and revision
        pos += int(args[pos]) + 1
        count = int(args[pos])
        names = args[pos + 1 : pos + 1 + count : 2]
        self.fields.append(sorted(n if isinstance(n, str) else n.decode() for n in names))
        return self.script(keys=keys, args=args)


def test_only_the_fields_that_changed_are_sent(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    writer = EventWriter(redis_client, redis_prefix, stream_maxlen=0)
    recording = Recording(writer._script)
    writer._script = recording  # type: ignore[assignment]
    view = {"customer_id": "c1", "event_type": "view", "item_id": "A"}
    writer.ingest(validate_batch([view]), VERSION, plan)
    writer.ingest(validate_batch([view]), VERSION, plan)  # the same item again
    first, second = recording.fields
    assert first == sorted(
        [keys.LIVE_VIEWS, keys.LIVE_CART, keys.LIVE_PURCHASED, keys.LIVE_DISLIKED,
         keys.LIVE_FEATURES]
    )  # fmt: skip
    assert second == [keys.LIVE_FEATURES]  # views, cart... unchanged (the state: its own key)
    record = codec.decode_live(redis_client.hgetall(keys.customer_live(redis_prefix, "c1")))
    assert record.recent_views == ("A",) and record.features["views_30d"] == 2


def test_one_writers_requests_for_one_customer_take_turns_without_replanning(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Requests of one writer (one process) sharing a customer wait for each other: each is
    read and planned once, none conflicts in the script; customers not shared do not wait."""
    planned: list[list[str]] = []

    def counting(snapshots: Mapping[str, CustomerSnapshot], fresh: Sequence[Event]) -> Any:
        planned.append(sorted(snapshots))
        return plan(snapshots, fresh)

    async def run() -> list[IngestResult]:
        writer = AsyncEventWriter(
            redis.asyncio.Redis.from_url(redis_url),
            redis_prefix,
            stream_maxlen=0,
            multiplexed=MultiplexedConnection(Address.from_url(redis_url), timeout_s=2.0),
        )
        try:
            hot = [writer.ingest(purchases(["hot"], f"h{n}"), VERSION, counting) for n in range(8)]
            both = writer.ingest(purchases(["hot", "cold"], "both"), VERSION, counting)
            return await asyncio.gather(*hot, both)
        finally:
            await writer.aclose()

    results = asyncio.run(run())
    assert results == [IngestResult(1, 0)] * 8 + [IngestResult(2, 0)]
    assert len(planned) == 9  # one plan per request: no round lost to a conflict
    assert units(redis_client, redis_prefix, "hot") == 9.0
    assert units(redis_client, redis_prefix, "cold") == 1.0

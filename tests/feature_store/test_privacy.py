"""Export and erasure on a real Redis: complete, by name, out of the stream, kept out after."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import redis

from feature_store import keys, privacy
from feature_store.connection import connect
from feature_store.export import erased_customer_ids, export_events
from feature_store.ingest import EventWriter, IngestResult
from feature_store.redis_store import RedisFeatureStore
from recsys.config import Settings
from recsys.customers.live_update import OnlineModel, plan_updates
from recsys.events import Event, utcnow, validate_batch
from recsys.store import BatchRecord

ONLINE = OnlineModel(version=None, as_of=datetime(2024, 1, 1))


def record(n: int) -> BatchRecord:
    return BatchRecord(
        features={"n": n, "segment": "loyal"},
        user_vector=np.full(4, n, dtype=np.float32),
        history_items=np.array([n], dtype=np.int32),
        history_counts=np.ones(1, dtype=np.float32),
        history_last_days=np.ones(1, dtype=np.float32),
    )


def plan(snapshots, fresh):
    return plan_updates(ONLINE, snapshots, fresh, utcnow())


def views(customer: str, *ids: str) -> list[Event]:
    return validate_batch(
        [
            {"customer_id": customer, "event_type": "view", "item_id": "A", "event_id": i}
            for i in ids
        ]
    )


def all_keys(client: redis.Redis, prefix: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000)}


def stream_customers(client: redis.Redis, prefix: str) -> list[str]:
    entries = client.xrange(keys.event_stream(prefix))
    return [fields[b"customer_id"].decode() for _, fields in entries]


def scans(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))


@pytest.fixture
def store(redis_url: str, redis_prefix: str) -> Iterator[RedisFeatureStore]:
    the_store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix, chunk_size=3)
    yield the_store
    the_store.close()


@pytest.fixture
def writer(redis_client: redis.Redis, redis_prefix: str) -> EventWriter:
    return EventWriter(redis_client, redis_prefix, stream_maxlen=0)


@pytest.fixture
def populated(store: RedisFeatureStore, writer: EventWriter, redis_client: redis.Redis) -> None:
    """c1 and look-alike c10, c2: batch records of v1 and v2 (v2 active), events, contacts."""
    customers = ["c1", "c10", "c2"]
    store.load_version("v1", [(c, record(i)) for i, c in enumerate(customers)])
    store.load_version("v2", [(c, record(i + 10)) for i, c in enumerate(customers)])
    store.activate("v1")
    store.activate("v2")
    for customer in customers:
        writer.ingest(views(customer, f"{customer}-e1", f"{customer}-e2"), None, plan)
        redis_client.zadd(keys.customer_contacts(store.prefix, customer), {"winback": 1.7e9})


def test_export_before_erase_holds_batch_live_contacts_event_ids_and_stream_events(
    store: RedisFeatureStore, populated: None
) -> None:
    held = store.export_customer("c1", events=True)
    assert held["customer_id"] == "c1" and held["erased"] is False
    assert sorted(held["batch"]) == ["v1", "v2"]
    assert held["batch"]["v2"]["features"] == {"n": 10, "segment": "loyal"}
    assert held["live"]["recent_views"] == ["A"]
    assert held["contacts"] == {"winback": 1.7e9}
    assert held["event_ids"] == ["c1-e1", "c1-e2"]
    assert [e["event_id"] for e in held["events"]] == ["c1-e1", "c1-e2"]
    assert {e["customer_id"] for e in held["events"]} == {"c1"}
    assert store.export_customer("c1")["events"] == held["events"]  # a complete export
    assert "events" not in store.export_customer("c1", events=False)  # leaving the stream out


def test_erase_leaves_no_key_of_the_customer_and_every_other_key_intact(
    store: RedisFeatureStore, populated: None, redis_client: redis.Redis
) -> None:
    p = store.prefix
    before = all_keys(redis_client, p)
    mine = {k for k in before if k.startswith(f"{p}:{{c:c1}}:")}
    assert len(mine) == 5  # v1, v2, live, contacts, evt

    assert store.erase_customer("c1") == 5 + 2  # keys + stream entries

    after = all_keys(redis_client, p)
    assert not any("{c:c1}" in k for k in after)  # a full SCAN of the prefix
    assert after == (before - mine) | {keys.erased_customers(p)}
    assert store.read_customer("v2", "c10").batch is not None  # a look-alike id is untouched


def test_erase_removes_only_the_customers_events_from_the_stream(
    store: RedisFeatureStore, writer: EventWriter, redis_client: redis.Redis
) -> None:
    p = store.prefix
    for round_ in range(4):  # interleaved, so several purge chunks hold both
        for customer in ("c1", "c2", "c3"):
            writer.ingest(views(customer, f"{customer}-{round_}"), None, plan)

    erasure = privacy.erase_customer(redis_client, p, "c1", stream_chunk=2)

    assert erasure.events_removed == 4
    assert stream_customers(redis_client, p) == ["c2", "c3"] * 4
    assert privacy.purge_stream_events(redis_client, p, {"c1"}, chunk=2) == 0  # idempotent


def test_erase_reads_keys_by_name_without_scanning_the_keyspace(
    store: RedisFeatureStore, populated: None, redis_client: redis.Redis
) -> None:
    before = scans(redis_client)
    store.export_customer("c1")
    store.erase_customer("c1")
    assert scans(redis_client) == before


def test_export_after_erase_says_erased_and_holds_nothing(
    store: RedisFeatureStore, populated: None
) -> None:
    store.erase_customer("c1")
    held = store.export_customer("c1", events=True)
    assert held["erased"] is True and store.is_erased("c1")
    assert held["batch"] == {} and held["live"] is None
    assert held["contacts"] == {} and held["event_ids"] == [] and held["events"] == []
    erased = store.erased_customers()
    assert "c1" in erased and "c10" not in erased and len(erased) == 1
    (member,) = store.client.smembers(keys.erased_customers(store.prefix))
    assert b"c1" not in member and member == store.tombstones.of("c1").encode()  # a digest
    assert store.erase_customer("c1") == 0  # erasing again is harmless


def test_events_of_an_erased_customer_are_ignored_and_store_nothing(
    store: RedisFeatureStore, writer: EventWriter, redis_client: redis.Redis
) -> None:
    p = store.prefix
    store.erase_customer("c1")
    before = all_keys(redis_client, p)

    alone = writer.ingest(views("c1", "late-1", "late-2", "late-1"), None, plan)
    assert alone == IngestResult(accepted=0, duplicates=0, ignored=3)
    assert all_keys(redis_client, p) == before  # no live record, no event ids, no stream entry

    mixed = writer.ingest([*views("c1", "late-3"), *views("c2", "x1", "x1")], None, plan)
    assert mixed == IngestResult(accepted=1, duplicates=1, ignored=1)
    assert stream_customers(redis_client, p) == ["c2"]
    assert not any("{c:c1}" in k for k in all_keys(redis_client, p))


def test_an_erasure_between_read_and_write_stores_nothing_of_the_customer(
    store: RedisFeatureStore, writer: EventWriter, redis_client: redis.Redis
) -> None:
    calls = []

    def erase_while_planning(snapshots, fresh):
        if not calls:  # the first plan: the request has read, and not written yet
            store.erase_customer("c1")
        calls.append(sorted(snapshots))
        return plan(snapshots, fresh)

    result = writer.ingest([*views("c1", "e1"), *views("c2", "e2")], None, erase_while_planning)

    assert result == IngestResult(accepted=1, duplicates=0, ignored=1)
    # one plan: the script refuses the erased c1 and writes c2 in the same call (no re-plan)
    assert calls == [["c1", "c2"]]
    assert stream_customers(redis_client, store.prefix) == ["c2"]
    assert not any("{c:c1}" in k for k in all_keys(redis_client, store.prefix))


def test_a_load_running_across_an_erasure_does_not_bring_the_batch_record_back(
    store: RedisFeatureStore,
) -> None:
    store.erase_customer("c1")
    # A loader that read the erased set before the erasure still writes c1's record.
    assert store.load_version("v1", [("c1", record(1)), ("c2", record(2))]) == 2
    assert store.has_version("v1")
    assert store.read_customer("v1", "c1").batch is None
    assert store.read_customer("v1", "c2").batch is not None


def test_erase_finds_batch_records_of_every_version_still_held(
    store: RedisFeatureStore, redis_client: redis.Redis
) -> None:
    p = store.prefix
    for version in ("v1", "v2", "v3"):  # v3 never activated, v1 neither active nor previous
        store.load_version(version, [("c1", record(1))])
    store.activate("v2")
    redis_client.srem(keys.model_versions(p), "v2")  # written before the versions set existed
    assert store.erase_customer("c1") == 3
    assert not any("{c:c1}" in k for k in all_keys(redis_client, p))


def test_a_dropped_version_leaves_the_versions_set(store: RedisFeatureStore) -> None:
    store.load_version("v1", [("c1", record(1))])
    store.load_version("v2", [("c1", record(1))])
    store.activate("v2")
    assert store.client.smembers(keys.model_versions(store.prefix)) == {b"v1", b"v2"}
    store.delete_version("v1")
    assert store.client.smembers(keys.model_versions(store.prefix)) == {b"v2"}


def test_export_events_and_training_leave_erased_customers_out(
    store: RedisFeatureStore,
    writer: EventWriter,
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    writer.ingest([*views("c1", "a"), *views("c2", "b")], None, plan)
    # An erasure whose stream purge did not run: the file must still leave c1 out.
    redis_client.sadd(keys.erased_customers(store.prefix), "c1")
    settings = Settings(redis_url=redis_url, redis_prefix=store.prefix)

    assert export_events(settings, tmp_path / "events.csv") == 1
    with (tmp_path / "events.csv").open(newline="") as fh:
        assert [row["customer_id"] for row in csv.DictReader(fh)] == ["c2"]
    erased = erased_customer_ids(settings)
    assert "c1" in erased and "c2" not in erased

"""EventWriter on a real Redis: idempotent, all-or-nothing, durable in the stream, concurrent."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis

from feature_store import codec, keys
from feature_store.connection import connect
from feature_store.export import export_events
from feature_store.ingest import EventWriter, IngestResult, export_stream
from feature_store.redis_store import RedisFeatureStore
from recsys.config import Settings
from recsys.customers.live_update import OnlineModel, plan_updates
from recsys.errors import InvalidEventError, StoreUnavailableError
from recsys.events import Event, utcnow, validate_batch
from recsys.io.loaders import load_interactions
from recsys.ranking.foldin import FoldIn
from recsys.store import BatchRecord

VERSION = "v1"
AS_OF = datetime(2024, 1, 1)
ITEMS = ["A", "B", "C", "D"]


def model(fold: bool = False) -> OnlineModel:
    factors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    return OnlineModel(
        version=VERSION,
        as_of=AS_OF,
        item_ids=ITEMS,
        row_of={item: row for row, item in enumerate(ITEMS)},
        fold=FoldIn.from_factors(factors, 0.1, 2.0) if fold else None,
    )


def planner(online: OnlineModel):
    return lambda snapshots, events: plan_updates(online, snapshots, events, utcnow())


def events(*raw: dict) -> list[Event]:
    return validate_batch([{"customer_id": "c1", **r} for r in raw])


def live(client: redis.Redis, prefix: str, customer: str = "c1"):
    return codec.decode_live(client.hgetall(keys.customer_live(prefix, customer)))


@pytest.fixture
def writer(redis_client: redis.Redis, redis_prefix: str) -> EventWriter:
    return EventWriter(redis_client, redis_prefix, stream_maxlen=1000)


def test_a_purchase_updates_the_live_record_and_lands_in_the_stream(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    result = writer.ingest(
        events(
            {"event_type": "view", "item_id": "B"},
            {"event_type": "add_to_cart", "item_id": "C"},
            {"event_type": "purchase", "item_id": "A", "quantity": 2, "price": 3.0},
            {"event_type": "dislike", "item_id": "D"},
        ),
        VERSION,
        planner(model()),
    )
    assert result == IngestResult(accepted=4, duplicates=0)
    record = live(redis_client, redis_prefix)
    assert record.purchased == {"A": 2.0}
    assert record.recent_views == ("B",)
    assert record.cart == ("C",)
    assert record.disliked == frozenset({"D"})
    assert record.features["frequency"] == 1 and record.features["monetary"] == 6.0
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == 4


def test_a_repeated_event_id_is_counted_as_duplicate_and_applied_once(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    purchase = {"event_type": "purchase", "item_id": "A", "event_id": "e-1"}
    first = writer.ingest(events(purchase), VERSION, planner(model()))
    again = writer.ingest(events(purchase, purchase), VERSION, planner(model()))
    assert first == IngestResult(1, 0)
    assert again == IngestResult(0, 2)
    assert live(redis_client, redis_prefix).purchased == {"A": 1.0}
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == 1


def test_repeats_inside_one_request_count_once(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    purchase = {"event_type": "purchase", "item_id": "A", "event_id": "e-2"}
    other = {"event_type": "view", "item_id": "B", "event_id": "e-3"}
    assert writer.ingest(events(purchase, other, purchase), VERSION, planner(model())) == (
        IngestResult(2, 1)
    )
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == 2


def test_concurrent_writers_of_one_customer_lose_no_update(
    redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    threads, per_thread = 6, 15
    errors: list[BaseException] = []

    def work(n: int) -> None:
        client = redis.Redis.from_url(redis_url)
        own = EventWriter(client, redis_prefix, stream_maxlen=0)
        try:
            for k in range(per_thread):
                raw = {"event_type": "purchase", "item_id": "A", "order_id": f"o{n}-{k}"}
                own.ingest(events(raw), VERSION, planner(model()))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            client.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors
    record = live(redis_client, redis_prefix)
    assert record.purchased == {"A": float(threads * per_thread)}
    assert record.features["frequency"] == threads * per_thread
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == threads * per_thread


def test_the_stream_is_capped_approximately(redis_client: redis.Redis, redis_prefix: str) -> None:
    capped = EventWriter(redis_client, redis_prefix, stream_maxlen=10)
    for chunk in range(10):
        raw = [{"event_type": "view", "item_id": "A", "customer_id": f"c{chunk}-{i}"}
               for i in range(100)]  # fmt: skip
        capped.ingest(validate_batch(raw), VERSION, planner(model()))
    assert 10 <= redis_client.xlen(keys.event_stream(redis_prefix)) < 300


def test_batch_features_and_new_events_combine(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisFeatureStore(redis_client, redis_prefix)
    batch = BatchRecord(
        features={"frequency": 2, "monetary": 10.0, "avg_order_value": 5.0, "churn_risk": 0.7},
        history_items=np.array([2], dtype=np.int32),
        history_counts=np.array([2.0], dtype=np.float32),
    )
    store.load_version(VERSION, [("c1", batch)])
    writer.ingest(
        events({"event_type": "purchase", "item_id": "A", "price": 4.0}), VERSION, planner(model())
    )
    features = live(redis_client, redis_prefix).features
    assert features["frequency"] == 3
    assert features["monetary"] == 14.0
    assert features["churn_risk"] == 0.7  # no churn model here: kept


def test_a_purchase_folds_in_a_vector_towards_what_was_bought(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    writer.ingest(
        events({"event_type": "purchase", "item_id": "C"}), VERSION, planner(model(fold=True))
    )
    raw = redis_client.hgetall(keys.customer_live(redis_prefix, "c1"))
    vector = codec.decode_live(raw).user_vector
    assert vector is not None and vector[1] > abs(vector[0])
    assert raw[b"uv"] == VERSION.encode()


def offer_sent(offer_id: str, channel: str, days_ago: float) -> dict:
    when = utcnow() - timedelta(days=days_ago)
    props = {"offer_id": offer_id, "channel": channel}
    return {"event_type": "offer_sent", "timestamp": when.isoformat(), "properties": props}


def test_an_offer_sent_is_stored_as_a_contact_expiring_after_the_horizon(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    day = 86_400.0
    writer.ingest(
        events(offer_sent("welcome-5", "Email", 1), offer_sent("winback", "sms", 3)),
        VERSION,
        planner(model()),
        contact_horizon_s=10 * day,
    )
    key = keys.customer_contacts(redis_prefix, "c1")
    held = dict(redis_client.zrange(key, 0, -1, withscores=True))
    assert set(held) == {b"welcome-5|email", b"winback|sms"}  # the channel is case-folded
    assert abs(held[b"welcome-5|email"] - (time.time() - day)) < 60
    ttl = redis_client.ttl(key)
    assert 9 * day - 60 < ttl <= 9 * day + 1  # the horizon after the newest contact
    state = RedisFeatureStore(redis_client, redis_prefix).read_customer(VERSION, "c1")
    assert [(c.offer_id, c.channel) for c in state.live.contacts] == [
        ("winback", "sms"),
        ("welcome-5", "email"),
    ]


def test_contacts_older_than_the_horizon_are_trimmed_on_write(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = keys.customer_contacts(redis_prefix, "c1")
    writer.ingest(events(offer_sent("old", "email", 20)), VERSION, planner(model()))
    assert redis_client.exists(key) == 0  # beyond the default horizon (14 days): not kept
    writer.ingest(events(offer_sent("a", "email", 13)), VERSION, planner(model()))
    writer.ingest(
        events(offer_sent("b", "app", 1)), VERSION, planner(model()), contact_horizon_s=86_400 * 5
    )
    assert redis_client.zrange(key, 0, -1) == [b"b|app"]  # "a" left the shorter horizon


def test_an_offer_sent_with_a_malformed_offer_id_is_rejected() -> None:
    with pytest.raises(InvalidEventError, match="offer_id"):
        events({"event_type": "offer_sent", "properties": {"offer_id": "a|b", "channel": "x"}})
    with pytest.raises(InvalidEventError, match="channel"):
        events({"event_type": "offer_sent", "properties": {"offer_id": "a", "channel": 3}})


def test_a_dead_store_is_unavailable_not_a_redis_error(redis_prefix: str) -> None:
    from feature_store.embedded import free_port

    client = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=200)
    dead = EventWriter(client, redis_prefix, stream_maxlen=10)
    with pytest.raises(StoreUnavailableError):
        dead.ingest(events({"event_type": "view", "item_id": "A"}), VERSION, planner(model()))


def test_export_writes_an_events_file_that_training_reads(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    at = datetime(2024, 2, 1, 10, 30)
    raw = [
        {"event_type": "purchase", "item_id": "A", "quantity": 2, "price": 1.5, "order_id": "o1",
         "timestamp": at.isoformat(), "event_id": "x1"},
        {"event_type": "survey", "properties": {"metric": "nps", "score": 9},
         "timestamp": (at + timedelta(hours=1)).isoformat()},
        {"event_type": "view", "item_id": "B", "customer_id": "c2",
         "timestamp": (at + timedelta(hours=2)).isoformat()},
    ]  # fmt: skip
    writer.ingest(events(*raw), VERSION, planner(model()))
    path = tmp_path / "events.csv.gz"
    assert export_stream(redis_client, redis_prefix, path, chunk=2) == 3
    loaded = load_interactions(path, fmt="events").interactions
    assert loaded["event_type"].tolist() == ["purchase", "survey", "view"]
    assert loaded["customer_id"].tolist() == ["c1", "c1", "c2"]
    assert loaded["timestamp"].iloc[0] == at
    assert loaded["quantity"].iloc[0] == 2.0 and loaded["price"].iloc[0] == 1.5
    assert loaded["event_id"].iloc[0] == "x1"
    assert '"score":9' in loaded["properties"].iloc[1]


def test_export_events_command_uses_the_settings(
    writer: EventWriter, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    writer.ingest(events({"event_type": "view", "item_id": "A"}), VERSION, planner(model()))
    settings = Settings(redis_url=redis_url, redis_prefix=redis_prefix)
    assert export_events(settings, tmp_path / "out.csv") == 1
    assert (tmp_path / "out.csv").read_text().splitlines()[0].startswith("customer_id,event_type")


def test_purchases_of_a_customer_with_a_long_history_fold_as_the_merged_solve(
    writer: EventWriter, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """A batch history longer than f/2 items takes the kept batch factor and the Woodbury
    update (``recsys.ranking.foldin_split``): after each purchase (an item of the history, then
    new ones) the stored vector is the one solving the whole history and the live orders
    merged, within float rounding, and the purchase is gone from what the page view may show."""
    rng = np.random.default_rng(4)
    items = [f"I{k}" for k in range(40)]
    factors = rng.standard_normal((40, 8)).astype(np.float32)
    online = OnlineModel(
        version=VERSION,
        as_of=AS_OF,
        item_ids=items,
        row_of={item: row for row, item in enumerate(items)},
        fold=FoldIn.from_factors(factors, 0.1, 2.0),
    )
    history = np.arange(0, 24, 2, dtype=np.int32)  # 12 items > f/2 = 4
    counts = rng.integers(1, 4, history.size).astype(np.float32)
    batch = BatchRecord(features={}, history_items=history, history_counts=counts)
    RedisFeatureStore(redis_client, redis_prefix).load_version(VERSION, [("c1", batch)])
    bought: dict[int, float] = {}
    assert online.fold is not None
    for n, item in enumerate(["I2", "I5", "I7", "I5", "I30"]):
        purchase = {"event_type": "purchase", "item_id": item, "order_id": f"o{n}"}
        writer.ingest(events(purchase), VERSION, planner(online))
        row = online.row_of[item]
        bought[row] = bought.get(row, 0.0) + 1.0  # distinct orders of the item
        weights = dict(zip(history.tolist(), counts.astype(np.float64).tolist(), strict=True))
        for r, w in bought.items():
            weights[r] = weights.get(r, 0.0) + w
        rows = np.array(sorted(weights))
        merged = online.fold.user_vector(rows, np.array([weights[r] for r in rows]))
        record = live(redis_client, redis_prefix)
        assert record.user_vector is not None
        np.testing.assert_allclose(record.user_vector, merged, rtol=1e-5, atol=1e-6)
        assert item in record.purchased
    assert len(online.fold.batch_factors) == 1 and online.fold.batch_factors.hits >= 4

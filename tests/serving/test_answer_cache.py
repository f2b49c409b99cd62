"""The page view's exact answer cache (``serving.answer_cache``, ``feature_store.answers``): a
repeat view is answered from the stored answer, identical to ranking again; every input that
decides the answer (events, parameters, model version, catalogue) makes it miss; an erasure
removes it; a write-back that crossed an event is refused. Real Redis, the real app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from servingkit import ADMIN, API_KEYS, READ, VERSION_1, VERSION_2, WRITE, TestClient, make_bundle
from servingkit import metric as metric_value

from feature_store import answers, keys
from feature_store.multiplexed import MultiplexedReader
from feature_store.redis_store import RedisFeatureStore
from recsys.bundle import write_bundle
from recsys.config import ServingConfig, Settings
from recsys.store import ReadPlan
from serving.answer_cache import signature
from serving.app import create_app
from serving.recommend import RecommendationQuery

URL = "/v1/customers/{}/recommendations"


def view(client: TestClient, customer_id: str, **params: object) -> dict:
    response = client.get(URL.format(customer_id), params=params, headers=READ)
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def cache_count(client: TestClient, result: str) -> float:
    text = client.get("/metrics").text
    return metric_value(text, "recsys_answer_cache_total", result=result) or 0.0


def stored(redis_client: redis.Redis, prefix: str, customer_id: str) -> bytes | None:
    value = redis_client.get(keys.customer_answer(prefix, customer_id))
    return value if isinstance(value, bytes) else None


@pytest.fixture
def uncached(settings: Settings) -> Iterator[TestClient]:
    """The same service with the cache off: every answer ranked again."""
    off = settings.model_copy(update={"serving": ServingConfig(answer_cache_ttl_s=0)})
    with TestClient(create_app(off)) as test_client:
        yield test_client


def test_a_repeat_view_is_a_hit_and_equals_the_computed_answer(
    client: TestClient, uncached: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    first = view(client, "kitchen-1", k=5)
    value = stored(redis_client, redis_prefix, "kitchen-1")
    assert value is not None and len(value) <= answers.MAX_VALUE_BYTES
    assert value.startswith(VERSION_1.encode() + b"|0|0|")  # version | catalogue | live rev
    assert 0 < redis_client.ttl(keys.customer_answer(redis_prefix, "kitchen-1")) <= 3600
    assert (cache_count(client, "miss"), cache_count(client, "stored")) == (1, 1)
    second = view(client, "kitchen-1", k=5)
    assert cache_count(client, "hit") == 1
    assert second == first == view(uncached, "kitchen-1", k=5)
    assert [item["item_id"] for item in second["items"]] == ["K1", "K2", "K3", "K4", "K5"]
    assert second["strategy"] == "personalized"


def test_hits_equal_the_ranked_answers_across_customers_pages_and_filters(
    client: TestClient, uncached: TestClient
) -> None:
    event = {"customer_id": "visitor-9", "event_type": "add_to_cart", "item_id": "G3"}
    assert client.post("/v1/events", json=event, headers=WRITE).status_code == 202
    queries: list[dict[str, object]] = [
        {"k": 4},
        {"k": 4, "context": "product", "item_id": "K3"},
        {"k": 4, "context": "cart"},
        {"k": 4, "context": "email", "exclude_purchased": "false"},
        {"k": 3, "category": "garden", "exclude": "G1,G2"},
    ]
    hits = 0.0
    for customer in ("kitchen-1", "garden-1", "visitor-9"):
        for params in queries:
            ranked = view(uncached, customer, **params)
            assert view(client, customer, **params) == ranked  # a miss, stored
            assert view(client, customer, **params) == ranked  # a hit
            assert cache_count(client, "hit") == hits + 1
            hits += 1


def test_an_event_of_the_customer_changes_the_next_answer(
    client: TestClient, uncached: TestClient
) -> None:
    before = view(client, "garden-1", k=3, context="home")
    assert view(client, "garden-1", k=3, context="home") == before  # a hit
    top = before["items"][0]["item_id"]
    event = {"customer_id": "garden-1", "event_type": "dislike", "item_id": top}
    assert client.post("/v1/events", json=event, headers=WRITE).status_code == 202
    after = view(client, "garden-1", k=3, context="home")
    assert top not in [item["item_id"] for item in after["items"]]
    assert after == view(uncached, "garden-1", k=3, context="home")
    assert cache_count(client, "hit") == 1  # the view after the event was computed


def test_different_parameters_do_not_share_an_answer(client: TestClient) -> None:
    three = view(client, "kitchen-1", k=3)
    two = view(client, "kitchen-1", k=2)
    assert len(three["items"]) == 3 and len(two["items"]) == 2
    excluded = view(client, "kitchen-1", k=2, exclude="K1")
    assert "K1" not in [item["item_id"] for item in excluded["items"]]
    bought = view(client, "kitchen-1", k=1, exclude_purchased="false")
    assert [item["item_id"] for item in bought["items"]] == ["K0"]
    assert cache_count(client, "hit") == 0
    assert view(client, "kitchen-1", k=1, exclude_purchased="false") == bought
    assert cache_count(client, "hit") == 1
    assert len({signature(RecommendationQuery(k=k)) for k in (1, 2, 3)}) == 3
    product = RecommendationQuery(context="product", item_id="K1")
    assert signature(product) != signature(RecommendationQuery(context="product", item_id="K2"))
    assert signature(RecommendationQuery(exclude=("K1", "K2"))) != signature(
        RecommendationQuery(exclude=("K1K2",))
    )
    # processes whose settings rank differently (exact or retrieved scoring) do not share
    assert signature(RecommendationQuery(), b"a") != signature(RecommendationQuery(), b"b")


def test_an_erasure_removes_the_stored_answer(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    view(client, "kitchen-1", k=3)
    assert stored(redis_client, redis_prefix, "kitchen-1") is not None
    assert client.delete("/v1/customers/kitchen-1", headers=ADMIN).status_code == 204
    assert stored(redis_client, redis_prefix, "kitchen-1") is None
    assert view(client, "kitchen-1", k=3)["strategy"] == "cold_start"
    assert stored(redis_client, redis_prefix, "kitchen-1") is None  # nothing held: not stored


def test_repeat_hits_are_the_same_bytes_as_ranking_again(
    client: TestClient, uncached: TestClient
) -> None:
    """The second hit of a body is served from the process's rendered items: the same bytes."""
    params = {"k": 4, "context": "product", "item_id": "K1"}
    ranked = uncached.get(URL.format("kitchen-1"), params=params, headers=READ).content
    bodies = [
        client.get(URL.format("kitchen-1"), params=params, headers=READ).content for _ in range(4)
    ]
    assert bodies == [ranked] * 4
    assert (cache_count(client, "miss"), cache_count(client, "hit")) == (1, 3)
    assert client.put("/v1/items/K2", json={"title": "Renamed"}, headers=WRITE).status_code == 200
    after = [view(client, "kitchen-1", **params) for _ in range(3)]
    assert after[0] == after[1] == after[2] == view(uncached, "kitchen-1", **params)
    assert "Renamed" in [item["title"] for item in after[2]["items"]]


def test_a_catalogue_change_misses_and_is_answered_with_the_new_catalogue(
    client: TestClient,
) -> None:
    assert view(client, "kitchen-1", k=1)["items"][0]["item_id"] == "K1"
    assert client.put("/v1/items/K1", json={"hidden": True}, headers=WRITE).status_code == 200
    assert view(client, "kitchen-1", k=1)["items"][0]["item_id"] == "K2"
    assert cache_count(client, "hit") == 0


def test_a_model_swap_misses(
    redis_url: str, redis_prefix: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    write_bundle(make_bundle(VERSION_1), tmp_path)
    settings = Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=tmp_path, api_keys=API_KEYS
    )
    with TestClient(create_app(settings)) as client:
        old = view(client, "kitchen-1", k=3)
        write_bundle(make_bundle(VERSION_2), tmp_path)
        assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
        new = view(client, "kitchen-1", k=3)
        assert new["model_version"] == VERSION_2 and old["model_version"] == VERSION_1
        assert new["items"] == old["items"]  # the same model, under another version
        assert cache_count(client, "hit") == 0
        value = stored(redis_client, redis_prefix, "kitchen-1")
        assert value is not None and value.startswith(VERSION_2.encode() + b"|")
        assert view(client, "kitchen-1", k=3) == new
        assert cache_count(client, "hit") == 1


def test_a_ttl_of_zero_turns_the_cache_off(
    uncached: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    first = view(uncached, "kitchen-1", k=3)
    assert view(uncached, "kitchen-1", k=3) == first
    assert stored(redis_client, redis_prefix, "kitchen-1") is None
    assert [cache_count(uncached, r) for r in ("hit", "miss", "stored")] == [0, 0, 0]


def test_a_write_back_after_an_event_or_an_erasure_is_refused(
    client: TestClient, redis_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """The write-back's condition, on the page views' reader: the live revision read is still
    the store's, and the customer still has a record."""
    view(client, "kitchen-1", k=3)  # the version is loaded and active
    redis_client.delete(keys.customer_answer(redis_prefix, "kitchen-1"))
    sig = signature(RecommendationQuery(k=3), b"retrieval_min_items=20000")

    async def write_back(customer_id: str, bump: bool) -> tuple[bytes | None, str]:
        reader = MultiplexedReader(redis_url, redis_prefix, timeout_ms=1000)
        read = await reader.read(ReadPlan.page_view_of(VERSION_1, customer_id, sig))
        assert read.answer is None and read.live_revision is not None
        if bump:  # an event lands between the read and the write-back
            redis_client.hincrby(keys.customer_live(redis_prefix, customer_id), "rev", 1)
        value = answers.tag(VERSION_1, read.revision, read.live_revision, sig) + b"\x01\x00"
        command = answers.store_command(
            redis_prefix, customer_id, VERSION_1, read.live_revision, value, 60
        )
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reader.store_answer(command, outcome.set_result)
        result = await outcome
        again = await reader.read(ReadPlan.page_view_of(VERSION_1, customer_id, sig))
        await reader.aclose()
        return again.answer, result

    assert asyncio.run(write_back("kitchen-1", bump=True)) == (None, "refused")
    assert stored(redis_client, redis_prefix, "kitchen-1") is None
    assert asyncio.run(write_back("kitchen-1", bump=False)) == (b"\x01\x00", "stored")
    assert asyncio.run(write_back("nobody-7", bump=False)) == (None, "refused")  # no record
    store = RedisFeatureStore(redis_client, redis_prefix)
    store.erase_customer("kitchen-1")
    assert asyncio.run(write_back("kitchen-1", bump=False)) == (None, "refused")


def test_a_stored_body_this_code_cannot_read_is_ranked_again_and_replaced(
    client: TestClient, uncached: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    ranked = view(client, "kitchen-1", k=3)
    cache = client.app.state.answer_cache  # type: ignore[attr-defined]
    sig = cache.signature(RecommendationQuery(k=3))
    key = keys.customer_answer(redis_prefix, "kitchen-1")
    redis_client.set(key, answers.tag(VERSION_1, 0, b"0", sig) + b"\x09garbage")
    assert view(client, "kitchen-1", k=3) == ranked == view(uncached, "kitchen-1", k=3)
    value = stored(redis_client, redis_prefix, "kitchen-1")
    assert value is not None and not value.endswith(b"garbage")  # written back anew
    assert view(client, "kitchen-1", k=3) == ranked
    assert cache_count(client, "hit") == 1


def test_a_fallback_answer_is_never_stored(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_client.set(keys.customer_live(redis_prefix, "broken-1"), b"not a hash")  # WRONGTYPE
    assert view(client, "broken-1", k=3)["strategy"] == "fallback"
    assert stored(redis_client, redis_prefix, "broken-1") is None
    assert cache_count(client, "stored") == 0


def test_the_body_round_trips_and_refuses_what_it_cannot_store_exactly() -> None:
    import numpy as np

    rows = np.array([3, 1, 2], dtype=np.int32)
    scores = np.array([0.5, 0.25, -1.0], dtype=np.float32)
    table = ("a", "b", "c")
    body = answers.encode_body("cold_start", rows, scores, ["c", "a", "a"], table)
    assert body is not None and len(body) == 2 + 3 * 9
    strategy, got_rows, got_scores, reasons = answers.decode_body(body, table)
    assert (strategy, reasons) == ("cold_start", ["c", "a", "a"])
    assert got_rows.tolist() == rows.tolist() and got_scores.tolist() == scores.tolist()
    assert answers.encode_body("fallback", rows, scores, ["a"] * 3, table) is None
    assert answers.encode_body("cold_start", rows, scores, ["a", "z", "a"], table) is None
    assert (
        answers.encode_body("cold_start", rows, scores.astype(np.float64), ["a"] * 3, table) is None
    )
    with pytest.raises(ValueError):
        answers.decode_body(body[:-1], table)

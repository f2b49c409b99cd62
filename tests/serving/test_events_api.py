"""``POST /v1/events`` over HTTP: validation, idempotency, read-your-writes, durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI
from servingkit import API_KEYS, READ, WRITE, TestClient, get_json, item_ids

from feature_store import codec, keys
from feature_store.embedded import free_port
from recsys.config import Settings, get_settings
from serving.app import create_app
from serving.routes import events as events_routes

URL = "/v1/events"


def with_events_route(app: FastAPI) -> FastAPI:
    """The app, with the events router (until ``serving/app.py`` includes it)."""
    if not any(getattr(route, "path", None) == URL for route in app.routes):
        app.include_router(events_routes.router)
    return app


def app_factory() -> FastAPI:
    """For the uvicorn child process of the durability test."""
    return with_events_route(create_app(get_settings()))


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return with_events_route(create_app(settings))


def post(client: TestClient, body: object, headers: dict[str, str] = WRITE) -> httpx.Response:
    return client.post(URL, json=body, headers=headers)


def accepted(client: TestClient, body: object) -> dict:
    response = post(client, body)
    assert response.status_code == 202, response.text
    return get_json(response)


def recommend(client: TestClient, customer_id: str, **params: object) -> dict:
    response = client.get(
        f"/v1/customers/{customer_id}/recommendations", params=params, headers=READ
    )
    assert response.status_code == 200, response.text
    return get_json(response)


def profile(client: TestClient, customer_id: str) -> dict:
    response = client.get(f"/v1/customers/{customer_id}", headers=READ)
    assert response.status_code == 200, response.text
    return get_json(response)


def every_key(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in client.scan_iter(match=f"{prefix}:*", count=1000)}


def test_one_event_or_a_batch_is_accepted_with_counts(client: TestClient) -> None:
    one = {"customer_id": "c1", "event_type": "view", "item_id": "K1"}
    assert accepted(client, one) == {"accepted": 1, "duplicates": 0, "ignored": 0}
    batch = {"events": [one, {**one, "item_id": "K2"}, {**one, "event_type": "search"}]}
    assert accepted(client, batch) == {"accepted": 3, "duplicates": 0, "ignored": 0}


def test_the_same_event_id_twice_is_applied_once(client: TestClient) -> None:
    event = {"customer_id": "c2", "event_type": "purchase", "item_id": "K1", "event_id": "e-9"}
    assert accepted(client, event) == {"accepted": 1, "duplicates": 0, "ignored": 0}
    assert accepted(client, event) == {"accepted": 0, "duplicates": 1, "ignored": 0}
    assert profile(client, "c2")["features"]["frequency"] == 1


def test_a_bad_event_rejects_the_whole_batch_and_changes_nothing(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    accepted(client, {"customer_id": "c3", "event_type": "view", "item_id": "K1"})
    before = every_key(redis_client, redis_prefix)
    good = {"customer_id": "c3", "event_type": "purchase", "item_id": "K2"}
    bad = {"customer_id": "c3", "event_type": "survey", "properties": {"metric": "nps"}}
    response = post(client, {"events": [good, good, bad, good]})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["index"] == 2
    assert problem["detail"].startswith("events[2]: ")
    assert "score" in problem["detail"]
    assert every_key(redis_client, redis_prefix) == before


@pytest.mark.parametrize(
    "body",
    [
        {"events": "view"},
        {"events": []},
        [{"customer_id": "c", "event_type": "view", "item_id": "K1"}],
        {"customer_id": "c", "event_type": "teleport"},
        {
            "customer_id": "c",
            "event_type": "view",
            "item_id": "K1",
            "timestamp": "0001-01-01T00:00+01:00",
        },
    ],
)
def test_malformed_requests_are_422_problems(client: TestClient, body: object) -> None:
    response = post(client, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_more_than_the_batch_limit_is_rejected(client: TestClient, settings: Settings) -> None:
    event = {"customer_id": "c4", "event_type": "view", "item_id": "K1"}
    response = post(client, {"events": [event] * (settings.serving.max_batch + 1)})
    assert response.status_code == 422
    assert "at most" in response.json()["detail"]


def test_writing_events_needs_the_write_scope(client: TestClient) -> None:
    event = {"customer_id": "c5", "event_type": "view", "item_id": "K1"}
    assert post(client, event, headers=READ).status_code == 403
    assert post(client, event, headers={}).status_code == 401


def test_a_purchase_removes_the_item_from_the_next_recommendations(client: TestClient) -> None:
    assert item_ids(recommend(client, "kitchen-1", k=1)) == ["K1"]
    accepted(client, {"customer_id": "kitchen-1", "event_type": "purchase", "item_id": "K1"})
    assert "K1" not in item_ids(recommend(client, "kitchen-1", k=12))


def test_a_dislike_keeps_the_item_away_for_good(client: TestClient) -> None:
    accepted(client, {"customer_id": "kitchen-1", "event_type": "dislike", "item_id": "K1"})
    accepted(client, {"customer_id": "kitchen-1", "event_type": "view", "item_id": "K1"})
    assert "K1" not in item_ids(recommend(client, "kitchen-1", k=12))
    assert "K1" not in item_ids(recommend(client, "kitchen-1", k=12, context="email"))


def test_a_view_drives_similar_items_for_a_new_customer(client: TestClient) -> None:
    assert recommend(client, "newcomer", k=3)["strategy"] == "cold_start"
    accepted(client, {"customer_id": "newcomer", "event_type": "view", "item_id": "K3"})
    body = recommend(client, "newcomer", k=2)
    assert set(item_ids(body)) == {"K2", "K4"}
    assert {item["reason"] for item in body["items"]} == {"similar_to_viewed"}


def test_add_to_cart_shows_in_the_cart_context(client: TestClient) -> None:
    accepted(client, {"customer_id": "shopper", "event_type": "add_to_cart", "item_id": "G2"})
    body = recommend(client, "shopper", k=2, context="cart")
    assert set(item_ids(body)) == {"G1", "G3"}  # G2's neighbours; G2 itself is in the cart
    assert profile(client, "shopper")["cart"] == ["G2"]
    accepted(client, {"customer_id": "shopper", "event_type": "remove_from_cart", "item_id": "G2"})
    assert profile(client, "shopper")["cart"] == []


def test_a_survey_changes_nps_and_csat_in_the_profile(client: TestClient) -> None:
    assert profile(client, "kitchen-1")["features"]["nps"] == 9.0
    accepted(
        client,
        {
            "events": [
                {"customer_id": "kitchen-1", "event_type": "survey",
                 "properties": {"metric": "nps", "score": 3}},
                {"customer_id": "kitchen-1", "event_type": "survey",
                 "properties": {"metric": "csat", "score": 2}},
            ]
        },
    )  # fmt: skip
    features = profile(client, "kitchen-1")["features"]
    assert (features["nps"], features["csat"]) == (3.0, 2.0)
    assert features["frequency"] == 3  # the batch features stand where no event changed them


def test_purchases_fold_a_new_customer_into_the_model(
    client: TestClient, redis_client: redis.Redis, redis_prefix: str
) -> None:
    events = [
        {"customer_id": "gardener", "event_type": "purchase", "item_id": item}
        for item in ("G1", "G3")
    ]
    accepted(client, {"events": events})
    body = recommend(client, "gardener", k=3, context="email")
    assert body["strategy"] == "personalized"
    assert set(item_ids(body)) <= {"G0", "G2", "G4", "G5"}
    raw = redis_client.hgetall(keys.customer_live(redis_prefix, "gardener"))
    vector = codec.decode_live(raw).user_vector
    assert vector is not None and vector[1] > abs(vector[0])  # towards the garden axis


def test_events_are_accepted_and_applied_without_a_model(
    redis_url: str, redis_prefix: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    settings = Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=tmp_path, api_keys=API_KEYS
    )
    with TestClient(with_events_route(create_app(settings))) as bare:
        event = {"customer_id": "early", "event_type": "purchase", "item_id": "X1"}
        assert accepted(bare, event) == {"accepted": 1, "duplicates": 0, "ignored": 0}
    assert redis_client.xlen(keys.event_stream(redis_prefix)) == 1


# -- durability: the stream keeps every acknowledged event when the service is killed ----------


def _start(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "test_events_api:app_factory", "--factory",
        "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("uvicorn did not become ready")
        time.sleep(0.1)


def test_acknowledged_events_survive_a_killed_service(
    redis_url: str, redis_prefix: str, artifacts: Path, redis_client: redis.Redis
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "RECSYS_REDIS_URL": redis_url,
        "RECSYS_REDIS_PREFIX": redis_prefix,
        "RECSYS_ARTIFACTS": str(artifacts),
        "RECSYS_API_KEYS": ",".join(f"{k}:{'+'.join(sorted(v))}" for k, v in API_KEYS.items()),
    }
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=WRITE) as http:
            n = 0
            while not stop.is_set():
                ids = [f"k-{n}-{i}" for i in range(20)]
                events = [
                    {"customer_id": f"d{i % 3}", "event_type": "purchase", "item_id": "K2",
                     "event_id": e}
                    for i, e in enumerate(ids)
                ]  # fmt: skip
                body = {"events": events}
                n += 1
                try:
                    response = http.post(URL, json=body, timeout=5)
                except httpx.HTTPError:
                    return  # the service died under us: this request was never acknowledged
                if response.status_code == 202:
                    acknowledged.extend(ids)

    process = _start(port, env)
    try:
        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 10
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # no shutdown, no flush
        process.wait(timeout=10)
        stop.set()
        sender.join(timeout=10)
        assert len(acknowledged) >= 200
        process = _start(port, env)  # the service comes back over the same store
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            again = {"customer_id": "d0", "event_type": "purchase", "item_id": "K2",
                     "event_id": acknowledged[0]}  # fmt: skip
            response = http.post(URL, json=again, headers=WRITE, timeout=5)
            assert response.json() == {"accepted": 0, "duplicates": 1, "ignored": 0}
    finally:
        process.kill()
        process.wait(timeout=10)
    entries = redis_client.xrange(keys.event_stream(redis_prefix))
    in_stream = [fields[b"event_id"].decode() for _, fields in entries]
    assert len(in_stream) == len(set(in_stream))
    assert set(acknowledged) <= set(in_stream)


def test_concurrent_single_events_each_get_their_answer_and_a_bad_one_its_422(
    redis_url: str, redis_prefix: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Single events of one customer sent at once (grouped by ``feature_store.ingest_groups``
    on the app's async writer): each good one is acknowledged and stored once, a repeat is a
    duplicate, the bad one gets its own 422 and changes nothing of the others."""
    settings = Settings(
        redis_url=redis_url, redis_prefix=redis_prefix, artifacts=tmp_path, api_keys=API_KEYS
    )
    bodies: list[dict] = [
        {"customer_id": "hot", "event_type": "view", "item_id": f"I{n}", "event_id": f"v{n}"}
        for n in range(8)
    ]
    bodies.append({"customer_id": "hot", "event_type": "view", "item_id": "I0", "event_id": "v0"})
    bodies.append({"customer_id": "hot", "event_type": "no-such-type", "item_id": "I9"})
    answers: dict[int, httpx.Response] = {}
    with TestClient(with_events_route(create_app(settings))) as bare:

        def send(n: int) -> None:
            answers[n] = post(bare, bodies[n])

        threads = [threading.Thread(target=send, args=(n,)) for n in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = [answers[n].status_code for n in range(len(bodies))]
    assert statuses == [202] * 9 + [422]
    assert answers[9].headers["content-type"].startswith("application/problem+json")
    counts = [answers[n].json() for n in range(9)]
    assert sum(c["accepted"] for c in counts) == 8
    assert sum(c["duplicates"] for c in counts) == 1
    entries = redis_client.xrange(keys.event_stream(redis_prefix))
    assert sorted(f[b"event_id"].decode() for _, f in entries) == [f"v{n}" for n in range(8)]

"""The page-view routes' lean path answers exactly as FastAPI's declared path does.

A plainly valid request is read by the route itself (``serving.routes.common.LeanRoute``);
anything else (a repeated, empty or malformed parameter) takes the declared path. Repeating a
parameter with the same value sends a request down the declared path without changing its
meaning, so each answer here is compared with its twin's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import pytest
from fastapi import FastAPI
from servingkit import ADMIN, READ, WRITE, TestClient, item_ids
from starlette.requests import Request

from feature_store.connection import connect
from feature_store.redis_store import RedisFeatureStore
from recsys.config import Settings
from serving.app import create_app
from serving.recommend import RecommendationQuery
from serving.routes.common import query_items, query_list
from serving.routes.recommendations import RecommendationParams, lean_query
from serving.state import ThreadedReader

RECS = "/v1/customers/{}/recommendations"


def twin(query: str) -> str:
    """``query`` with its first scalar parameter repeated: the same meaning, declared path."""
    for pair in query.split("&"):
        name = pair.partition("=")[0]
        if name in ("k", "context", "item_id", "exclude_purchased", "category"):
            return f"{query}&{pair}"
    return f"{query}&context=home&context=home" if query else "context=home&context=home"


def same_answer(client: TestClient, path: str, query: str, headers: dict[str, str]) -> Any:
    headers = {**headers, "X-Request-ID": "twins"}
    lean = client.get(f"{path}?{query}", headers=headers)
    declared = client.get(f"{path}?{twin(query)}", headers=headers)
    assert (lean.status_code, lean.json()) == (declared.status_code, declared.json()), query
    assert lean.headers == declared.headers
    return lean.json()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "k=3",
        "k=100",
        "k=2&context=product&item_id=K3",
        "k=2&context=cart",
        "context=email&exclude_purchased=false",
        "exclude_purchased=0&k=4",
        "exclude=K1,K2&exclude=K3&k=2",
        "exclude=K1,%20K2,,K3&k=1",
        "category=garden&k=3",
        "category=nothing-like-it",
        "k=2&unknown=ignored",
    ],
)
def test_a_recommendation_reads_the_same_on_both_paths(client: TestClient, query: str) -> None:
    for customer_id in ("kitchen-1", "garden-1", "never-seen"):
        same_answer(client, RECS.format(customer_id), query, READ)


@pytest.mark.parametrize(("path", "query"), [
    ("/v1/popular", ""), ("/v1/popular", "k=2"), ("/v1/popular", "k=3&category=kitchen"),
    ("/v1/items/K3/similar", "k=2"), ("/v1/items/K3/similar", ""),
    ("/v1/items/NOPE/similar", "k=2"),
])  # fmt: skip
def test_popular_and_similar_read_the_same_on_both_paths(
    client: TestClient, path: str, query: str
) -> None:
    same_answer(client, path, query, READ)


def test_errors_are_the_same_on_both_paths(client: TestClient) -> None:
    for headers, status in (({}, 401), (WRITE, 403), (ADMIN, 200)):
        for path in (RECS.format("kitchen-1"), "/v1/popular", "/v1/items/K3/similar"):
            body = same_answer(client, path, "k=2", headers)
            assert status == 200 or body["status"] == status
    missing = same_answer(client, "/v1/items/NOPE/similar", "k=2", READ)
    assert missing["status"] == 404


def test_a_profile_is_the_same_on_both_paths(client: TestClient) -> None:
    lean = client.get("/v1/customers/kitchen-1", headers=READ)
    declared = client.get("/v1/customers/kitchen-1?context=ignored", headers=READ)
    assert lean.status_code == 200 and lean.json() == declared.json()
    assert client.get("/v1/customers/nobody", headers=READ).status_code == 404


def request(app: FastAPI, query: str) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": query.encode(),
             "headers": [], "app": app}  # fmt: skip
    return Request(scope)


def declared_query(query: str) -> RecommendationQuery:
    """What the declared path reads (the pydantic model and ``k_param``'s default)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    fields: dict[str, Any] = {name: value for name, value in pairs if name != "exclude"}
    fields["exclude"] = [value for name, value in pairs if name == "exclude"]
    k = int(fields.pop("k", 10))
    return RecommendationParams.model_validate(fields).to_query(k)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "k=7&context=cart&exclude_purchased=false",
        "k=1&context=product&item_id=85123A&category=Kitchen%20%26%20Dining",
        "exclude=A,B&exclude=C&exclude_purchased=1",
    ],
)
def test_the_lean_reading_of_a_valid_query_is_the_models(app: FastAPI, query: str) -> None:
    assert lean_query(request(app, query)) == declared_query(query)


@pytest.mark.parametrize(
    "query",
    [
        "k=0", "k=101", "k=010", "k=+5", "k=%205", "k=ten", "k=", "k=5&k=5",
        "context=Home", "context=checkout", "exclude_purchased=yes", "exclude_purchased=",
        "item_id=", "item_id=K1%0A", "category=%01", "exclude=K1,%01",
        "exclude=" + ",".join(f"X{i}" for i in range(501)),
    ],
)  # fmt: skip
def test_anything_not_plainly_valid_takes_the_declared_path(app: FastAPI, query: str) -> None:
    assert lean_query(request(app, query)) is None


def test_a_store_passed_in_serves_the_page_views_from_worker_threads(
    settings: Settings, redis_url: str, redis_prefix: str
) -> None:
    """Its sync client cannot be awaited: the async routes read it through a thread."""
    store = RedisFeatureStore(connect(redis_url, timeout_ms=2000), redis_prefix)
    with TestClient(create_app(settings, store=store)) as client:
        assert isinstance(client.app.state.serving.reader, ThreadedReader)  # type: ignore[attr-defined]
        body = client.get(RECS.format("kitchen-1") + "?k=1", headers=READ).json()
        assert (body["strategy"], item_ids(body)) == ("personalized", ["K1"])
        popular = client.get("/v1/popular?k=2&category=kitchen", headers=READ).json()
        assert item_ids(popular) == ["K0", "K1"]
        assert item_ids(client.get("/v1/items/K3/similar?k=1", headers=READ).json()) == ["K2"]
        assert client.get("/v1/customers/kitchen-1", headers=READ).json()["in_model"]
    store.close()


def events_twins(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    """``POST /v1/events`` with ``body`` as ``application/json`` (the lean path) and as another
    ``+json`` type (the declared path: FastAPI reads those as JSON too): the same answer."""
    headers = {**headers, "X-Request-ID": "twins"}
    lean = client.post(
        "/v1/events", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    twin = {**headers, "Content-Type": "application/x-twin+json"}
    declared = client.post("/v1/events", content=body, headers=twin)
    assert (lean.status_code, lean.json()) == (declared.status_code, declared.json()), body
    return lean


def test_events_answer_the_same_on_both_paths(client: TestClient) -> None:
    view = b'{"customer_id": "kitchen-1", "event_type": "view", "item_id": "K3"}'
    assert events_twins(client, view, WRITE).json() == {
        "accepted": 1,
        "duplicates": 0,
        "ignored": 0,
    }
    batch = b'{"events": [%s, %s]}' % (view, view.replace(b"kitchen-1", b"garden-1"))
    assert events_twins(client, batch, WRITE).status_code == 202
    bad = b'{"events": [%s, {"customer_id": "x", "event_type": "nope"}]}' % view
    assert events_twins(client, bad, WRITE).status_code == 422
    for headers, status in (({}, 401), (READ, 403)):
        assert events_twins(client, view, headers).status_code == status
    # not plain JSON (NaN, which orjson refuses): the declared path reads the body again
    nan = b'{"customer_id": "c-1", "event_type": "search", "properties": {"x": NaN}}'
    assert "NaN" in events_twins(client, nan, WRITE).json()["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"k=10",
        b"k=10&context=home",
        b"k=&context",
        b"&&k=5&&",
        b"a=b=c&exclude=A,B&exclude=C",
        b"k=10;context=cart",
        b"category=caf\xe9&k=3",
        b"item_id=85123A%20&k=2",
        b"category=home+decor",
        b"=x&k",
    ],
)
def test_query_items_read_the_raw_query_as_starlette_does(raw: bytes) -> None:
    """The lean path's parameters off the raw query string: Starlette's, pair for pair."""
    request = Request({"type": "http", "query_string": raw, "headers": []})
    expected = Request({"type": "http", "query_string": raw, "headers": []}).query_params
    assert query_items(request) == expected.multi_items()
    assert query_list(request, "exclude") == expected.getlist("exclude")

"""Problem details (RFC 9457) for every error, and ``X-Request-ID`` on every response."""

from __future__ import annotations

import logging
import multiprocessing
import re

import pytest
from fastapi import FastAPI
from servingkit import READ, TestClient

from recsys.config import Settings
from serving.app import create_app
from serving.middleware import request_id_from

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}


def test_an_unknown_path_is_a_404_problem_with_the_request_id(client: TestClient) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert PROBLEM_FIELDS <= set(problem)
    assert problem["request_id"] == response.headers["x-request-id"]
    assert problem["instance"] == "/v2/nothing"


def test_a_wrong_method_is_a_405_problem_that_says_what_is_allowed(client: TestClient) -> None:
    response = client.post("/v1/popular", headers=READ)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["status"] == 405


def test_a_bad_json_body_is_a_422_problem(client: TestClient) -> None:
    response = client.put(
        "/v1/items/K1",
        content=b"{not json",
        headers={**READ, "X-API-Key": "write-key-0123456789", "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "json_invalid"


@pytest.fixture
def broken_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    return app


def test_an_unexpected_error_is_a_500_problem_that_leaks_nothing(
    broken_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(broken_app) as client, caplog.at_level(logging.ERROR, "recsys.errors"):
        response = client.get("/boom", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "trace-500"
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert response.json()["request_id"] == "trace-500"
    assert "trace-500" in caplog.text  # logged with its traceback, for the operators


def test_a_well_formed_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.DEF_4"})
    assert response.headers["x-request-id"] == "abc-123.DEF_4"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "<script>", "-leading-dash"])
def test_a_malformed_request_id_is_replaced(client: TestClient, bad: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def _new_request_id() -> str:
    return request_id_from([])


def test_made_request_ids_are_unique_within_and_across_processes() -> None:
    made = [request_id_from([]) for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)
    with multiprocessing.get_context("fork").Pool(2) as pool:  # forked: the same memory
        children = pool.starmap(_new_request_id, [()] * 4)
    assert not {child[:16] for child in children} & {made[0][:16]}  # each its own prefix


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    responses = [
        client.get("/v1/customers/kitchen-1/recommendations", headers=READ),
        client.get("/v1/customers/kitchen-1/recommendations?k=0", headers=READ),
        client.get("/v1/customers/kitchen-1/recommendations"),
        client.get("/v1/items/NOPE/similar", headers=READ),
        client.get("/metrics"),
    ]
    assert [r.status_code for r in responses] == [200, 422, 401, 404, 200]
    ids = {r.headers["x-request-id"] for r in responses}
    assert len(ids) == len(responses)


def _app_logging(settings: Settings, share: float) -> FastAPI:
    serving = settings.serving.model_copy(update={"access_log_sample": share})
    return create_app(settings.model_copy(update={"serving": serving}))


def test_the_access_log_redacts_customer_ids(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(_app_logging(settings, 1.0)) as client:
        with caplog.at_level(logging.INFO, "recsys.access"):
            client.get("/v1/customers/kitchen-1/recommendations", headers=READ)
            client.get("/v1/customers/garden-1", headers=READ)
    assert "/v1/customers/{customer_id}/recommendations" in caplog.text
    assert "kitchen-1" not in caplog.text and "garden-1" not in caplog.text


def test_the_access_log_is_off_by_default_and_samples_when_asked(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    def access_lines() -> int:
        return sum(1 for r in caplog.records if r.name == "recsys.access")

    with TestClient(create_app(settings)) as client:
        with caplog.at_level(logging.INFO, "recsys.access"):
            for _ in range(10):
                client.get("/v1/popular?k=1", headers=READ)
    assert access_lines() == 0
    caplog.clear()
    with TestClient(_app_logging(settings, 0.25)) as client:
        with caplog.at_level(logging.INFO, "recsys.access"):
            for _ in range(12):
                client.get("/v1/popular?k=1", headers=READ)
    assert access_lines() == 3  # every 4th request

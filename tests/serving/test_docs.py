"""The pages a browser opens: offline Swagger UI and ReDoc, the OpenAPI error schema, CORS."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from servingkit import READ, TestClient

from recsys.config import Settings
from serving.app import create_app
from serving.errors import PROBLEM_JSON

ALLOWED = "https://crm.example.com"


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize(
    ("page", "script", "marker"),
    [
        ("/docs", "swagger-ui-bundle.js", b"SwaggerUIBundle"),
        ("/redoc", "redoc.standalone.js", b"Redoc"),
    ],
)
def test_docs_pages_load_every_asset_from_this_server(client: TestClient, page, script, marker):
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = _asset_urls(response.text)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls)
    assert "http://" not in response.text and "https://" not in response.text
    scripts = [url for url in urls if url.endswith(".js")]
    assert len(scripts) == 1 and scripts[0].endswith("/" + script)
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1_000, url
    assert marker in client.get(scripts[0]).content


def test_swagger_page_points_at_the_served_schema(client: TestClient):
    assert "url: '/openapi.json'" in client.get("/docs").text
    assert client.get("/openapi.json").status_code == 200


def test_every_error_response_is_problem_json_in_the_schema(client: TestClient):
    schema = client.get("/openapi.json").json()
    errors = {
        (path, method, status): response
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status[0] in "45"
    }
    assert len(errors) > 40
    for where, response in errors.items():
        assert response["content"] == {
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, where
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_a_real_error_is_what_the_schema_declares(client: TestClient):
    schema = client.get("/openapi.json").json()
    declared = schema["paths"]["/v1/popular"]["get"]["responses"]["422"]["content"]
    response = client.get("/v1/popular?k=0", headers=READ)
    assert response.status_code == 422
    assert response.headers["content-type"] in declared
    required = schema["components"]["schemas"]["Problem"]["required"]
    assert set(required) <= set(response.json())


@pytest.fixture
def cors_client(settings: Settings) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"cors_origins": (ALLOWED,)})
    with TestClient(create_app(configured)) as test_client:
        yield test_client


def _preflight(client: TestClient, origin: str):
    return client.options(
        "/v1/popular",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )


def test_a_preflight_from_a_configured_origin_is_allowed(cors_client: TestClient):
    response = _preflight(cors_client, ALLOWED)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "x-api-key" in response.headers["access-control-allow-headers"].lower()
    answer = cors_client.get("/v1/popular?k=2", headers={**READ, "Origin": ALLOWED})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()


def test_another_origin_gets_no_cors_headers(cors_client: TestClient):
    response = _preflight(cors_client, "https://evil.example.net")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    answer = cors_client.get("/v1/popular?k=2", headers={**READ, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_without_configured_origins_there_is_no_cors(client: TestClient):
    response = _preflight(client, ALLOWED)
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    ("text", "origins"),
    [
        ("", ()),
        ("https://crm.example.com", ("https://crm.example.com",)),
        (
            " http://localhost:3000 , https://a.example ",
            ("http://localhost:3000", "https://a.example"),
        ),
        ("*", ("*",)),
    ],
)
def test_cors_origins_from_the_environment(monkeypatch, text, origins):
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", text)
    assert Settings().cors_origins == origins


@pytest.mark.parametrize("text", ["crm.example.com", "https://crm.example.com/", "ftp://x.example"])
def test_a_malformed_cors_origin_is_refused(monkeypatch, text):
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", text)
    with pytest.raises(ValueError, match="CORS origin"):
        Settings()

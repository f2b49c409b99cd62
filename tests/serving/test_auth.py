"""API keys and scopes; loopback-only service when no keys are configured."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from servingkit import ADMIN, READ, WRITE, TestClient, serve

from recsys.config import Settings
from recsys.errors import ForbiddenError, UnauthorizedError
from serving.app import create_app
from serving.auth import KeyRing, is_loopback

RECS = "/v1/customers/kitchen-1/recommendations"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.200.3.4", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("::", False),
        ("2001:db8::1", False),
        ("localhost", False),  # a name, not an address: the peer address is what counts
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_keyring_grants_the_scopes_of_the_matching_key() -> None:
    ring = KeyRing({"k" * 16: frozenset({"read"}), "a" * 16: frozenset({"admin"})})
    assert ring.authorize("k" * 16, "10.0.0.1").scopes == {"read"}
    admin = ring.authorize("a" * 16, None)
    assert admin.allows("write") and admin.allows("read") and admin.key_id
    assert "a" * 16 not in repr(admin)
    with pytest.raises(UnauthorizedError):
        ring.authorize(None, "127.0.0.1")  # keys configured: loopback needs one too
    with pytest.raises(UnauthorizedError):
        ring.authorize("k" * 15, "127.0.0.1")


def test_an_open_keyring_serves_loopback_only() -> None:
    ring = KeyRing({})
    assert ring.authorize(None, "127.0.0.1").allows("admin")
    with pytest.raises(ForbiddenError):
        ring.authorize(None, "10.0.0.1")


def test_no_key_is_a_401_problem(client: TestClient) -> None:
    response = client.get(RECS)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "X-API-Key" in response.headers["www-authenticate"]
    assert "X-API-Key" in response.json()["detail"]


def test_an_unknown_key_is_a_401(client: TestClient) -> None:
    assert client.get(RECS, headers={"X-API-Key": "not-a-real-key-at-all"}).status_code == 401


def test_a_key_without_the_scope_is_a_403(client: TestClient) -> None:
    response = client.get(RECS, headers=WRITE)
    assert response.status_code == 403
    assert "read" in response.json()["detail"]


def test_admin_implies_every_scope(client: TestClient) -> None:
    assert client.get(RECS, headers=ADMIN).status_code == 200
    assert client.put("/v1/items/K5", json={"price": 2.0}, headers=ADMIN).status_code == 200


def test_authentication_comes_before_validation(client: TestClient) -> None:
    assert client.get(RECS + "?k=0").status_code == 401


def test_health_and_metrics_need_no_key_when_keys_are_configured(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.fixture
def keyless(redis_url: str, redis_prefix: str, artifacts: Path) -> Settings:
    return Settings(redis_url=redis_url, redis_prefix=redis_prefix, artifacts=artifacts)


def test_without_keys_a_non_loopback_client_gets_403(keyless: Settings) -> None:
    app = create_app(keyless)
    with TestClient(app) as client:  # its client host is "testclient", not loopback
        for path in (RECS, "/v1/popular", "/healthz", "/metrics"):
            response = client.get(path)
            assert response.status_code == 403, path
            assert "loopback" in response.json()["detail"]
    with TestClient(app, client=("10.1.2.3", 40000)) as client:
        assert client.get(RECS).status_code == 403
    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        assert client.get(RECS).status_code == 200


def test_without_keys_a_real_loopback_connection_is_served(keyless: Settings) -> None:
    with serve(create_app(keyless), host="127.0.0.1") as base:
        response = httpx.get(base + RECS, timeout=10)
        assert response.status_code == 200
        assert response.json()["strategy"] == "personalized"
        assert httpx.get(base + RECS, headers=READ, timeout=10).status_code == 200

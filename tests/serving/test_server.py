"""``serving.server``: the loopback guard of ``run`` and the workers' app factory."""

from __future__ import annotations

from pathlib import Path

import pytest
from servingkit import READ, READ_KEY, TestClient

from feature_store.embedded import free_port
from recsys.config import Settings, get_settings
from recsys.errors import InvalidRequestError
from serving.server import app_factory, run


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_run_refuses_a_public_address_without_api_keys(host: str) -> None:
    with pytest.raises(InvalidRequestError, match="without API keys"):
        run(Settings(), host=host, port=free_port())


def test_the_worker_factory_builds_the_app_from_environment_settings(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_prefix: str, artifacts: Path
) -> None:
    """What each of several uvicorn workers runs (``serving.server:app_factory``)."""
    monkeypatch.setenv("RECSYS_REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("RECSYS_ARTIFACTS", str(artifacts))
    monkeypatch.setenv("RECSYS_API_KEYS", f"{READ_KEY}:read")
    get_settings.cache_clear()
    try:
        with TestClient(app_factory()) as client:
            response = client.get("/v1/customers/kitchen-1/recommendations", headers=READ)
            assert response.json()["strategy"] == "personalized"
            assert client.get("/v1/popular").status_code == 401
    finally:
        get_settings.cache_clear()

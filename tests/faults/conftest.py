"""Fixtures of the fault-injection tests: the serving tests' bundle, a supervised embedded Redis
of the test's own (with its append-only file) and the service on a real uvicorn server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from servingkit import API_KEYS, VERSION_1, make_bundle, serve  # noqa: E402

from feature_store.embedded import EmbeddedRedis  # noqa: E402
from recsys.bundle import write_bundle  # noqa: E402
from recsys.config import Settings  # noqa: E402
from serving.app import create_app  # noqa: E402


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis", persist=True) as server:
        yield server


@pytest.fixture
def service(tmp_path: Path, supervised: EmbeddedRedis) -> Iterator[str]:
    """The base URL of the service on the supervised store."""
    artifacts = tmp_path / "artifacts"
    write_bundle(make_bundle(VERSION_1), artifacts)
    settings = Settings(redis_url=supervised.url, artifacts=artifacts, api_keys=API_KEYS)
    with serve(create_app(settings)) as base:
        yield base

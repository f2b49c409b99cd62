"""Fixtures of the serving tests: the known-answer bundle on disk, settings, app, client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from servingkit import API_KEYS, VERSION_1, TestClient, make_bundle, make_offers_bundle

from recsys.bundle import write_bundle
from recsys.config import OffersConfig, Settings
from serving.app import create_app


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root holding one version of the known-answer bundle (read-only!)."""
    root = tmp_path_factory.mktemp("artifacts")
    write_bundle(make_bundle(VERSION_1), root)
    return root


@pytest.fixture
def settings(redis_url: str, redis_prefix: str, artifacts: Path) -> Settings:
    # no Thompson exploration: the known answers are the posterior mean's (the prior's, until
    # responses arrive); tests/serving/test_adaptive_offers.py turns it on
    return Settings(
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        artifacts=artifacts,
        api_keys=API_KEYS,
        offers=OffersConfig(explore_share=0.0),
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def offers_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root holding the offers bundle (customer intelligence in ``extra``)."""
    root = tmp_path_factory.mktemp("offers-artifacts")
    write_bundle(make_offers_bundle(), root)
    return root


@pytest.fixture
def offers_settings(settings: Settings, offers_artifacts: Path) -> Settings:
    return settings.model_copy(update={"artifacts": offers_artifacts})


@pytest.fixture
def offers_client(offers_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(offers_settings)) as test_client:
        yield test_client

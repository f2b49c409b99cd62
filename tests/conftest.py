"""Shared fixtures: a real Redis server for every run.

``RECSYS_TEST_REDIS_URL`` points the suite at an existing server (each test then works under
its own key prefix and deletes only its own keys); without it, one embedded ``redis-server`` is
started for the session on a free port.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/implicit load OpenBLAS

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest  # noqa: E402
import redis  # noqa: E402

from feature_store.embedded import EmbeddedRedis  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def ranker_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Compiled rankers go to a folder of the session, not the user's cache."""
    from recsys.config import get_settings

    folder = tmp_path_factory.mktemp("ranker-cache")
    previous = os.environ.get("RECSYS_SERVING__RANKER_CACHE")
    os.environ["RECSYS_SERVING__RANKER_CACHE"] = str(folder)
    get_settings.cache_clear()
    yield folder
    if previous is None:
        os.environ.pop("RECSYS_SERVING__RANKER_CACHE", None)
    else:
        os.environ["RECSYS_SERVING__RANKER_CACHE"] = previous
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("RECSYS_TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server.url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.exceptions.ConnectionError:
        pass  # a test that stopped its own server leaves nothing on the shared one
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


#: A deterministic sample of the UCI Online Retail data (CC BY 4.0): see tests/data/README.md.
RETAIL_SAMPLE = Path(__file__).resolve().parent / "data" / "online_retail_sample.csv.gz"


@pytest.fixture(scope="session")
def retail_sample_path() -> Path:
    """Real purchase data inside the repository: whole customers and some guest invoices of
    the UCI Online Retail file, with its quirks (``benchmarks/make_test_sample.py`` makes it)."""
    if not RETAIL_SAMPLE.is_file():
        pytest.fail(f"test data missing from the checkout: {RETAIL_SAMPLE}")
    return RETAIL_SAMPLE

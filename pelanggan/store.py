"""The store a command works on: the configured Redis, or an embedded server on the data folder.

Every command that needs the online store (``serve``, ``train``, ``export-events``, ``demo``)
opens it through :func:`redis_for`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from recsys.config import Settings

log = logging.getLogger("recsys")


@contextlib.contextmanager
def redis_for(settings: Settings, data_dir: Path) -> Iterator[Settings]:
    """Settings whose ``redis_url`` is reachable: the configured one, or an embedded server."""
    if settings.redis_url:
        yield settings
        return
    from feature_store.embedded import EmbeddedRedis

    with EmbeddedRedis(data_dir) as server:
        log.info("started embedded Redis on %s (data in %s)", server.url, data_dir)
        os.environ["RECSYS_REDIS_URL"] = server.url  # for worker processes
        try:
            yield settings.model_copy(update={"redis_url": server.url})
        finally:
            os.environ.pop("RECSYS_REDIS_URL", None)

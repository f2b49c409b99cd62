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

from pydantic import SecretStr

from recsys.config import Settings

log = logging.getLogger("recsys")


@contextlib.contextmanager
def redis_for(settings: Settings, data_dir: Path) -> Iterator[Settings]:
    """Settings whose ``redis_url`` is reachable: the configured one, or the embedded server of
    ``data_dir``: the one another process (a running ``serve`` or ``demo``) owns there, or one
    started, supervised and owned here (``feature_store.embedded``). Says which on stdout.

    On the embedded server, erasures rewrite its append-only file (``erase_rewrites_aof``) and,
    unless ``RECSYS_PRIVACY__ERASURE_KEY`` is set, the key of the erased set's digests is the one
    kept in ``erasure.key`` of the data folder (``feature_store.tombstones``), outside Redis.
    """
    if settings.redis_url:
        yield settings
        return
    from feature_store.embedded import embedded_redis

    with embedded_redis(data_dir, binary=settings.redis_server) as server:
        print(server.describe(data_dir), flush=True)
        secret = settings.privacy.erasure_key or _key_of(server.url, settings, data_dir)
        exported = {
            "RECSYS_REDIS_URL": server.url,
            "RECSYS_ERASE_REWRITES_AOF": "true",
            "RECSYS_PRIVACY__ERASURE_KEY": secret.get_secret_value(),
        }
        os.environ.update(exported)  # for worker processes
        privacy = settings.privacy.model_copy(update={"erasure_key": secret})
        try:
            yield settings.model_copy(
                update={"redis_url": server.url, "erase_rewrites_aof": True, "privacy": privacy}
            )
        finally:
            for name in exported:
                os.environ.pop(name, None)


def _key_of(url: str, settings: Settings, data_dir: Path) -> SecretStr:
    """The erasure key the embedded server's data folder keeps (``feature_store.tombstones``)."""
    from feature_store.connection import connect
    from feature_store.tombstones import embedded_key

    client = connect(url, timeout_ms=5000)
    try:
        return SecretStr(embedded_key(client, settings.redis_prefix, data_dir))
    finally:
        client.close()

"""``recsys export-events --out PATH``: the durable event stream as an events file.

Erased customers (``<p>:erased``, digests: ``feature_store.tombstones``) are left out even when
some of their events are still in the stream (an erasure whose stream purge did not finish), so
training on the file never sees them.
"""

from __future__ import annotations

from pathlib import Path

from feature_store.connection import RedisClient, connect
from feature_store.event_stream import export_stream
from feature_store.privacy import erased_customers
from feature_store.tombstones import ErasedSet, configured_key, resolve
from recsys.config import Settings
from recsys.errors import InvalidRequestError

#: Redis timeout of the export (a maintenance job, not the hot path).
EXPORT_TIMEOUT_MS = 30_000.0


def _url(settings: Settings) -> str:
    if not settings.redis_url:
        raise InvalidRequestError("no Redis URL: set RECSYS_REDIS_URL or start embedded Redis")
    return settings.redis_url


def export_events(settings: Settings, out: Path) -> int:
    """Write every event of the stream to ``out`` (CSV, gzip CSV when it ends ``.gz``), but
    those of erased customers.

    The file has the events-format columns, so ``recsys train --events out`` reads it.
    Returns the number of events written.
    """
    client = connect(_url(settings), timeout_ms=EXPORT_TIMEOUT_MS)
    try:
        erased = _erased(client, settings)
        return export_stream(client, settings.redis_prefix, Path(out), exclude=erased)
    finally:
        client.close()


def _erased(client: RedisClient, settings: Settings) -> ErasedSet:
    prefix = settings.redis_prefix
    return erased_customers(client, prefix, resolve(client, prefix, configured_key(settings)))


def erased_customer_ids(settings: Settings) -> ErasedSet:
    """The erased customers of the store at ``settings.redis_url`` (``id in erased``): what
    ``recsys train`` passes as ``train_bundle(..., exclude_customers=...)`` so an events file
    written before an erasure cannot bring them back into a model."""
    client = connect(_url(settings), timeout_ms=EXPORT_TIMEOUT_MS)
    try:
        return _erased(client, settings)
    finally:
        client.close()

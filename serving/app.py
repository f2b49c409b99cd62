"""The FastAPI application: ``create_app(settings)`` wires settings, store, model and routes.

The lifespan loads the newest model version under the artifacts directory, makes sure its
features are in the store (bulk-loading them once, with a maintenance timeout, when missing) and
builds the in-memory state. A missing model or an unreachable store does not stop the process:
it starts, answers recommendations with the fallback, and ``/readyz`` says 503 until both are
there. The embedded Redis of ``recsys demo`` / ``recsys serve`` is the CLI's business: here the
store comes from ``settings.redis_url`` or is passed in.

The lifespan also makes the process's one :class:`~feature_store.ingest.EventWriter` (on a
connection of its own with the longer write timeout, when there is a URL) and the page views'
reader (:class:`~feature_store.multiplexed.MultiplexedReader`, one multiplexed connection with
the serving timeout; redis.asyncio's :class:`~feature_store.async_store.AsyncFeatureReader` for a
cluster or TLS), so those routes read Redis on the event loop with no thread-pool hop, and closes
both on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from feature_store.ingest import EventWriter
from feature_store.offer_stats import OfferStats
from recsys.bundle import ModelBundle
from recsys.config import Settings
from recsys.errors import ModelUnavailableError, StoreUnavailableError
from recsys.store import AsyncFeatureReads, FeatureStore
from serving.auth import KeyRing
from serving.circuit import CircuitBreaker
from serving.errors import install_error_handlers
from serving.metrics import Metrics
from serving.middleware import RequestContextMiddleware
from serving.openapi import add_cors, make_app
from serving.routes import (
    customers,
    events,
    health,
    items,
    model,
    nba,
    offers,
    popular,
    recommendations,
)
from serving.state import ServingState

log = logging.getLogger("recsys.serving")

#: Redis timeout of the bulk load (the serving timeout is milliseconds; a load takes longer).
MAINTENANCE_TIMEOUT_MS = 30_000.0
#: Redis timeout of event writes: longer than a page view's, since a 1,000-event script takes
#: milliseconds and a timed-out write leaves the client unsure whether it was applied.
WRITE_TIMEOUT_MS = 2_000.0


def _loader(settings: Settings, store: FeatureStore | None) -> Callable[[ModelBundle], object]:
    """``ensure_loaded`` on the given store, or on a maintenance connection of our own."""
    from feature_store.bulk_load import ensure_loaded
    from feature_store.redis_store import RedisFeatureStore

    def load(bundle: ModelBundle) -> object:
        if store is not None:
            return ensure_loaded(store, bundle)  # type: ignore[arg-type]
        maintenance = RedisFeatureStore.from_settings(settings, timeout_ms=MAINTENANCE_TIMEOUT_MS)
        try:
            return ensure_loaded(maintenance, bundle)
        finally:
            maintenance.close()

    return load


def _open_store(settings: Settings) -> FeatureStore:
    from feature_store.redis_store import RedisFeatureStore

    return RedisFeatureStore.from_settings(settings)


def _open_reader(settings: Settings, store: FeatureStore | None) -> AsyncFeatureReads | None:
    """The page views' async client, on the running loop: the multiplexed reader for one server
    (``feature_store.multiplexed``), redis.asyncio for a cluster or TLS; None for a store passed
    in (its reads then run in worker threads: see ``serving.state.ThreadedReader``)."""
    if store is not None:
        return None
    from feature_store.async_store import AsyncFeatureReader
    from feature_store.multiplexed import MultiplexedReader

    url = settings.redis_url or ""
    if settings.serving.multiplexed_reader and MultiplexedReader.supports(url):
        return MultiplexedReader(
            url, settings.redis_prefix, timeout_ms=settings.serving.redis_timeout_ms
        )
    return AsyncFeatureReader.from_settings(settings)


def _open_event_writer(settings: Settings, store: FeatureStore) -> tuple[EventWriter, bool]:
    """The process's event writer, and whether it has a connection of its own (to close)."""
    from feature_store.connection import connect

    own = bool(settings.redis_url)
    client = (
        connect(settings.redis_url, timeout_ms=WRITE_TIMEOUT_MS)
        if settings.redis_url
        else store.client  # type: ignore[attr-defined]
    )
    prefix = getattr(store, "prefix", settings.redis_prefix)
    return EventWriter(client, prefix, settings.event_stream_maxlen), own


def _lifespan(
    settings: Settings, store: FeatureStore | None, artifacts: Path
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        log.info("process %d serving on the %s event loop", os.getpid(), loop)
        the_store = store if store is not None else _open_store(settings)
        reader = _open_reader(settings, store)
        metrics: Metrics = app.state.metrics
        serving = ServingState(
            artifacts,
            the_store,
            _loader(settings, store),
            on_swap=metrics.set_model_version,
            reader=reader,
            breaker=CircuitBreaker(
                failure_threshold=settings.serving.circuit_failures,
                open_s=settings.serving.circuit_open_s,
            ),
        )
        app.state.serving = serving
        writer, own_writer = _open_event_writer(settings, the_store)
        app.state.event_writer = writer
        app.state.offer_stats = OfferStats(writer.client, writer.prefix)  # serving.adaptive
        try:
            await anyio.to_thread.run_sync(serving.load_latest)
        except (ModelUnavailableError, StoreUnavailableError) as exc:
            log.warning("starting degraded (fallback answers, not ready): %s", exc)
        try:
            yield
        finally:
            if reader is not None:
                await reader.aclose()
            if own_writer:
                writer.client.close()
            close = getattr(the_store, "close", None)
            if store is None and close is not None:
                close()

    return lifespan


def create_app(
    settings: Settings, *, store: FeatureStore | None = None, bundle_dir: Path | None = None
) -> FastAPI:
    """The service. ``store`` overrides the Redis store built from ``settings.redis_url`` (the
    caller then owns it); ``bundle_dir`` overrides ``settings.artifacts`` as the directory whose
    newest version is served."""
    app = make_app(
        title="Pelanggan",
        summary="Real-time personalization and recommendations",
        version="1",
        lifespan=_lifespan(settings, store, bundle_dir or settings.artifacts),
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.api_keys)
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=app.state.metrics,
        access_log_sample=settings.serving.access_log_sample,
    )
    add_cors(app, settings)  # outermost: a preflight is answered before anything else runs
    routers = (recommendations, popular, items, customers, offers, nba, events, model, health)
    for module in routers:
        app.include_router(module.router)
    return app

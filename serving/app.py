"""The FastAPI application: ``create_app(settings)`` wires settings, store, model and routes.

The lifespan loads the newest model version under the artifacts directory, makes sure its
features are in the store (bulk-loading them once, with a maintenance timeout, when missing) and
builds the in-memory state. A missing model or an unreachable store does not stop the process:
it starts, answers recommendations with the fallback, and ``/readyz`` says 503 until both are
there. The embedded Redis of ``recsys demo`` / ``recsys serve`` is the CLI's business: here the
store comes from ``settings.redis_url`` or is passed in.

The lifespan also makes the process's one event writer -- an
:class:`~feature_store.ingest.AsyncEventWriter` on an asyncio client of its own with the longer
write timeout when there is a URL (``POST /v1/events`` then awaits Redis on the event loop), else
a sync :class:`~feature_store.ingest.EventWriter` on the store passed in (run in a worker
thread) -- and the page views' reader (:class:`~feature_store.multiplexed.MultiplexedReader`,
one multiplexed connection with the serving timeout; redis.asyncio's
:class:`~feature_store.async_store.AsyncFeatureReader` for a cluster or TLS), so those routes
read Redis on the event loop with no thread-pool hop, and closes both on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from feature_store.ingest import AsyncEventWriter, EventWriter
from feature_store.ingest_groups import IngestGroups
from feature_store.offer_stats import OfferStats
from feature_store.tombstones import Resolver, configured_key
from recsys.bundle import ModelBundle
from recsys.config import Settings
from recsys.errors import ModelUnavailableError, StoreUnavailableError
from recsys.store import AsyncFeatureReads, FeatureStore
from serving.answer_cache import AnswerCache
from serving.auth import KeyRing
from serving.circuit import CircuitBreaker
from serving.email_items import StoreFormat
from serving.errors import install_error_handlers
from serving.fast_path import FastPath
from serving.heap import settle_heap
from serving.metrics import Metrics
from serving.middleware import BodyLimitMiddleware, RequestContextMiddleware
from serving.openapi import add_cors, make_app
from serving.openapi_limits import install_openapi
from serving.routes import (
    customers,
    events,
    health,
    items,
    model,
    nba,
    offers,
    overview,
    popular,
    recommendations,
    ui,
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

    compact, max_history = settings.serving.compact_vectors, settings.serving.max_history_items

    def load(bundle: ModelBundle) -> object:
        if store is not None:
            given: Any = store
            return ensure_loaded(given, bundle, compact=compact, max_history=max_history)
        maintenance = RedisFeatureStore.from_settings(settings, timeout_ms=MAINTENANCE_TIMEOUT_MS)
        try:
            return ensure_loaded(maintenance, bundle, compact=compact, max_history=max_history)
        finally:
            maintenance.close()

    return load


def _open_store(settings: Settings) -> FeatureStore:
    from feature_store.redis_store import RedisFeatureStore

    return RedisFeatureStore.from_settings(settings)


def _open_bulk_reads(settings: Settings, store: FeatureStore | None) -> FeatureStore:
    """The store on a client with :attr:`ServingConfig.bulk_read_timeout_ms` (the offers
    batch and export); a store passed in is used as it is."""
    if store is not None:
        return store
    from feature_store.redis_store import RedisFeatureStore

    return RedisFeatureStore.from_settings(
        settings, timeout_ms=settings.serving.bulk_read_timeout_ms
    )


def _open_reader(settings: Settings, store: FeatureStore | None) -> AsyncFeatureReads | None:
    """The page views' async client, on the running loop: the multiplexed reader for one server
    (``feature_store.multiplexed``), redis.asyncio for a cluster or TLS; None for a store passed
    in (its reads then run in worker threads: see ``serving.threaded_reader.ThreadedReader``)."""
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


def _open_event_writer(
    settings: Settings, store: FeatureStore, passed_in: bool
) -> AsyncEventWriter | EventWriter:
    """The process's event writer: asyncio on a connection of its own, on the running loop;
    sync on the client of a store passed in."""
    prefix = getattr(store, "prefix", settings.redis_prefix)
    ttl_s = settings.serving.event_id_ttl_days * 86_400.0
    max_ids = settings.serving.max_event_ids
    # the store's digests of erased customers (it migrates an older erased set first)
    key, of_store = configured_key(settings), (lambda: store.tombstones)  # type: ignore[attr-defined]
    if settings.redis_url and not passed_in:
        from feature_store.async_store import connect_async
        from feature_store.multiplexed import Address, MultiplexedConnection, MultiplexedReader

        url = settings.redis_url
        client = connect_async(url, timeout_ms=WRITE_TIMEOUT_MS)
        multiplexed = None
        if settings.serving.multiplexed_reader and MultiplexedReader.supports(url):
            multiplexed = MultiplexedConnection(
                Address.from_url(url), timeout_s=WRITE_TIMEOUT_MS / 1000
            )
        return AsyncEventWriter(
            client,
            prefix,
            settings.event_stream_maxlen,
            multiplexed=multiplexed,
            event_id_ttl_s=ttl_s,
            max_event_ids=max_ids,
            tombstones=Resolver(client, prefix, key, of_store),
        )
    return EventWriter(
        store.client,  # type: ignore[attr-defined]
        prefix,
        settings.event_stream_maxlen,
        event_id_ttl_s=ttl_s,
        max_event_ids=max_ids,
        tombstones=Resolver(store.client, prefix, key, of_store),  # type: ignore[attr-defined]
    )


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

        def swapped(version: str) -> None:
            metrics.set_model_version(version)
            settle_heap()  # the new version's objects out of the collector's way

        serving = ServingState(
            artifacts,
            the_store,
            _loader(settings, store),
            on_swap=swapped,
            reader=reader,
            observe_read=metrics.observe_redis_read,
            store_format=(
                StoreFormat(settings.serving.compact_vectors, settings.serving.max_history_items)
                if settings.serving.email_items
                else None
            ),
            breaker=CircuitBreaker(
                failure_threshold=settings.serving.circuit_failures,
                open_s=settings.serving.circuit_open_s,
            ),
        )
        app.state.serving = serving
        app.state.answer_cache = AnswerCache(
            settings.serving.answer_cache_ttl_s,
            getattr(the_store, "prefix", settings.redis_prefix),
            metrics,
            salt=b"retrieval_min_items=%d" % settings.serving.retrieval_min_items,
        )
        app.state.bulk_reads = _open_bulk_reads(settings, store)
        writer = _open_event_writer(settings, the_store, store is not None)
        app.state.event_writer = writer
        # single events of a customer being written go in one grouped write (ingest_groups)
        app.state.event_groups = (
            IngestGroups(writer) if isinstance(writer, AsyncEventWriter) else None
        )
        # the counts of adaptive offers (serving.adaptive; the event write counts the events'),
        # on the bulk reads' client: an offers batch reserves budgets for up to 1,000 customers
        app.state.offer_stats = OfferStats(app.state.bulk_reads.client, settings.redis_prefix)
        try:
            await anyio.to_thread.run_sync(serving.load_latest)
        except (ModelUnavailableError, StoreUnavailableError) as exc:
            log.warning("starting degraded (fallback answers, not ready): %s", exc)
        if reader is not None:  # connected now, not under the first page views' timeout
            await reader.ping()
        try:
            yield
        finally:
            if reader is not None:
                await reader.aclose()
            if isinstance(writer, AsyncEventWriter):
                await writer.aclose()
            for opened in (the_store, app.state.bulk_reads):
                close = getattr(opened, "close", None)
                if store is None and close is not None:
                    close()
            metrics.close()

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
    app.add_middleware(  # innermost: inside the request context, before the router
        FastPath,
        pattern=r"/v1/customers/(?P<customer_id>[^/]+)/recommendations",
        template="/v1/customers/{customer_id}/recommendations",
        handler=recommendations.lean_recommendations,
        routes=recommendations.router.routes,
    )
    app.add_middleware(
        FastPath,
        pattern=r"/v1/events",
        template="/v1/events",
        handler=events.lean_events,
        routes=events.router.routes,
        method="POST",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serving.max_body_bytes)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=app.state.metrics,
        access_log_sample=settings.serving.access_log_sample,
    )
    add_cors(app, settings)  # outermost: a preflight is answered before anything else runs
    routers = (
        recommendations, popular, items, customers, offers, nba, events, model, overview, health, ui
    )  # fmt: skip
    for module in routers:
        app.include_router(module.router)
    install_openapi(app, settings)
    return app

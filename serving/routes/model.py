"""The served model: ``GET /v1/model`` and ``POST /v1/admin/reload``."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from serving.adaptive import offer_stats
from serving.auth import Principal, require
from serving.offer_models import OfferStats
from serving.profile_models import ModelInfo, Reloaded, SampleIds, TrainingData
from serving.routes.common import (
    MetricsDep,
    ServingDep,
    json_response,
    problems,
    require_snapshot,
)

router = APIRouter(tags=["model"])


@router.get(
    "/v1/model",
    summary="The served model version",
    response_model=ModelInfo,
    responses=problems(401, 403, 503),
)
async def get_model(
    serving: ServingDep, _: Annotated[Principal, Depends(require("read"))]
) -> ModelInfo:
    """The active version: when and on what data it was trained, and its offline metrics."""
    model = require_snapshot(serving.snapshot).model
    manifest = model.manifest
    return ModelInfo(
        version=manifest.version,
        created_at=manifest.created_at,
        loaded_at=model.loaded_at,
        trained_on=TrainingData.model_validate(manifest.data, from_attributes=True),
        counts=manifest.counts,
        metrics=manifest.metrics,
        params=manifest.params,
        training_seconds=manifest.training_seconds,
        n_items=model.n_items,
        n_customers=model.n_customers,
        ranker_evaluator=model.ranker_evaluators,
    )


@router.get(
    "/v1/model/sample-ids",
    summary="Ids the served version knows, for load tests",
    response_model=SampleIds,
    responses=problems(401, 403, 422, 503),
)
async def sample_ids(
    serving: ServingDep,
    _: Annotated[Principal, Depends(require("read"))],
    n: Annotated[int, Query(ge=1, le=1000, description="ids of each kind, at most")] = 100,
    seed: Annotated[
        int | None, Query(ge=0, description="the same seed, the same sample (default: random)")
    ] = None,
) -> SampleIds:
    """A sample of the customer and product ids the active version knows, so that a load test
    or a smoke check pointed at this server uses ids that exist here (read-only)."""
    model = require_snapshot(serving.snapshot).model
    rng = np.random.default_rng(seed)
    customers = model.customer_ids
    products = np.flatnonzero(model.is_product)
    picked = rng.choice(len(customers), min(n, len(customers)), replace=False)
    items = products[rng.choice(len(products), min(n, len(products)), replace=False)]
    ranked = np.argsort(-model.popular_score, kind="stable")
    popular = ranked[model.is_product[ranked]][:n]
    return SampleIds(
        model_version=model.version,
        customer_ids=[str(customers[i]) for i in np.sort(picked)],
        item_ids=[model.item_ids[i] for i in np.sort(items)],
        popular_item_ids=[model.item_ids[i] for i in popular],
    )


@router.post(
    "/v1/admin/reload",
    summary="Switch to the newest model version",
    response_model=Reloaded,
    responses=problems(401, 403, 503),
)
async def reload_model(
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require("admin"))],
) -> Reloaded:
    """Switch to the newest version under the artifacts directory (its features are loaded
    into the store first) and make it the store's active version; requests in flight finish on
    the version they started with. Every other serving process switches to it on its next
    page view."""
    try:
        previous, snapshot = await anyio.to_thread.run_sync(serving.load_latest)
    except Exception:
        metrics.reloads.labels("failed").inc()
        raise
    metrics.reloads.labels("ok").inc()  # the served-version gauge follows every swap
    return Reloaded(
        previous_version=previous,
        version=snapshot.version,
        changed=previous != snapshot.version,
    )


@router.get(
    "/v1/model/offer-stats",
    summary="What the adaptive offers learned",
    response_model=OfferStats,
    responses=problems(401, 403, 503),
)
async def get_offer_stats(
    request: Request, serving: ServingDep, _: Annotated[Principal, Depends(require("read"))]
) -> Response:
    """What the adaptive offers learned: per offer and context cell (``segment|journey
    stage|channel``) the sends, responses, clicks and dismissals counted so far. Kept per offer
    id in the store, not per model version: it survives a reload."""
    snapshot = require_snapshot(serving.snapshot)
    offer_set = snapshot.model.customer_models.offer_set
    counts = await anyio.to_thread.run_sync(offer_stats(request.app).export, offer_set)
    settings = request.app.state.settings.offers
    return json_response(
        {
            "adaptive": settings.adaptive,
            "prior_strength": settings.prior_strength,
            "explore_share": settings.explore_share,
            "offers": counts,
        }
    )

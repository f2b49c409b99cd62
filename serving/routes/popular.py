"""``GET /v1/popular``: best sellers and trending items, for anyone."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from serving.auth import Principal, authorize, require
from serving.metrics import Metrics
from serving.models import CATEGORY_PATTERN, PopularItems
from serving.recommend import popular, serialize_items
from serving.routes.common import (
    K,
    LeanRoute,
    MetricsDep,
    ServingDep,
    json_response,
    lean_k,
    lean_params,
    lean_path,
    problems,
)
from serving.state import ServingState

router = APIRouter(tags=["recommendations"], route_class=LeanRoute)
READ = ("read",)
_CATEGORY = re.compile(CATEGORY_PATTERN)


async def answer(serving: ServingState, metrics: Metrics, k: int, category: str | None) -> Response:
    snapshot = await serving.current_async()
    body: dict[str, object] = {"category": category, "items": [], "model_version": None}
    if snapshot is None:
        metrics.count_fallback("model_unavailable")
    else:
        ranked = popular(snapshot, k, category)
        body["items"] = serialize_items(snapshot.catalog, snapshot.model.item_ids, ranked)
        body["model_version"] = snapshot.version
    return json_response(body)


async def lean_popular(request: Request) -> Response | None:
    authorize(request, READ)
    params = lean_params(request, ("k", "category"))
    if params is None:
        return None
    k = lean_k(request, params.get("k"))
    category = params.get("category")
    if k is None or (category is not None and not _CATEGORY.fullmatch(category)):
        return None
    return await answer(request.app.state.serving, request.app.state.metrics, k, category)


@router.get(
    "/v1/popular",
    summary="Best sellers and trending items",
    response_model=PopularItems,
    responses=problems(401, 403, 422),
)
@lean_path(lean_popular)
async def get_popular(
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require(*READ))],
    k: K,
    category: Annotated[
        str | None,
        Query(
            pattern=CATEGORY_PATTERN,
            description="only items of this catalogue category (exact match); none: every category",
        ),
    ] = None,
) -> Response:
    """Best sellers blended with what is trending; an unknown category gives an empty list."""
    return await answer(serving, metrics, k, category)

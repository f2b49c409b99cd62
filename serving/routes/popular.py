"""``GET /v1/popular``: best sellers and trending items, for anyone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from serving.auth import Principal, require
from serving.models import CATEGORY_PATTERN, PopularItems
from serving.recommend import popular, serialize_items
from serving.routes.common import K, MetricsDep, ServingDep, json_response, problems

router = APIRouter(tags=["recommendations"])


@router.get("/v1/popular", response_model=PopularItems, responses=problems(401, 403, 422))
def get_popular(
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require("read"))],
    k: K,
    category: Annotated[str | None, Query(pattern=CATEGORY_PATTERN)] = None,
) -> Response:
    """Best sellers blended with what is trending; an unknown category gives an empty list."""
    snapshot = serving.current()
    body: dict[str, object] = {"category": category, "items": [], "model_version": None}
    if snapshot is None:
        metrics.fallbacks.labels("model_unavailable").inc()
    else:
        ranked = popular(snapshot, k, category)
        body["items"] = serialize_items(snapshot.catalog, snapshot.model.item_ids, ranked)
        body["model_version"] = snapshot.version
    return json_response(body)

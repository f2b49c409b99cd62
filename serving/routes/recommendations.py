"""``GET /v1/customers/{customer_id}/recommendations``: the page-view hot path."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response

from serving.auth import Principal, require
from serving.models import CATEGORY_PATTERN, ITEM_ID_PATTERN, Context, Recommendations
from serving.recommend import RecommendationQuery, recommend, serialize_items
from serving.routes.common import CustomerId, K, MetricsDep, ServingDep, json_response, problems

router = APIRouter(tags=["recommendations"])

#: At most this many excluded ids per request (after splitting comma-separated values).
MAX_EXCLUDE = 500
_ITEM_ID = re.compile(ITEM_ID_PATTERN)


class RecommendationParams(BaseModel):
    context: Context = Field(default="home", description="the page: home, product, cart, email")
    item_id: str | None = Field(
        default=None, pattern=ITEM_ID_PATTERN, description="the product on a product page"
    )
    exclude_purchased: bool = True
    exclude: list[str] = Field(
        default_factory=list,
        description="item ids never to return: repeat the parameter "
        "(`exclude=A&exclude=B`), separate them with commas (`exclude=A,B`), or both",
    )
    category: str | None = Field(default=None, pattern=CATEGORY_PATTERN)

    @field_validator("exclude")
    @classmethod
    def _split_exclude(cls, values: list[str]) -> list[str]:
        ids = [part.strip() for value in values for part in value.split(",")]
        ids = [item_id for item_id in ids if item_id]
        if len(ids) > MAX_EXCLUDE:
            raise ValueError(f"at most {MAX_EXCLUDE} item ids, got {len(ids)}")
        bad = next((item_id for item_id in ids if not _ITEM_ID.match(item_id)), None)
        if bad is not None:
            raise ValueError(f"invalid item id {bad[:50]!r}")
        return ids

    def to_query(self, k: int) -> RecommendationQuery:
        return RecommendationQuery(
            k=k,
            context=self.context,
            item_id=self.item_id,
            exclude_purchased=self.exclude_purchased,
            exclude=tuple(self.exclude),
            category=self.category,
        )


@router.get(
    "/v1/customers/{customer_id}/recommendations",
    response_model=Recommendations,
    responses=problems(401, 403, 422),
)
def get_recommendations(
    customer_id: CustomerId,
    params: Annotated[RecommendationParams, Query()],
    k: K,
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require("read"))],
) -> Response:
    """Ranked items for this customer on this page; never an error for a known-good request:
    an unknown customer gets ``cold_start``, a slow or absent store gets ``fallback``."""
    read = serving.read_customer(customer_id)
    body: dict[str, object] = {"customer_id": customer_id, "context": params.context}
    if read.fallback_reason is not None:
        metrics.fallbacks.labels(read.fallback_reason).inc()
    if read.snapshot is None:
        strategy, items, version = "fallback", [], None
    else:
        strategy, ranked = recommend(read.snapshot, read.customer, params.to_query(k))
        items = serialize_items(read.snapshot.catalog, read.snapshot.model.item_ids, ranked)
        version = read.snapshot.version
    metrics.recommendations.labels("recommendations", strategy).inc()
    body.update(items=items, strategy=strategy, model_version=version)
    return json_response(body)

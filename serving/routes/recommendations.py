"""``GET /v1/customers/{customer_id}/recommendations``: the page-view hot path."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response

from recsys.schema import is_item_id
from serving.answer_cache import AnswerCache
from serving.auth import Principal, authorize, require
from serving.metrics import Metrics
from serving.models import CATEGORY_PATTERN, ITEM_ID_PATTERN, Context, Recommendations
from serving.recommend import Ranked, RecommendationQuery, recommend, serialize_items
from serving.routes.common import (
    CUSTOMER_ID,
    CustomerId,
    K,
    LeanRoute,
    MetricsDep,
    ServingDep,
    json_bytes,
    json_response,
    lean_k,
    lean_params,
    lean_path,
    problems,
    query_list,
)
from serving.state import ServingState, Snapshot

router = APIRouter(tags=["recommendations"], route_class=LeanRoute)

#: At most this many excluded ids per request (after splitting comma-separated values).
MAX_EXCLUDE = 500
_CATEGORY = re.compile(CATEGORY_PATTERN)
CONTEXTS: frozenset[str] = frozenset(get_args(Context))
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
_SCALARS = ("k", "context", "item_id", "exclude_purchased", "category")
READ = ("read",)


def split_exclude(values: list[str]) -> list[str]:
    """The excluded ids of the repeated, comma-separated ``exclude`` values; ValueError when
    there are too many or one is malformed."""
    ids = [part.strip() for value in values for part in value.split(",")]
    ids = [item_id for item_id in ids if item_id]
    if len(ids) > MAX_EXCLUDE:
        raise ValueError(f"at most {MAX_EXCLUDE} item ids, got {len(ids)}")
    bad = next((item_id for item_id in ids if not is_item_id(item_id)), None)
    if bad is not None:
        raise ValueError(f"invalid item id {bad[:50]!r}")
    return ids


class RecommendationParams(BaseModel):
    context: Context = Field(default="home", description="the page: home, product, cart, email")
    item_id: str | None = Field(
        default=None, pattern=ITEM_ID_PATTERN, description="the product on a product page"
    )
    exclude_purchased: bool = Field(
        default=True, description="leave out what the customer bought (false: buy-again items too)"
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="item ids never to return: repeat the parameter "
        "(`exclude=A&exclude=B`), separate them with commas (`exclude=A,B`), or both",
    )
    category: str | None = Field(
        default=None,
        pattern=CATEGORY_PATTERN,
        description="only items of this catalogue category (exact match); none: every category",
    )

    @field_validator("exclude")
    @classmethod
    def _split_exclude(cls, values: list[str]) -> list[str]:
        return split_exclude(values)

    def to_query(self, k: int) -> RecommendationQuery:
        return RecommendationQuery(
            k=k,
            context=self.context,
            item_id=self.item_id,
            exclude_purchased=self.exclude_purchased,
            exclude=tuple(self.exclude),
            category=self.category,
        )


def lean_query(request: Request) -> RecommendationQuery | None:
    """The query of a plainly valid request, read as :class:`RecommendationParams` and
    :func:`~serving.routes.common.k_param` read it; None for anything else (the declared path
    then validates it)."""
    params = lean_params(request, _SCALARS)
    if params is None:
        return None
    k = lean_k(request, params.get("k"))
    context = params.get("context", "home")
    item_id = params.get("item_id")
    exclude_purchased = _BOOLEANS.get(params.get("exclude_purchased", "true"))
    category = params.get("category")
    if (
        k is None
        or context not in CONTEXTS
        or exclude_purchased is None
        or (item_id is not None and not is_item_id(item_id))
        or (category is not None and not _CATEGORY.fullmatch(category))
    ):
        return None
    try:
        exclude = split_exclude(query_list(request, "exclude"))
    except ValueError:
        return None
    return RecommendationQuery(
        k=k,
        context=context,
        item_id=item_id,
        exclude_purchased=exclude_purchased,
        exclude=tuple(exclude),
        category=category,
    )


async def answer(
    serving: ServingState,
    metrics: Metrics,
    customer_id: str,
    query: RecommendationQuery,
    cache: AnswerCache,
) -> Response:
    signature = cache.signature(query)
    read = await serving.read_customer_async(customer_id, signature)
    if read.answer is not None and read.snapshot is not None:  # the stored answer's tag matched
        snapshot = read.snapshot
        rendered = cache.hit_rendered(read, lambda ranked: _items_json(snapshot, ranked))
        if rendered is not None:
            strategy, items_json = rendered
            metrics.count_recommendation("recommendations", strategy)
            return _hit_response(customer_id, query.context, items_json, strategy, snapshot)
        again = await serving.read_customer_async(customer_id)  # a body this code cannot read
        read = replace(again, live_revision=read.live_revision)  # the write-back's condition
        stored = None
    else:
        stored = cache.hit(read) if signature is not None else None  # counts the miss
    body: dict[str, object] = {"customer_id": customer_id, "context": query.context}
    if read.fallback_reason is not None:
        metrics.count_fallback(read.fallback_reason)
    if read.snapshot is None:
        strategy, items, version = "fallback", [], None
    else:
        if stored is not None:
            strategy, ranked = stored
        else:
            strategy, ranked = recommend(read.snapshot, read.customer, query)
            if signature is not None:
                cache.write_back(serving, customer_id, read, signature, strategy, ranked)
        items = serialize_items(read.snapshot.catalog, read.snapshot.model.item_ids, ranked)
        version = read.snapshot.version
    metrics.count_recommendation("recommendations", strategy)
    body.update(items=items, strategy=strategy, model_version=version)
    return json_response(body)


def _items_json(snapshot: Snapshot, ranked: Ranked) -> bytes:
    return json_bytes(serialize_items(snapshot.catalog, snapshot.model.item_ids, ranked))


def _hit_response(
    customer_id: str, context: str, items_json: bytes, strategy: str, snapshot: Snapshot
) -> Response:
    """The body :func:`answer` dumps as a whole, spliced from its parts (the same bytes)."""
    body = b'{"customer_id":%s,"context":%s,"items":%s,"strategy":%s,"model_version":%s}' % (
        json_bytes(customer_id),
        json_bytes(context),
        items_json,
        json_bytes(strategy),
        json_bytes(snapshot.version),
    )
    return Response(body, media_type="application/json")


async def lean_recommendations(request: Request) -> Response | None:
    authorize(request, READ)
    customer_id: str = request.path_params["customer_id"]
    query = lean_query(request) if CUSTOMER_ID.fullmatch(customer_id) else None
    if query is None:
        return None
    state = request.app.state
    return await answer(state.serving, state.metrics, customer_id, query, state.answer_cache)


@router.get(
    "/v1/customers/{customer_id}/recommendations",
    summary="Recommendations for a page view or an email",
    response_model=Recommendations,
    responses=problems(401, 403, 422),
)
@lean_path(lean_recommendations)
async def get_recommendations(
    customer_id: CustomerId,
    params: Annotated[RecommendationParams, Query()],
    k: K,
    serving: ServingDep,
    metrics: MetricsDep,
    request: Request,
    _: Annotated[Principal, Depends(require(*READ))],
) -> Response:
    """Ranked items for this customer on this page; never an error for a known-good request:
    an unknown customer gets ``cold_start``, a slow or absent store gets ``fallback``."""
    cache = request.app.state.answer_cache
    return await answer(serving, metrics, customer_id, params.to_query(k), cache)

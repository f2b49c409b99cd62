"""Items: ``GET /v1/items/{id}/similar``, ``GET /v1/items/{id}`` and ``PUT /v1/items/{id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from recsys.errors import NotFoundError
from serving.auth import Principal, authorize, require
from serving.metrics import Metrics
from serving.model_state import Snapshot
from serving.models import Item, ItemUpdate, SimilarItems
from serving.recommend import serialize_items, similar
from serving.routes.common import (
    ITEM_ID,
    ItemId,
    K,
    LeanRoute,
    MetricsDep,
    ServingDep,
    json_response,
    lean_k,
    lean_params,
    lean_path,
    problems,
    require_snapshot,
)
from serving.state import ServingState

router = APIRouter(tags=["items"], route_class=LeanRoute)
READ = ("read",)


def _item(snapshot: Snapshot, item_id: str) -> Item:
    row = snapshot.model.row_of.get(item_id)
    if row is None:
        raise NotFoundError("item", item_id)
    return Item(
        item_id=item_id, revision=snapshot.catalog.revision, **snapshot.catalog.describe(row)
    )


async def answer_similar(serving: ServingState, metrics: Metrics, item_id: str, k: int) -> Response:
    snapshot = require_snapshot(await serving.current_async())
    ranked = similar(snapshot, item_id, k)
    items = serialize_items(snapshot.catalog, snapshot.model.item_ids, ranked)
    metrics.count_recommendation("similar", "personalized")
    return json_response({"item_id": item_id, "items": items, "model_version": snapshot.version})


async def lean_similar(request: Request) -> Response | None:
    authorize(request, READ)
    item_id: str = request.path_params["item_id"]
    params = lean_params(request, ("k",))
    k = lean_k(request, params.get("k")) if params is not None else None
    if k is None or not ITEM_ID.fullmatch(item_id):
        return None
    return await answer_similar(request.app.state.serving, request.app.state.metrics, item_id, k)


@router.get(
    "/v1/items/{item_id}/similar",
    summary="Items bought together with this one",
    response_model=SimilarItems,
    responses=problems(401, 403, 404, 422, 503),
)
@lean_path(lean_similar)
async def get_similar_items(
    item_id: ItemId,
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require(*READ))],
    k: K,
) -> Response:
    """ "Customers who bought this also bought": never hidden, out-of-stock or non-product items."""
    return await answer_similar(serving, metrics, item_id, k)


@router.get(
    "/v1/items/{item_id}",
    summary="An item as served now",
    response_model=Item,
    responses=problems(401, 403, 404, 503),
)
async def get_item(
    item_id: ItemId,
    serving: ServingDep,
    _: Annotated[Principal, Depends(require("read"))],
) -> Item:
    """The item as the service sees it now: the model's catalogue with every change applied."""
    return _item(require_snapshot(await serving.current_async()), item_id)


@router.put(
    "/v1/items/{item_id}",
    summary="Change an item's catalogue entry",
    response_model=Item,
    responses=problems(401, 403, 404, 422, 503),
)
def put_item(
    item_id: ItemId,
    update: ItemUpdate,
    serving: ServingDep,
    _: Annotated[Principal, Depends(require("write", "admin"))],
) -> Item:
    """Change an item's catalogue entry; every serving process applies it on its next request.

    Fields left out keep their current value. The item must be in the served model's catalogue
    (404 otherwise: a model cannot recommend an item it was not trained on).
    """
    snapshot = require_snapshot(serving.current())
    current = _item(snapshot, item_id)
    fields = current.model_dump(include={"title", "category", "price", "in_stock", "hidden"})
    fields.update(update.model_dump(exclude_unset=True))
    revision = serving.store.set_item_override(item_id, fields)
    return _item(serving.sync_catalog(snapshot, revision), item_id)

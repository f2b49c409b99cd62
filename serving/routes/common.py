"""What every route module shares: typed path/query parameters, app-state dependencies, orjson."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from recsys.errors import ModelUnavailableError
from serving.metrics import Metrics
from serving.models import CUSTOMER_ID_PATTERN, ITEM_ID_PATTERN, Problem
from serving.state import ServingState, Snapshot

CustomerId = Annotated[
    str, Path(pattern=CUSTOMER_ID_PATTERN, description="the customer's id, e.g. 17850")
]
ItemId = Annotated[str, Path(pattern=ITEM_ID_PATTERN, description="the item's id, e.g. 85123A")]


def k_param(
    request: Request,
    k: Annotated[
        int | None,
        Query(
            ge=1,
            description="how many items: 1 to `serving.max_k` (100 unless configured); "
            "default `serving.default_k` (10 unless configured)",
        ),
    ] = None,
) -> int:
    """``k`` within the configured limits (``settings.serving.default_k`` / ``max_k``)."""
    limits = request.app.state.settings.serving
    max_k = int(limits.max_k)
    if k is None:
        return min(int(limits.default_k), max_k)
    if k > max_k:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("query", "k"),
                    "msg": f"Input should be less than or equal to {max_k}",
                    "input": k,
                    "ctx": {"le": max_k},
                }
            ]
        )
    return k


K = Annotated[int, Depends(k_param)]


async def serving_dep(request: Request) -> ServingState:
    serving: ServingState = request.app.state.serving
    return serving


async def metrics_dep(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


ServingDep = Annotated[ServingState, Depends(serving_dep)]
MetricsDep = Annotated[Metrics, Depends(metrics_dep)]


def require_snapshot(snapshot: Snapshot | None) -> Snapshot:
    if snapshot is None:
        raise ModelUnavailableError("no model version is loaded")
    return snapshot


def _default(value: Any) -> Any:
    """What orjson cannot encode by itself (store exports may hold bytes and sets)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def json_response(content: Any, status_code: int = 200) -> Response:
    """orjson straight to bytes (no pydantic pass on the hot path)."""
    return Response(
        orjson.dumps(content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the problem+json errors a route can answer."""
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}}
        for status in statuses
    }

"""What every route module shares: typed path/query parameters, app-state dependencies, orjson,
and the lean path of the page-view routes (:class:`LeanRoute`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from recsys import schema
from recsys.errors import ModelUnavailableError
from serving.metrics import Metrics
from serving.model_state import Snapshot
from serving.models import CUSTOMER_ID_PATTERN, ITEM_ID_PATTERN, Problem
from serving.state import ServingState

CustomerId = Annotated[
    str, Path(pattern=CUSTOMER_ID_PATTERN, description="the customer's id, e.g. 17850")
]
ItemId = Annotated[str, Path(pattern=ITEM_ID_PATTERN, description="the item's id, e.g. 85123A")]
#: The path parameters' patterns, for the lean path (end anchor ``\Z``: no trailing "\n").
CUSTOMER_ID = schema.CUSTOMER_ID_PATTERN
ITEM_ID = schema.ITEM_ID_PATTERN


async def k_param(  # async: no I/O, so no thread-pool hop
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


_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC


def json_bytes(content: Any) -> bytes:
    """The JSON of ``content`` as :func:`json_response` writes it (a part of a body spliced
    from parts is the same bytes as in the whole body's dump)."""
    return orjson.dumps(content, default=_default, option=_OPTIONS)


def json_response(content: Any, status_code: int = 200) -> Response:
    """orjson straight to bytes (no pydantic pass on the hot path); a naive datetime is UTC
    and is written with its zone (``+00:00``), as a ``date-time`` must be."""
    return Response(json_bytes(content), status_code=status_code, media_type="application/json")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the problem+json errors a route can answer."""
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}}
        for status in statuses
    }


# -- the lean path ---------------------------------------------------------------------------

LeanHandler = Callable[[Request], Awaitable[Response | None]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def lean_path(handler: LeanHandler) -> Callable[[Endpoint], Endpoint]:
    """Give an endpoint a lean path (put it under ``@router.get``; see :class:`LeanRoute`)."""

    def attach(endpoint: Endpoint) -> Endpoint:
        endpoint.lean = handler  # type: ignore[attr-defined]
        return endpoint

    return attach


class LeanRoute(APIRoute):
    """A route whose endpoint may have a *lean path*: an ``async`` handler of the plain request
    that answers the well-formed common request itself and returns None for anything else.

    FastAPI's dependency solving and parameter validation cost 0.25 to 0.5 ms of CPU a request
    (measured in-process: a third of a page view's), so the page-view routes check the key and
    read their few parameters directly. What the lean path does not accept as plainly valid (a
    malformed, empty or repeated parameter) takes the declared path: FastAPI's own validation,
    so a 422 is the same problem+json as without the lean path, and the OpenAPI schema still
    comes from the endpoint's signature. A lean path raises the errors a dependency would (a
    401 before any validation) and returns what the endpoint would.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()
        lean: LeanHandler | None = getattr(self.endpoint, "lean", None)
        if lean is None:
            return declared

        async def handler(request: Request) -> Response:
            response = await lean(request)
            return response if response is not None else await declared(request)

        return handler


def query_items(request: Request) -> list[tuple[str, str]]:
    """``request.query_params.multi_items()``, read straight off the raw query string when it
    holds no escape (``%``, ``+``): then ``parse_qsl`` (Starlette's parser, blank values kept)
    only splits pairs on ``&`` and names from values on the first ``=``, which this does
    without building the parameters' multi-dict on every page view."""
    raw: bytes = request.scope.get("query_string", b"")
    if b"%" in raw or b"+" in raw:
        return request.query_params.multi_items()
    pairs = []
    for piece in raw.decode("latin-1").split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((name, value))
    return pairs


def query_list(request: Request, name: str) -> list[str]:
    """``request.query_params.getlist(name)``, by :func:`query_items`."""
    return [value for key, value in query_items(request) if key == name]


def lean_params(request: Request, names: Collection[str]) -> dict[str, str] | None:
    """The query parameters ``names`` of ``request`` that are there, or None when one of them is
    repeated or empty (the declared path decides those). Other parameters are ignored, as
    FastAPI ignores them."""
    found: dict[str, str] = {}
    for name, value in query_items(request):
        if name in names:
            if not value or name in found:
                return None
            found[name] = value
    return found


def lean_k(request: Request, value: str | None) -> int | None:
    """``k`` as :func:`k_param` reads it, or None when it is not plainly a valid one."""
    limits = request.app.state.settings.serving
    max_k = int(limits.max_k)
    if value is None:
        return min(int(limits.default_k), max_k)
    if not (value.isascii() and value.isdigit()) or value[0] == "0" or len(value) > 9:
        return None
    k = int(value)
    return k if k <= max_k else None

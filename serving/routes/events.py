"""``POST /v1/events``: one event, or ``{"events": [...]}`` (at most ``serving.max_batch``).

All or nothing: every event is validated first (``recsys.events``); one bad event rejects the
request with 422 naming its index and problem, and nothing is written. Accepted events are
applied to the customers' live records and appended to the durable stream in one Redis script
(``feature_store.ingest``) before the 202 ``{accepted, duplicates, ignored}`` is answered; an
event whose ``event_id`` was seen before counts as a duplicate and is not applied again; an
event of an erased customer counts as ignored and nothing of it is stored.

The route is ``async``: validation and planning run on the event loop and Redis is awaited
(``feature_store.ingest.AsyncEventWriter``); with a store passed in to ``create_app`` (tests),
the sync writer runs in a worker thread instead. A plain JSON request takes the lean path
(:func:`lean_events`, before the router: ``serving.fast_path``), without FastAPI's routing,
dependency solving and body parsing (measured in-process: about 0.2 ms of CPU a request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Body, Depends, FastAPI, Request
from starlette.responses import Response

from feature_store.ingest import AsyncEventWriter, EventWriter, IngestResult
from feature_store.ingest_groups import IngestGroups
from recsys.config import Settings
from recsys.customers.live_update import CustomerSnapshot, LiveUpdate, OnlineModel, plan_updates
from recsys.errors import InvalidEventError
from recsys.events import Event, utcnow, validate_batch
from serving.adaptive import check_offer_ids, offer_counting
from serving.auth import Principal, authorize, require
from serving.metrics import Metrics
from serving.models import EventsAccepted
from serving.routes.common import LeanRoute, ServingDep, json_response, lean_path, problems
from serving.state import ServingState

router = APIRouter(tags=["events"], route_class=LeanRoute)
WRITE = ("write",)

_EVENT_EXAMPLE = {
    "customer_id": "17850",
    "event_type": "purchase",
    "timestamp": "2011-09-01T10:00:00Z",
    "item_id": "85123A",
    "quantity": 2,
    "price": 2.55,
    "order_id": "581001",
    "event_id": "web-2f6c1a",
}
_EVENT_SCHEMA = Event.model_json_schema()
_EVENTS_SCHEMA = {
    "type": "array",
    "items": _EVENT_SCHEMA,
    "maxItems": 1000,
    "description": "the events, applied in order: all of them or, when one is invalid, none",
    "examples": [
        [
            {
                "customer_id": "17850",
                "event_type": "view",
                "timestamp": "2011-09-01T09:58:00Z",
                "item_id": "85123A",
                "event_id": "web-2f6c19",
            },
            _EVENT_EXAMPLE,
        ]
    ],
}
_BODY_SCHEMA = {
    "oneOf": [
        _EVENT_SCHEMA,
        {"type": "object", "properties": {"events": _EVENTS_SCHEMA}, "required": ["events"]},
    ]
}


def _raw_events(payload: Any) -> Sequence[Any]:
    if isinstance(payload, Mapping) and "events" in payload:
        batch = payload["events"]
        if not isinstance(batch, list):
            raise InvalidEventError(None, "events: must be a list of event objects")
        return batch
    return [payload]


def online_model(serving: ServingState) -> OnlineModel:
    """The event path's view of the model now served (built with it, at load time)."""
    snapshot = serving.snapshot
    if snapshot is None:
        return OnlineModel(version=None, as_of=None)  # events are still stored and applied
    return snapshot.model.online


async def ingest(app: FastAPI, serving: ServingState, events: list[Event]) -> dict[str, int]:
    model = online_model(serving)
    offers = offer_counting(app, serving, utcnow())

    def plan(
        snapshots: Mapping[str, CustomerSnapshot], fresh: Sequence[Event]
    ) -> dict[str, LiveUpdate]:
        return plan_updates(model, snapshots, fresh, utcnow())

    writer: AsyncEventWriter | EventWriter = app.state.event_writer  # made by the lifespan
    snapshot = serving.snapshot
    horizon = snapshot.model.customer_models.contact_horizon_s if snapshot is not None else None
    result: IngestResult
    groups: IngestGroups | None = getattr(app.state, "event_groups", None)
    if groups is not None and groups.writer is writer:
        result = await groups.ingest(
            events, model.version, plan, contact_horizon_s=horizon, offers=offers
        )
    elif isinstance(writer, AsyncEventWriter):
        result = await writer.ingest(
            events, model.version, plan, contact_horizon_s=horizon, offers=offers
        )
    else:
        result = await anyio.to_thread.run_sync(
            lambda: writer.ingest(
                events, model.version, plan, contact_horizon_s=horizon, offers=offers
            )
        )
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "ignored": result.ignored,  # events of erased customers: acknowledged, not stored
    }


async def accept(request: Request, serving: ServingState, payload: Any) -> Response:
    """Validate, store and count the events of ``payload`` (one event or ``{"events": [...]}``):
    the 202 of the route, or :class:`InvalidEventError` (422) with nothing stored."""
    settings: Settings = request.app.state.settings
    metrics: Metrics = request.app.state.metrics
    raw: Sequence[Any] = [payload]
    try:
        raw = _raw_events(payload)
        events = validate_batch(raw, settings.serving.max_batch)
        check_offer_ids(serving, events)  # 422 before anything is stored
    except InvalidEventError:
        metrics.count_events({"rejected": max(len(raw), 1)})  # all or nothing: all rejected
        raise
    counts = await ingest(request.app, serving, events)  # offer counts included
    metrics.count_events(
        {
            "accepted": counts["accepted"],
            "duplicate": counts["duplicates"],
            "ignored": counts["ignored"],
        }
    )
    return json_response(counts, status_code=202)


async def lean_events(request: Request) -> Response | None:
    """The lean path (``serving.routes.common.LeanRoute``, and ``serving.fast_path`` before the
    router): the key checked directly, a JSON body parsed by orjson; a body that is not plainly
    JSON (another content type, invalid or non-standard JSON such as ``NaN``, which orjson
    refuses) takes the declared path, so its answer is FastAPI's own."""
    authorize(request, WRITE)
    kind = request.headers.get("content-type", "")
    if kind.partition(";")[0].strip().lower() != "application/json":
        return None
    try:
        payload = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return await accept(request, request.app.state.serving, payload)


@router.post(
    "/v1/events",
    summary="Record customer events",
    status_code=202,
    response_model=EventsAccepted,
    response_description="Accepted: every event was stored, or counted as a duplicate or ignored",
    responses=problems(400, 401, 403, 422, 503),
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": _BODY_SCHEMA}}}},
)
@lean_path(lean_events)
async def post_events(
    request: Request,
    serving: ServingDep,
    _: Annotated[Principal, Depends(require(*WRITE))],
    payload: Annotated[Any, Body(examples=[_EVENT_EXAMPLE])],
) -> Response:
    """Record events (views, carts, purchases, returns, surveys, ...): 202 with the counts of
    accepted, duplicate and ignored (erased customer) events; the customers' next answers
    already reflect them."""
    return await accept(request, serving, payload)

"""``GET /v1/overview``: the customer base at a glance (segment and journey-stage counts of the
served version), for the customer-360 page. Counted once when the version is loaded, so a call
costs nothing but the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serving.auth import Principal, require
from serving.profile_models import Overview
from serving.routes.common import ServingDep, problems, require_snapshot

router = APIRouter(tags=["model"])


@router.get(
    "/v1/overview",
    summary="The customer base at a glance",
    response_model=Overview,
    responses=problems(401, 403, 503),
)
async def get_overview(
    serving: ServingDep, _: Annotated[Principal, Depends(require("read"))]
) -> Overview:
    """How many of the served version's customers are in each segment and journey stage."""
    model = require_snapshot(serving.snapshot).model
    return Overview(
        model_version=model.version,
        as_of=model.manifest.data.as_of,
        n_customers=model.n_customers,
        n_items=model.n_items,
        segments=model.segment_counts,
        journey_stages=model.stage_counts,
    )

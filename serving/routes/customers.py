"""A customer's profile, export and erasure (``/v1/customers/{customer_id}``)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from recsys.customers.precision import rounded
from recsys.errors import NotFoundError
from recsys.store import CustomerState, ReadPlan
from serving.auth import Principal, authorize, require
from serving.model_state import Snapshot
from serving.offers import customer_features
from serving.profile_models import CustomerDataExport, CustomerFeatures, CustomerProfile
from serving.routes.common import (
    CUSTOMER_ID,
    CustomerId,
    LeanRoute,
    ServingDep,
    json_response,
    lean_path,
    problems,
    require_snapshot,
)
from serving.state import ServingState

router = APIRouter(tags=["customers"], route_class=LeanRoute)
READ = ("read",)

PROFILE_FEATURES = tuple(CustomerFeatures.model_fields)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (the record may hold them as floats)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _in_sorted(ids: np.ndarray, customer_id: str) -> bool:
    """Whether ``customer_id`` is in the sorted array ``ids``."""
    at = int(np.searchsorted(ids, customer_id))
    return at < len(ids) and str(ids[at]) == customer_id


def profile_body(customer: CustomerState, snapshot: Snapshot) -> dict[str, Any]:
    """The profile: every named feature (None where the record has none) and the rest; the
    segment, journey stage and CLV recomputed from the merged features when events changed
    them (``serving.customer_models``)."""
    merged = customer_features(snapshot, customer)
    features = dict.fromkeys(PROFILE_FEATURES)
    features.update(rounded({name: _clean(value) for name, value in merged.items()}))
    return {
        "customer_id": customer.customer_id,
        "features": features,
        "segment": features["segment"],
        "journey_stage": features["journey_stage"],
        "churn_risk": features["churn_risk"],
        "recent_views": list(customer.live.recent_views),
        "cart": list(customer.live.cart),
        "in_model": customer.batch is not None,
        "model_version": snapshot.version,
    }


async def answer_profile(serving: ServingState, customer_id: str) -> Response:
    snapshot = require_snapshot(serving.snapshot)
    # with the store's meta: a store that lost the version's features is a 503, not a 404
    plan = ReadPlan.of(snapshot.version, [customer_id], meta=True)
    customer = (await serving.reader.read(plan)).states[0]
    if not customer.known:
        raise NotFoundError("customer", customer_id)
    return json_response(profile_body(customer, snapshot))


async def lean_profile(request: Request) -> Response | None:
    authorize(request, READ)
    customer_id: str = request.path_params["customer_id"]
    if not CUSTOMER_ID.fullmatch(customer_id):
        return None
    return await answer_profile(request.app.state.serving, customer_id)


@router.get(
    "/v1/customers/{customer_id}",
    summary="A customer's profile",
    response_model=CustomerProfile,
    responses=problems(401, 403, 404, 422, 503),
)
@lean_path(lean_profile)
async def get_customer(
    customer_id: CustomerId,
    serving: ServingDep,
    _: Annotated[Principal, Depends(require(*READ))],
) -> Response:
    """Value, segment, journey stage, churn risk and satisfaction of one customer."""
    return await answer_profile(serving, customer_id)


@router.get(
    "/v1/customers/{customer_id}/export",
    summary="Everything held about a customer (data subject access)",
    response_model=CustomerDataExport,
    responses=problems(401, 403, 422, 503),
)
def export_customer(
    customer_id: CustomerId,
    serving: ServingDep,
    _: Annotated[Principal, Depends(require("admin"))],
) -> Response:
    """Everything the online store holds about the customer (a data subject access request);
    an unknown customer gets the same shape, empty: nothing is held."""
    return json_response(serving.store.export_customer(customer_id))


@router.delete(
    "/v1/customers/{customer_id}",
    summary="Erase a customer",
    status_code=204,
    responses=problems(401, 403, 422, 503),
)
def delete_customer(
    customer_id: CustomerId,
    serving: ServingDep,
    _: Annotated[Principal, Depends(require("admin"))],
) -> Response:
    """Erase the customer from the online store and keep them out of future training; 204
    also when nothing was held (erasure is idempotent). An id that neither the store nor the
    served model knows is not remembered as erased (nothing to keep out)."""
    snapshot = serving.snapshot
    ids = snapshot.model.customer_ids if snapshot is not None else None
    known = ids is None or _in_sorted(ids, customer_id)
    serving.store.erase_customer(customer_id, known=known)
    return Response(status_code=204)

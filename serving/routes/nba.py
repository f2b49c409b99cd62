"""``GET /v1/customers/{customer_id}/next-best-action``: the one thing to do now
(``recsys.decisions.nba``).

Read the customer once (features, contacts, cart), take their offers and recommended items and let
``recsys.decisions.nba.next_best_action`` arbitrate: service recovery before any sales action for a
detractor, then the highest expected value, ``do_nothing`` when nothing is worth its cost.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from recsys.events import utcnow
from serving.adaptive import adaptation_for
from serving.auth import Principal, require
from serving.offer_models import NextBestAction
from serving.offers import decide
from serving.routes.common import CustomerId, MetricsDep, ServingDep, json_response, problems
from serving.routes.offers import Channel, customer_read

router = APIRouter(tags=["offers"])


@router.get(
    "/v1/customers/{customer_id}/next-best-action",
    summary="The next best action for a customer",
    response_model=NextBestAction,
    responses=problems(401, 403, 422, 503),
)
def get_next_best_action(
    request: Request,
    customer_id: CustomerId,
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require("read"))],
    channel: Channel = None,
) -> Response:
    """The best action with a reason a person can read, the other eligible ones best first,
    the journey stage and the churn risk; an unknown customer is treated as a new one."""
    snapshot, customer = customer_read(serving.read_customer(customer_id))
    now = utcnow()
    offer_set = snapshot.model.customer_models.offer_set
    offer_set.check_channel(channel)
    adaptation = adaptation_for(request.app, offer_set, now=now, channel=None)  # no exploring
    decision = decide(snapshot, customer, now=now, channel=channel, adaptation=adaptation)
    body = {"customer_id": customer_id, **decision.to_dict()}
    metrics.count_offers("next_best_action", [body["action"]])
    body.update(channel=channel, model_version=snapshot.version)
    return json_response(body)

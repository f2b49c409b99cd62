"""Offers: one customer's, a batch's, and the whole base's as an NDJSON export.

Offers obey consent and the contact policy, so they are never guessed: when the store cannot be
read the answer is 503, not a fallback (a fallback would not know who opted out or was mailed
yesterday). Every answer reads the store once per customer list: one round trip for one
customer or a batch, one per chunk of the export.

The export needs the **admin** scope: it is the whole customer base's personal data in one
response (who is at risk, who is unhappy, what they buy), which a page-view ``read`` key has no
business pulling.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated

import numpy as np
import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.openapi.constants import REF_PREFIX
from starlette.responses import Response, StreamingResponse

from recsys.decisions.explain import explain_offer
from recsys.decisions.offers import RankedOffer, offer_matrix
from recsys.errors import ModelUnavailableError, StoreUnavailableError, UnknownOfferError
from recsys.events import utcnow
from recsys.store import CustomerState, FeatureStore
from serving.adaptive import Adaptation, BudgetReservations, adaptation_for, offer_stats
from serving.auth import Principal, require
from serving.metrics import Metrics
from serving.model_state import Snapshot
from serving.offer_models import (
    CHANNEL_PATTERN,
    CUSTOMER_OFFERS_EXAMPLE,
    MAX_OFFERS,
    CustomerOffers,
    Offers,
    OffersBatch,
    OffersBatchRequest,
)
from serving.offers import customer_features, offers_for, offers_for_many
from serving.routes.common import CustomerId, MetricsDep, ServingDep, json_response, problems
from serving.state import CustomerRead, ServingState

router = APIRouter(tags=["offers"])

NDJSON = "application/x-ndjson"
#: The export's body is NDJSON: the OpenAPI schema of its media type describes one line.
EXPORT_LINE_SCHEMA = {
    "$ref": REF_PREFIX + CustomerOffers.__name__,
    "description": "one JSON object per line (NDJSON, UTF-8, each line ended by a newline): a "
    "customer with marketing consent and at least one offer on the channel, and those offers",
}
_WIN_BACK = {
    "customer_id": "12350",
    "known": True,
    "offers": [
        {
            "offer_id": "win-back-15",
            "type": "win_back",
            "title": "We miss you - 15% off your next order",
            "discount_pct": 15.0,
            "items": ["21915", "22557"],
            "reason": "churn risk 0.68 after 210 days without an order",
            "score": 15.5118,
            "expires_at": None,
            "policy": "posterior_mean",
            "propensity": 0.156891,
            "evidence": {"responses": 0, "sends": 0},
        }
    ],
}
EXPORT_EXAMPLE = "".join(
    orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE).decode()
    for line in (CUSTOMER_OFFERS_EXAMPLE, _WIN_BACK)
)

OffersK = Annotated[int, Query(ge=1, le=MAX_OFFERS, description="how many offers, best first")]
Channel = Annotated[
    str | None,
    Query(
        pattern=CHANNEL_PATTERN,
        description="the channel the offers go out on (`email`, `web`, `app`, `sms`, ...): "
        "only offers for it, under its frequency cap; none: every channel, no cap",
    ),
]


def customer_read(read: CustomerRead) -> tuple[Snapshot, CustomerState]:
    """The snapshot and state of a hot-path read, or the error that stopped it."""
    if read.snapshot is None:
        raise ModelUnavailableError("no model version is loaded")
    if read.customer is None:
        raise StoreUnavailableError(
            "the feature store cannot be read now; offers need the customer's consent and "
            "contact history"
        )
    return read.snapshot, read.customer


@router.get(
    "/v1/customers/{customer_id}/offers",
    summary="A customer's best offers",
    response_model=Offers,
    responses=problems(401, 403, 422, 503),
)
def get_offers(
    request: Request,
    customer_id: CustomerId,
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require("read"))],
    channel: Channel = None,
    k: OffersK = 3,
    offer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            description="also say whether this offer was chosen, and if not, why (`asked`)",
        ),
    ] = None,
) -> Response:
    """The customer's best offers by expected value, after consent, the detractor rule and the
    contact policy; an unknown customer gets what a new customer is eligible for. Each offer
    says the policy that set its propensity (``rules``, ``posterior_mean``) and its evidence."""
    snapshot, customer = customer_read(serving.read_customer(customer_id))
    offer_set = snapshot.model.customer_models.offer_set
    offer_set.check_channel(channel)
    if offer_id is not None and all(o.offer_id != offer_id for o in offer_set.offers):
        raise UnknownOfferError(offer_id)
    now = utcnow()
    adaptation = adaptation_for(request.app, offer_set, now=now, channel=channel)
    adaptation.explore = False  # one customer's offers are shown, not a campaign: the mean
    features = customer_features(snapshot, customer)
    chosen = offers_for(
        snapshot, customer, now=now, channel=channel, k=k, features=features, adaptation=adaptation
    )
    body = chosen.to_dict()
    metrics.count_offers("offers", body["offers"])
    body.update(channel=channel, model_version=snapshot.version)
    if offer_id is not None:
        body["asked"] = _asked(
            offer_id, features, customer, chosen.offers, adaptation, now, channel
        )
    return json_response(body)


def _asked(
    offer_id: str,
    features: dict[str, object],
    customer: CustomerState,
    chosen: Sequence[RankedOffer],
    adaptation: Adaptation,
    now: datetime,
    channel: str | None,
) -> dict[str, object]:
    """Whether ``offer_id`` was chosen, and if not, the first rule that stopped it."""
    offer_set = adaptation.offer_set
    j = next(i for i, o in enumerate(offer_set.offers) if o.offer_id == offer_id)
    learned = adaptation.learned(features, offer_set, channel)
    _, value = offer_matrix(features, offer_set, now, channel, learned.propensity)
    return explain_offer(
        offer_id,
        features,
        offer_set,
        now=now,
        channel=channel,
        contacts=customer.live.contacts,
        chosen=[o.offer_id for o in chosen],
        value=float(value[0, j]),
        exhausted=adaptation.exhausted.get(offer_id),
    )


@router.post(
    "/v1/offers/batch",
    summary="Offers for a batch of customers",
    response_model=OffersBatch,
    responses=problems(401, 403, 422, 503),
)
def post_offers_batch(
    http: Request,
    request: OffersBatchRequest,
    serving: ServingDep,
    metrics: MetricsDep,
    _: Annotated[Principal, Depends(require("read"))],
) -> Response:
    """Offers for up to 1,000 customers: every id answered, in order (unknown ones as new
    customers), from one store read."""
    app = http.app
    snapshot, states = serving.read_customers(request.customer_ids, store=app.state.bulk_reads)
    now, offer_set = utcnow(), snapshot.model.customer_models.offer_set
    offer_set.check_channel(request.channel)
    adaptation = adaptation_for(
        app, offer_set, now=now, channel=request.channel, seed=request.seed, batch=True
    )
    chosen = offers_for_many(
        snapshot,
        states,
        now=now,
        channel=request.channel,
        k=request.k,
        adaptation=adaptation,
        reservations=BudgetReservations(offer_stats(app), offer_set, now),
    )
    results = [c.to_dict() for c in chosen]
    metrics.count_offers("offers_batch", (o for result in results for o in result["offers"]))
    return json_response(
        {"channel": request.channel, "model_version": snapshot.version, "results": results}
    )


@router.get(
    "/v1/offers/export",
    summary="Every eligible customer's offers, as NDJSON",
    response_class=StreamingResponse,  # no application/json body: the lines are documented below
    responses={
        200: {
            "description": "one JSON object per line (NDJSON), one line per customer",
            "content": {NDJSON: {"schema": EXPORT_LINE_SCHEMA, "example": EXPORT_EXAMPLE}},
        },
        **problems(401, 403, 422, 503),
    },
)
def export_offers(
    request: Request,
    serving: ServingDep,
    _: Annotated[Principal, Depends(require("admin"))],
    channel: Annotated[
        str,
        Query(
            pattern=CHANNEL_PATTERN,
            description="the channel of the campaign: only its offers, under its contact cap",
        ),
    ] = "email",
    k: OffersK = 3,
) -> Response:
    """Every customer with marketing consent and at least one offer on ``channel``, exactly
    once, as NDJSON lines ``{customer_id, known, offers}``: the bundle's customers in id order,
    then those known only from events. Streamed a chunk of customers at a time (1,000 unless
    ``serving.export_chunk`` says otherwise), one store read each. Needs the **admin** scope:
    it is the whole base's personal data."""
    snapshot = serving.snapshot
    if snapshot is None:
        raise ModelUnavailableError("no model version is loaded")
    snapshot.model.customer_models.offer_set.check_channel(channel)
    chunk = int(request.app.state.settings.serving.export_chunk)
    state = request.app.state
    export = OffersExport(
        serving, snapshot, channel, k, chunk, state.bulk_reads, state.metrics, request.app
    )
    first = export.first_block()  # a dead store is a 503 here, before the stream starts
    return StreamingResponse(export.blocks(first), media_type=NDJSON)


class OffersExport:
    """The export's chunks (see :func:`export_offers`), on one model version throughout."""

    def __init__(
        self,
        serving: ServingState,
        snapshot: Snapshot,
        channel: str,
        k: int,
        chunk: int,
        reads: FeatureStore,
        metrics: Metrics,
        app: FastAPI | None = None,
    ) -> None:
        self.serving, self.snapshot, self.channel, self.k = serving, snapshot, channel, k
        self.chunk, self.reads, self.metrics = chunk, reads, metrics
        self.now = utcnow()
        self.app = app  # for the adaptive offers and budgets (None: the hand-set rules)
        self.trained = snapshot.model.customer_ids  # sorted, unique
        self._ids = self._chunks()

    def _chunks(self) -> Iterator[list[str]]:
        trained = self.trained
        for start in range(0, len(trained), self.chunk):
            yield trained[start : start + self.chunk].tolist()
        seen: set[str] = set()  # customers known only from events (SCAN may repeat one)
        for page in self.serving.store.live_customer_ids(self.chunk):
            fresh = [c for c in dict.fromkeys(page) if c not in seen]
            fresh = [c for c, held in zip(fresh, self._in_bundle(fresh), strict=True) if not held]
            seen.update(fresh)
            if fresh:
                yield fresh

    def _in_bundle(self, ids: Sequence[str]) -> np.ndarray:
        if not len(self.trained) or not ids:
            return np.zeros(len(ids), dtype=bool)
        wanted = np.asarray(ids, dtype=str)
        pos = np.minimum(np.searchsorted(self.trained, wanted), len(self.trained) - 1)
        return np.asarray(self.trained[pos] == wanted, dtype=bool)

    def _block(self, ids: list[str]) -> bytes:
        snapshot, states = self.serving.read_customers(ids, self.snapshot, self.reads)
        self.snapshot = snapshot
        known = [s for s in states if s.known]
        adaptation, reservations = None, None
        if self.app is not None:
            offer_set = snapshot.model.customer_models.offer_set
            adaptation = adaptation_for(
                self.app, offer_set, now=self.now, channel=self.channel, batch=True
            )
            reservations = BudgetReservations(offer_stats(self.app), offer_set, self.now)
        chosen = offers_for_many(
            snapshot,
            known,
            now=self.now,
            channel=self.channel,
            k=self.k,
            adaptation=adaptation,
            reservations=reservations,
        )
        lines = [c.to_dict() for c in chosen if c.consent and c.offers]
        self.metrics.count_offers("offers_export", (o for line in lines for o in line["offers"]))
        return b"".join(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE) for line in lines)

    def first_block(self) -> bytes:
        return b"".join(self._block(ids) for ids in _take_one(self._ids))

    def blocks(self, first: bytes) -> Iterator[bytes]:
        if first:
            yield first
        for ids in self._ids:
            block = self._block(ids)
            if block:
                yield block


def _take_one(chunks: Iterator[list[str]]) -> list[list[str]]:
    first = next(chunks, None)
    return [] if first is None else [first]

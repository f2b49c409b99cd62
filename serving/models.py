"""Request and response bodies of the HTTP API (``docs/api.md`` is the contract).

The hot paths serialize plain dicts with orjson and declare these models for the OpenAPI schema;
the other routes return them directly.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys import schema

Strategy = Literal["personalized", "cold_start", "fallback"]
Context = Literal["home", "product", "cart", "email"]

ITEM_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
CUSTOMER_ID_PATTERN = schema.CUSTOMER_ID_PATTERN.pattern
CATEGORY_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str
    title: str | None = None
    category: str | None = None
    price: float | None = None


class Recommendations(BaseModel):
    customer_id: str
    items: list[RecommendedItem]
    strategy: Strategy
    model_version: str | None
    context: Context


class SimilarItems(BaseModel):
    item_id: str
    items: list[RecommendedItem]
    model_version: str


class PopularItems(BaseModel):
    items: list[RecommendedItem]
    category: str | None = None
    model_version: str | None


class ItemUpdate(BaseModel):
    """A catalogue change; fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    in_stock: bool | None = None
    hidden: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ItemUpdate:
        if not self.model_fields_set:
            raise ValueError("name at least one of title, category, price, in_stock, hidden")
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        return self


class Item(BaseModel):
    item_id: str
    title: str
    category: str
    price: float
    in_stock: bool
    hidden: bool
    recommendable: bool
    revision: int


class CustomerFeatures(BaseModel):
    """The features the contract names; any other feature the record holds is passed through."""

    model_config = ConfigDict(extra="allow")

    recency_days: float | None = None
    frequency: float | None = None
    monetary: float | None = None
    avg_order_value: float | None = None
    tenure_days: float | None = None
    clv: float | None = None
    churn_risk: float | None = None
    segment: str | None = None
    journey_stage: str | None = None
    nps: float | None = None
    csat: float | None = None
    last_purchase_at: str | None = None


class CustomerProfile(BaseModel):
    customer_id: str
    features: CustomerFeatures
    segment: str | None
    journey_stage: str | None
    churn_risk: float | None
    recent_views: list[str]
    cart: list[str]
    in_model: bool
    model_version: str | None


class TrainingData(BaseModel):
    source: str
    format: str
    start: datetime | None
    end: datetime | None
    as_of: datetime


class ModelInfo(BaseModel):
    version: str
    created_at: datetime
    loaded_at: datetime
    trained_on: TrainingData
    counts: dict[str, int]
    metrics: dict[str, Any]
    params: dict[str, Any]
    training_seconds: float | None
    n_items: int
    n_customers: int


class SampleIds(BaseModel):
    """Known ids of the active model version, for load tests and smoke checks of a server."""

    model_version: str = Field(description="the version the ids come from", examples=["20240101"])
    customer_ids: list[str] = Field(
        description="customers the version was trained on (a uniform random sample)",
        examples=[["17850", "13047"]],
    )
    item_ids: list[str] = Field(
        description="products of the catalogue (a uniform random sample)",
        examples=[["85123A", "22423"]],
    )
    popular_item_ids: list[str] = Field(
        description="the best-selling and trending products, best first", examples=[["85123A"]]
    )


class Reloaded(BaseModel):
    previous_version: str | None
    version: str
    changed: bool


class Health(BaseModel):
    status: Literal["ok"]
    model_version: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


# -- offers and the next best action --------------------------------------------------------

CHANNEL_PATTERN = r"^[a-z_]{1,32}$"
_CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
MAX_OFFERS = 20


class OfferOut(BaseModel):
    offer_id: str
    type: str
    title: str
    discount_pct: float | None
    items: list[str]
    reason: str
    score: float
    expires_at: datetime | None


class CustomerOffers(BaseModel):
    customer_id: str
    known: bool
    offers: list[OfferOut]


class Offers(CustomerOffers):
    channel: str | None
    model_version: str


class OffersBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_ids: list[str] = Field(min_length=1, max_length=1000)
    k: int = Field(default=3, ge=1, le=MAX_OFFERS)
    channel: str | None = Field(default=None, pattern=CHANNEL_PATTERN)

    @model_validator(mode="after")
    def _ids(self) -> OffersBatchRequest:
        match = _CUSTOMER_ID.match
        bad = next((i for i, c in enumerate(self.customer_ids) if not match(c)), None)
        if bad is not None:
            raise ValueError(
                f"customer_ids[{bad}] {self.customer_ids[bad][:140]!r} is not a customer id "
                "(1-128 characters of A-Z a-z 0-9 . _ : @ + -)"
            )
        return self


class OffersBatch(BaseModel):
    channel: str | None
    model_version: str
    results: list[CustomerOffers]


class ActionOut(BaseModel):
    action_id: str
    type: str
    title: str
    reason: str
    expected_value: float
    items: list[str] = Field(default_factory=list)


class NextBestAction(BaseModel):
    customer_id: str
    action: ActionOut
    alternatives: list[ActionOut]
    journey_stage: str
    churn_risk: float | None
    channel: str | None
    model_version: str

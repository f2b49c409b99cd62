"""Request and response bodies of the HTTP API (``docs/api.md`` is the contract).

The hot paths serialize plain dicts with orjson and declare these models for the OpenAPI schema;
the other routes return them directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from recsys import schema

Strategy = Literal["personalized", "cold_start", "fallback"]
Context = Literal["home", "product", "cart", "email"]

#: The OpenAPI / pydantic patterns of the ids: the one definition is ``recsys.schema``.
ITEM_ID_PATTERN = schema.ITEM_ID_REGEX
CUSTOMER_ID_PATTERN = schema.CUSTOMER_ID_REGEX
CATEGORY_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"


def _with_zone(value: datetime) -> datetime:
    """Naive datetimes are UTC (the project's convention): say so, as ``date-time`` needs."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A ``date-time`` of a response: always with its zone (RFC 3339 requires one).
UtcDateTime = Annotated[datetime, AfterValidator(_with_zone)]


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
    start: UtcDateTime | None
    end: UtcDateTime | None
    as_of: UtcDateTime


class ModelInfo(BaseModel):
    version: str
    created_at: UtcDateTime
    loaded_at: UtcDateTime
    trained_on: TrainingData
    counts: dict[str, int]
    metrics: dict[str, Any]
    params: dict[str, Any]
    training_seconds: float | None
    n_items: int
    n_customers: int


class Overview(BaseModel):
    """The customer base at a glance, as the served model version saw it when trained."""

    model_version: str = Field(
        description="the served model version", examples=["20260101T000000Z-aaaaaa"]
    )
    as_of: UtcDateTime = Field(description="the end of the training data window")
    n_customers: int = Field(description="customers the version was trained on", examples=[4338])
    n_items: int = Field(description="items in the version's catalogue", examples=[3665])
    segments: dict[str, int] = Field(
        description="trained customers by RFM segment, most first",
        examples=[{"champions": 812, "at_risk": 430}],
    )
    journey_stages: dict[str, int] = Field(
        description="trained customers by journey stage, most first",
        examples=[{"retention": 1800, "at_risk": 600}],
    )


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
MAX_OFFERS = 20


class OfferEvidence(BaseModel):
    responses: int
    sends: int


class OfferAsked(BaseModel):
    offer_id: str
    chosen: bool
    reason: str


class OfferOut(BaseModel):
    offer_id: str
    type: str
    title: str
    discount_pct: float | None
    items: list[str]
    reason: str
    score: float
    expires_at: UtcDateTime | None
    policy: str = "rules"  # rules, posterior_mean or thompson: what set the propensity
    propensity: float | None = None
    evidence: OfferEvidence | None = None


class CustomerOffers(BaseModel):
    customer_id: str
    known: bool
    offers: list[OfferOut]


class Offers(CustomerOffers):
    channel: str | None
    model_version: str
    asked: OfferAsked | None = None


_CustomerIdItem = Annotated[str, Field(json_schema_extra={"pattern": CUSTOMER_ID_PATTERN})]


class OffersBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_ids: list[_CustomerIdItem] = Field(min_length=1, max_length=1000)
    k: int = Field(default=3, ge=1, le=MAX_OFFERS)
    channel: str | None = Field(default=None, pattern=CHANNEL_PATTERN)
    #: Seeds the Thompson draws of the request (reproducible exploration); none: fresh.
    seed: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ids(self) -> OffersBatchRequest:
        ids = self.customer_ids
        bad = next((i for i, c in enumerate(ids) if not schema.is_customer_id(c)), None)
        if bad is not None:
            raise ValueError(
                f"customer_ids[{bad}] {self.customer_ids[bad][:140]!r} is not a customer id "
                f"({schema.CUSTOMER_ID_RULE})"
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
    policy: str = "rules"
    propensity: float | None = None  # of an offer's action, with its evidence
    evidence: OfferEvidence | None = None


class NextBestAction(BaseModel):
    customer_id: str
    action: ActionOut
    alternatives: list[ActionOut]
    journey_stage: str
    churn_risk: float | None
    channel: str | None
    model_version: str

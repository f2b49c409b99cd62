"""Request and response bodies of the HTTP API (``docs/api.md`` is the contract).

The hot paths serialize plain dicts with orjson and declare these models for the OpenAPI schema;
the other routes return them directly. Every field carries a description and an example for
``/openapi.json`` (``tests/serving/test_openapi_docs.py`` checks both, and that each example
is valid against its own schema). The customer, model and offer bodies are in
:mod:`serving.profile_models` and :mod:`serving.offer_models`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from recsys import schema

Strategy = Literal["personalized", "cold_start", "fallback"]
Context = Literal["home", "product", "cart", "email"]

#: The OpenAPI / pydantic patterns of the ids: the one definition is ``recsys.schema``.
ITEM_ID_PATTERN = schema.ITEM_ID_REGEX
CUSTOMER_ID_PATTERN = schema.CUSTOMER_ID_REGEX
CATEGORY_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"

#: Examples shared by several bodies: ids and a version name as the service writes them.
CUSTOMER_ID_EXAMPLE = "17850"
ITEM_ID_EXAMPLE = "85123A"
VERSION_EXAMPLE = "20261204T214430Z-40b35e"
VERSION_DESCRIPTION = (
    "the model version that answered: ``<UTC training time>-<6 hex digits>``, sortable by time"
)


def _with_zone(value: datetime) -> datetime:
    """Naive datetimes are UTC (the project's convention): say so, as ``date-time`` needs."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


#: A ``date-time`` of a response: always with its zone (RFC 3339 requires one).
UtcDateTime = Annotated[datetime, AfterValidator(_with_zone)]

_RECOMMENDED_ITEM = {
    "item_id": ITEM_ID_EXAMPLE,
    "score": 0.647732,
    "reason": "recommended_for_you",
    "title": "WHITE HANGING HEART T-LIGHT HOLDER",
    "category": "candles & lights",
    "price": 2.95,
}
_SIMILAR_ITEM = {
    "item_id": "21733",
    "score": 0.515644,
    "reason": "also_bought",
    "title": "RED HANGING HEART T-LIGHT HOLDER",
    "category": "candles & lights",
    "price": 5.79,
}
_POPULAR_ITEM = {
    "item_id": "85099B",
    "score": 0.676835,
    "reason": "popular",
    "title": "JUMBO BAG RED RETROSPOT",
    "category": "bags",
    "price": 4.13,
}


class RecommendedItem(BaseModel):
    """One item of a ranked answer, with what the catalogue says about it now."""

    item_id: str = Field(description="the item's id (the shop's stock code)", examples=["85123A"])
    score: float = Field(
        description="the ranking score, higher is better; compare it only within one answer "
        "(recommendations: a blend of the customer's ALS preference, similar purchases, "
        "buy-again, the page's context and popularity; similar items: the neighbour "
        "similarity, 0 to 1; popular items: the popularity and trend score, 0 to 1)",
        examples=[0.647732],
    )
    reason: str = Field(
        description="why the item is here, a code to choose a caption by: "
        "``recommended_for_you`` (fits the purchase history), ``because_you_bought_similar``, "
        "``buy_again``, ``similar_to_viewed`` (the page's product or recent views), "
        "``popular``; similar items answer ``also_bought``, popular items ``popular`` or "
        "``trending``",
        examples=["recommended_for_you"],
    )
    title: str | None = Field(
        default=None,
        description="the catalogue title (null: the catalogue has none)",
        examples=["WHITE HANGING HEART T-LIGHT HOLDER"],
    )
    category: str | None = Field(
        default=None,
        description="the catalogue category (null: the catalogue has none)",
        examples=["candles & lights"],
    )
    price: float | None = Field(
        default=None,
        description="the unit price in the shop's currency (pounds sterling in the UCI "
        "Online Retail data); null: unknown",
        examples=[2.95],
    )


class Recommendations(BaseModel):
    """Ranked items for one customer on one page (``GET .../recommendations``)."""

    customer_id: str = Field(
        description="the customer the items are for, as asked", examples=[CUSTOMER_ID_EXAMPLE]
    )
    items: list[RecommendedItem] = Field(
        description="the recommended items, best first: at most ``k``, fewer when not enough "
        "items are eligible (never hidden, out-of-stock, non-product, excluded or disliked "
        "items, nor the product on the page)",
        examples=[[_RECOMMENDED_ITEM]],
    )
    strategy: Strategy = Field(
        description="how the items were chosen: ``personalized`` (from the customer's "
        "history), ``cold_start`` (an unknown customer: popular items and the page's "
        "context), ``fallback`` (the feature store could not be read in time or no model is "
        "loaded: popular items and the page's context; ask again later for personal ones)",
        examples=["personalized"],
    )
    model_version: str | None = Field(
        description=VERSION_DESCRIPTION + "; null only in a fallback with no model loaded",
        examples=[VERSION_EXAMPLE],
    )
    context: Context = Field(
        description="the page the items are for, as asked: ``home``, ``product``, ``cart`` "
        "or ``email``",
        examples=["home"],
    )


class SimilarItems(BaseModel):
    """Items bought together with one item (``GET /v1/items/{item_id}/similar``)."""

    item_id: str = Field(description="the item asked about", examples=[ITEM_ID_EXAMPLE])
    items: list[RecommendedItem] = Field(
        description="items its buyers also bought, most similar first (reason ``also_bought``)",
        examples=[[_SIMILAR_ITEM]],
    )
    model_version: str = Field(description=VERSION_DESCRIPTION, examples=[VERSION_EXAMPLE])


class PopularItems(BaseModel):
    """Best sellers and trending items (``GET /v1/popular``)."""

    items: list[RecommendedItem] = Field(
        description="best sellers blended with trending items, best first (reason ``popular`` "
        "or ``trending``); empty for an unknown category or when no model is loaded",
        examples=[[_POPULAR_ITEM]],
    )
    category: str | None = Field(
        default=None,
        description="the category asked for; null: every category",
        examples=["bags"],
    )
    model_version: str | None = Field(
        description=VERSION_DESCRIPTION + "; null when no model is loaded",
        examples=[VERSION_EXAMPLE],
    )


class ItemUpdate(BaseModel):
    """A catalogue change; fields left out keep their current value (null is refused)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="the new title, 1 to 500 characters",
        examples=["WHITE HANGING HEART T-LIGHT HOLDER"],
    )
    category: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the new category, 1 to 100 characters (``category`` filters of the "
        "recommendation routes match it exactly)",
        examples=["candles & lights"],
    )
    price: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="the new unit price in the shop's currency, 0 or more",
        examples=[2.95],
    )
    in_stock: bool | None = Field(
        default=None,
        description="false: out of stock, never recommended until set back to true",
        examples=[True],
    )
    hidden: bool | None = Field(
        default=None,
        description="true: never recommended (a withdrawn or unsuitable item), though still "
        "known to the service",
        examples=[False],
    )

    @model_validator(mode="after")
    def _not_empty(self) -> ItemUpdate:
        if not self.model_fields_set:
            raise ValueError("name at least one of title, category, price, in_stock, hidden")
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep it")
        return self


class Item(BaseModel):
    """An item as the service sees it now: the model's catalogue with every change applied."""

    item_id: str = Field(description="the item's id (the shop's stock code)", examples=["85123A"])
    title: str = Field(
        description="the catalogue title", examples=["WHITE HANGING HEART T-LIGHT HOLDER"]
    )
    category: str = Field(description="the catalogue category", examples=["candles & lights"])
    price: float = Field(
        description="the unit price in the shop's currency (pounds sterling in the UCI "
        "Online Retail data)",
        examples=[2.95],
    )
    in_stock: bool = Field(description="false: out of stock, never recommended", examples=[True])
    hidden: bool = Field(description="true: never recommended", examples=[False])
    recommendable: bool = Field(
        description="whether the item can be recommended now: a product (not a postage, fee "
        "or adjustment code), in stock and not hidden",
        examples=[True],
    )
    revision: int = Field(
        description="the catalogue revision this answer reflects: the count of catalogue "
        "changes stored so far (0: none)",
        examples=[3],
    )


class Health(BaseModel):
    """Liveness or readiness (``/healthz``, ``/readyz``)."""

    status: Literal["ok"] = Field(
        description="always ``ok`` on a 200 (a server that is not ready answers 503)",
        examples=["ok"],
    )
    model_version: str | None = Field(
        default=None,
        description=VERSION_DESCRIPTION + "; null while no model is loaded",
        examples=[VERSION_EXAMPLE],
    )


class EventsAccepted(BaseModel):
    """What ``POST /v1/events`` did with the events of the request (202)."""

    accepted: int = Field(
        ge=0, description="events stored and applied to the customers' state", examples=[2]
    )
    duplicates: int = Field(
        ge=0,
        description="events whose ``event_id`` was seen before: acknowledged, not applied again",
        examples=[0],
    )
    ignored: int = Field(
        ge=0,
        description="events of erased customers: acknowledged, nothing of them is stored",
        examples=[0],
    )


class FieldError(BaseModel):
    """One problem with one input, as the request validation found it."""

    loc: list[str] = Field(
        description="where: the part of the request (``query``, ``path``, ``body``) and the "
        "field's path in it",
        examples=[["query", "k"]],
    )
    msg: str = Field(
        description="what is wrong, for a person",
        examples=["Input should be greater than or equal to 1"],
    )
    type: str = Field(
        description="the kind of error, a code (pydantic's error type)",
        examples=["greater_than_equal"],
    )
    input: str | int | float | bool | None = Field(
        default=None,
        description="the rejected value, when short enough to echo (absent otherwise)",
        examples=["0"],
    )


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``): every error the service sends."""

    type: str = Field(
        description="the kind of problem, a URI: ``urn:pelanggan:problem:<kind>`` (``validation``, "
        "``invalid-event``, ``unknown-value``, ``unknown-offer``, ``not-found``, "
        "``unauthorized``, ``forbidden``, ``unavailable``, ``too-large``, ``internal``, ...) "
        "or ``about:blank`` when the status says it all",
        examples=["urn:pelanggan:problem:validation"],
    )
    title: str = Field(
        description="the HTTP status's name (RFC 9110)", examples=["Unprocessable Content"]
    )
    status: int = Field(description="the HTTP status code, as sent", examples=[422])
    detail: str = Field(
        description="what was wrong, with the value at fault, for a person to read",
        examples=["k: Input should be greater than or equal to 1 (got '0')"],
    )
    instance: str | None = Field(
        default=None, description="the path of the request", examples=["/v1/popular"]
    )
    request_id: str | None = Field(
        default=None,
        description="the request's ``X-Request-ID`` (the caller's, or one the service made): "
        "quote it when reporting a problem",
        examples=["c4f88e2248a94feab2bb70a761e4fe0f"],
    )
    errors: list[FieldError] | None = Field(
        default=None,
        description="of a ``validation`` problem: every field error, in order",
        examples=[
            [
                {
                    "loc": ["query", "k"],
                    "msg": "Input should be greater than or equal to 1",
                    "type": "greater_than_equal",
                    "input": "0",
                }
            ]
        ],
    )
    index: int | None = Field(
        default=None,
        description="of an ``invalid-event`` problem: the 0-based position of the bad event "
        "in the request (0 for a single event); nothing of the request was stored",
        examples=[3],
    )

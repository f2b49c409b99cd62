"""Request and response bodies of the offers and the next best action (``docs/api.md``).

Every field carries a description and an example for ``/openapi.json`` (see
:mod:`serving.models`). One :class:`CustomerOffers` is also one line of the NDJSON export
(``GET /v1/offers/export``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys import schema
from serving.models import (
    CUSTOMER_ID_EXAMPLE,
    CUSTOMER_ID_PATTERN,
    VERSION_DESCRIPTION,
    VERSION_EXAMPLE,
    UtcDateTime,
)

CHANNEL_PATTERN = r"^[a-z_]{1,32}$"
MAX_OFFERS = 20

_POLICY = (
    "what set the propensity: ``rules`` (the documented hand-set model), ``posterior_mean`` "
    "(learned from responses: the mean) or ``thompson`` (learned: a random draw, exploring)"
)
_EVIDENCE = {"responses": 3, "sends": 41}
_OFFER = {
    "offer_id": "favourites-10",
    "type": "discount",
    "title": "10% off your favourites",
    "discount_pct": 10.0,
    "items": ["22960", "22423", "22699"],
    "reason": "buys regularly (3 orders); a discount on items they are likely to want",
    "score": 34.8632,
    "expires_at": "2011-09-30T23:59:59Z",
    "policy": "posterior_mean",
    "propensity": 0.147183,
    "evidence": _EVIDENCE,
}
#: One customer's offers: an example of :class:`CustomerOffers` (and of an export line).
CUSTOMER_OFFERS_EXAMPLE = {"customer_id": CUSTOMER_ID_EXAMPLE, "known": True, "offers": [_OFFER]}
_ACTION = {
    "action_id": "favourites-10",
    "type": "offer",
    "title": "10% off your favourites",
    "reason": "buys regularly (3 orders); a discount on items they are likely to want",
    "expected_value": 34.8632,
    "items": ["22960", "22423", "22699"],
    "policy": "posterior_mean",
    "propensity": 0.147183,
    "evidence": _EVIDENCE,
}
_DO_NOTHING = {
    "action_id": "do_nothing",
    "type": "do_nothing",
    "title": "Do nothing now",
    "reason": "no action is worth its cost",
    "expected_value": 0.0,
    "items": [],
    "policy": "rules",
}


class OfferEvidence(BaseModel):
    """What a learned propensity rests on: the counts of the customer's cell (segment, journey
    stage and channel) for this offer."""

    responses: int = Field(
        description="responses (redemptions) to the offer counted in the cell", examples=[3]
    )
    sends: int = Field(description="sends of the offer counted in the cell", examples=[41])


class OfferAsked(BaseModel):
    """Whether the offer named by ``offer_id`` was chosen, and if not, why."""

    offer_id: str = Field(description="the offer asked about", examples=["win-back-15"])
    chosen: bool = Field(description="whether it is among the offers answered", examples=[False])
    reason: str = Field(
        description="``chosen``, or the first rule that stopped it, for a person to read "
        "(not live now, not on this channel, no marketing consent, a condition not met, the "
        "contact cap or cool-down, an expected value that is not positive, ranked lower)",
        examples=["condition not met: churn_risk >= 0.5"],
    )


class OfferOut(BaseModel):
    """One offer for one customer, with why and how much it is expected to be worth."""

    offer_id: str = Field(
        description="the offer's id in the shop's offer set", examples=["favourites-10"]
    )
    type: str = Field(
        description="the kind of offer: ``discount``, ``cart_reminder``, ``loyalty_reward``, "
        "``win_back``, ``welcome``, ``referral_invitation``, ``review_request`` or "
        "``service_recovery``",
        examples=["discount"],
    )
    title: str = Field(
        description="the offer's title, as the offer set names it",
        examples=["10% off your favourites"],
    )
    discount_pct: float | None = Field(
        description="the discount in percent (0 to 100); null: the offer is no discount",
        examples=[10.0],
    )
    items: list[str] = Field(
        description="item ids to show with the offer, best first (a cart reminder: the cart's "
        "items; others: recommended items); empty when the offer needs none",
        examples=[["22960", "22423", "22699"]],
    )
    reason: str = Field(
        description="why this offer for this customer, a sentence for a person to read",
        examples=["buys regularly (3 orders); a discount on items they are likely to want"],
    )
    score: float = Field(
        description="the expected value of making the offer, in the shop's currency: "
        "propensity x value - cost (always positive; offers are ranked by it)",
        examples=[34.8632],
    )
    expires_at: UtcDateTime | None = Field(
        description="when the offer stops being valid; null: no end date",
        examples=["2011-12-31T23:59:59Z"],
    )
    policy: str = Field(default="rules", description=_POLICY, examples=["posterior_mean"])
    propensity: float | None = Field(
        default=None,
        description="the estimated probability (0 to 1) that the customer takes the offer",
        examples=[0.147183],
    )
    evidence: OfferEvidence | None = Field(
        default=None,
        description="the counts a learned propensity rests on (zeros before any response)",
        examples=[_EVIDENCE],
    )


class CustomerOffers(BaseModel):
    """One customer's offers (an element of a batch answer, and one line of the export)."""

    customer_id: str = Field(description="the customer", examples=[CUSTOMER_ID_EXAMPLE])
    known: bool = Field(
        description="whether the service knows the customer (false: answered as a new "
        "customer, with what a new customer is eligible for)",
        examples=[True],
    )
    offers: list[OfferOut] = Field(
        description="the offers, highest expected value first, after consent, the detractor "
        "rule and the contact policy; empty when none is eligible",
        examples=[[_OFFER]],
    )


class Offers(CustomerOffers):
    """One customer's offers (``GET /v1/customers/{customer_id}/offers``)."""

    channel: str | None = Field(
        description="the channel asked for (``email``, ``web``, ``app``, ``sms``, ...); "
        "null: every channel, no contact cap applied",
        examples=["email"],
    )
    model_version: str = Field(description=VERSION_DESCRIPTION, examples=[VERSION_EXAMPLE])
    asked: OfferAsked | None = Field(
        default=None,
        description="present when the request named an ``offer_id``: whether it was chosen",
        examples=[
            {
                "offer_id": "win-back-15",
                "chosen": False,
                "reason": "condition not met: churn_risk >= 0.5",
            }
        ],
    )


_CustomerIdItem = Annotated[str, Field(json_schema_extra={"pattern": CUSTOMER_ID_PATTERN})]


class OffersBatchRequest(BaseModel):
    """The customers to decide offers for (``POST /v1/offers/batch``)."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[_CustomerIdItem] = Field(
        min_length=1,
        max_length=1000,
        description="1 to 1,000 customer ids (" + schema.CUSTOMER_ID_RULE + "); each is "
        "answered, in this order, an unknown one as a new customer",
        examples=[["17850", "13047", "12583"]],
    )
    k: int = Field(
        default=3,
        ge=1,
        le=MAX_OFFERS,
        description=f"offers per customer at most, 1 to {MAX_OFFERS}",
        examples=[3],
    )
    channel: str | None = Field(
        default=None,
        pattern=CHANNEL_PATTERN,
        description="the channel the offers go out on (``email``, ``web``, ``app``, ``sms``, "
        "...): only its offers, under its contact cap; null: every channel, no cap; a channel "
        "the offer set does not know is a 422",
        examples=["email"],
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        description="seeds the Thompson draws of the request, so exploration is reproducible; "
        "null: fresh draws",
        examples=[20111209],
    )

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
    """Offers for every customer of a batch request, in the request's order."""

    channel: str | None = Field(
        description="the channel asked for; null: every channel", examples=["email"]
    )
    model_version: str = Field(description=VERSION_DESCRIPTION, examples=[VERSION_EXAMPLE])
    results: list[CustomerOffers] = Field(
        description="one entry per requested id, in the request's order",
        examples=[[CUSTOMER_OFFERS_EXAMPLE]],
    )


class ActionOut(BaseModel):
    """One action the service could take with a customer now."""

    action_id: str = Field(
        description="the action's id: the offer id for an offer, else the action type",
        examples=["favourites-10"],
    )
    type: str = Field(
        description="the kind of action: ``recommend``, ``offer``, ``review_request``, "
        "``loyalty_invitation``, ``referral``, ``service_recovery`` (route to a person) or "
        "``do_nothing``",
        examples=["offer"],
    )
    title: str = Field(description="the action's title", examples=["10% off your favourites"])
    reason: str = Field(
        description="why this action for this customer, a sentence for a person to read",
        examples=["buys regularly (3 orders); a discount on items they are likely to want"],
    )
    expected_value: float = Field(
        description="propensity x value - cost, in the shop's currency (``do_nothing``: 0); "
        "the highest wins",
        examples=[34.8632],
    )
    items: list[str] = Field(
        default_factory=list,
        description="item ids that go with the action (recommended or offered items); may be empty",
        examples=[["22960", "22423", "22699"]],
    )
    policy: str = Field(default="rules", description=_POLICY, examples=["posterior_mean"])
    propensity: float | None = Field(
        default=None,
        description="of an offer's action: the estimated probability (0 to 1) that the "
        "customer takes it; absent for the built-in actions",
        examples=[0.147183],
    )
    evidence: OfferEvidence | None = Field(
        default=None,
        description="of an offer's action: the counts its learned propensity rests on",
        examples=[_EVIDENCE],
    )


class NextBestAction(BaseModel):
    """The one thing to do with a customer now, and the other eligible actions."""

    customer_id: str = Field(description="the customer", examples=[CUSTOMER_ID_EXAMPLE])
    action: ActionOut = Field(description="the best action now", examples=[_ACTION])
    alternatives: list[ActionOut] = Field(
        description="the other eligible actions, best first (``do_nothing`` is always one "
        "unless it is the best)",
        examples=[[_DO_NOTHING]],
    )
    journey_stage: str = Field(
        description="the customer's journey stage: ``awareness``, ``consideration``, "
        "``purchase``, ``retention``, ``advocacy``, ``at_risk`` or ``churned``",
        examples=["retention"],
    )
    churn_risk: float | None = Field(
        description="the probability (0 to 1) that the customer buys nothing in the next 90 "
        "days; null: not scored",
        examples=[0.1602],
    )
    channel: str | None = Field(
        description="the channel asked for; null: any channel", examples=["email"]
    )
    model_version: str = Field(description=VERSION_DESCRIPTION, examples=[VERSION_EXAMPLE])


class OfferStats(BaseModel):
    """What the adaptive offers learned so far (``GET /v1/model/offer-stats``)."""

    adaptive: bool = Field(
        description="whether offers learn their propensities from responses "
        "(``RECSYS_OFFERS__ADAPTIVE``); false: the hand-set rules decide",
        examples=[True],
    )
    prior_strength: float = Field(
        description="how many sends the hand-set propensity counts as before any response "
        "(the prior's weight)",
        examples=[20.0],
    )
    explore_share: float = Field(
        description="the share (0 to 1) of decisions on the exploring channels (``email`` "
        "unless configured) that draw a propensity (Thompson sampling) instead of taking its "
        "mean, so that untried offers get tried",
        examples=[0.1],
    )
    offers: dict[str, dict[str, dict[str, int]]] = Field(
        description="per offer id, per context cell (``segment|journey stage|channel``, ``-`` "
        "for a missing part): the ``sends``, ``responses``, ``clicks`` and ``dismissals`` "
        "counted; an offer with no counts yet has no cells",
        examples=[
            {
                "win-back-15": {
                    "at_risk|at_risk|email": {
                        "sends": 41,
                        "responses": 3,
                        "clicks": 7,
                        "dismissals": 2,
                    }
                },
                "welcome-5": {},
            }
        ],
    )

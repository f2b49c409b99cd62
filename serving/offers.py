"""Offers and the next best action for customers read from the store (no HTTP, no I/O).

The rules are ``recsys.offers`` and ``recsys.nba``; this module feeds them what serving knows:
the merged and re-described features (``serving.intelligence``), the contacts read with the
customer, the live cart, and recommended items from the hot-path recommender
(``serving.recommend``) for offers that need items -- computed only for customers who have such
an offer, since scoring every item is the costly part.

* :func:`offers_for` -- one customer (``GET /v1/customers/{id}/offers``, next best action);
* :func:`offers_for_many` -- a batch (``POST /v1/offers/batch``, export chunks): one feature
  table, one :func:`~recsys.offers.offer_matrix` for all rows, then the per-customer contact
  policy and items. Both give the same answer for the same customer state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.nba import Decision, next_best_action
from recsys.offers import RankedOffer, channel_open, offer_matrix, rank_offers, rank_offers_batch
from recsys.store import CustomerState
from serving.intelligence import (
    changed_by_events,
    describe_row,
    describe_table,
    merged_features,
)
from serving.recommend import RecommendationQuery, recommend
from serving.state import Snapshot

#: How many recommended items the "recommend" action of the next best action carries.
NBA_ITEMS: Final = 10


@dataclass(frozen=True)
class CustomerOffers:
    customer_id: str
    known: bool  # the store holds something of them (else: a new customer's offers)
    consent: bool  # marketing consent (a missing flag counts as consent, as in recsys.offers)
    offers: list[RankedOffer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "known": self.known,
            "offers": [offer_dict(o) for o in self.offers],
        }


def has_consent(features: Mapping[str, Any]) -> bool:
    value = features.get("marketing_consent")
    return True if value is None else bool(value)


def offer_dict(offer: RankedOffer) -> dict[str, Any]:
    body = offer.to_dict()
    body["score"] = round(body["score"], 4)
    return body


def customer_features(snapshot: Snapshot, customer: CustomerState) -> dict[str, Any]:
    """The customer's merged features with the profile columns up to date."""
    intel = snapshot.model.intel
    return describe_row(intel, merged_features(customer), changed_by_events(customer))


def recommended_items(
    snapshot: Snapshot, customer: CustomerState, channel: str | None, k: int
) -> list[str]:
    """The hot path's items for this customer (bought items allowed: "your favourites")."""
    if k <= 0:
        return []
    context = "home" if channel in ("web", "app") else "email"
    query = RecommendationQuery(k=k, context=context, exclude_purchased=False)
    _, ranked = recommend(snapshot, customer, query)
    ids = snapshot.model.item_ids
    return [ids[row] for row in ranked.rows.tolist()]


def offers_for(
    snapshot: Snapshot,
    customer: CustomerState,
    *,
    now: datetime,
    channel: str | None,
    k: int,
    items: Sequence[str] | None = None,
    features: dict[str, Any] | None = None,
) -> CustomerOffers:
    """One customer's best ``k`` offers; ``items`` (recommended) and ``features``
    (:func:`customer_features`): when the caller has them already."""
    intel = snapshot.model.intel
    catalogue = intel.catalogue
    if features is None:
        features = customer_features(snapshot, customer)
    live = customer.live
    eligible, value = offer_matrix(features, catalogue, now, channel)
    if items is None:
        wanted = intel.wants_items(eligible[0], value[0], live.cart) and channel_open(
            live.contacts, channel, now, catalogue.contact_policy
        )
        items = recommended_items(snapshot, customer, channel, intel.item_slots if wanted else 0)
    offers = rank_offers(
        features,
        catalogue,
        now=now,
        channel=channel,
        contacts=live.contacts,
        items=items,
        cart=live.cart,
        k=k,
        matrix=(eligible, value),
    )
    return CustomerOffers(customer.customer_id, customer.known, has_consent(features), offers)


def offers_for_many(
    snapshot: Snapshot,
    customers: Sequence[CustomerState],
    *,
    now: datetime,
    channel: str | None,
    k: int,
) -> list[CustomerOffers]:
    """:func:`offers_for` of every customer, in order, eligibility computed for all at once."""
    if not customers:
        return []
    intel = snapshot.model.intel
    catalogue = intel.catalogue
    rows = [merged_features(c) for c in customers]
    ids = [c.customer_id for c in customers]
    table = pd.DataFrame.from_records(rows)
    table["customer_id"] = ids  # keys the per-customer maps of rank_offers_batch
    changed = np.fromiter((changed_by_events(c) for c in customers), bool, len(customers))
    table = describe_table(intel, table, changed)
    eligible, value = offer_matrix(table, catalogue, now, channel)
    policy = catalogue.contact_policy
    items: dict[str, list[str]] = {}
    for i, customer in enumerate(customers):
        live = customer.live
        if (
            customer.customer_id not in items
            and intel.wants_items(eligible[i], value[i], live.cart)
            and channel_open(live.contacts, channel, now, policy)
        ):
            items[customer.customer_id] = recommended_items(
                snapshot, customer, channel, intel.item_slots
            )
    ranked = rank_offers_batch(
        table,
        catalogue,
        now=now,
        channel=channel,
        contacts={c.customer_id: c.live.contacts for c in customers},
        items=items,
        carts={c.customer_id: c.live.cart for c in customers},
        matrix=(eligible, value),
        k=k,
    )
    return [
        CustomerOffers(c.customer_id, c.known, has_consent(row), offers)
        for c, row, offers in zip(customers, rows, ranked, strict=True)
    ]


def decide(
    snapshot: Snapshot, customer: CustomerState, *, now: datetime, channel: str | None
) -> Decision:
    """The next best action (``recsys.nba``) with this customer's offers and items."""
    intel = snapshot.model.intel
    features = customer_features(snapshot, customer)
    items = recommended_items(snapshot, customer, channel, max(NBA_ITEMS, intel.item_slots))
    chosen = offers_for(
        snapshot,
        customer,
        now=now,
        channel=channel,
        k=3,
        items=items[: intel.item_slots],
        features=features,
    )
    return next_best_action(
        features,
        offers=chosen.offers,
        items=items,
        channel=channel,
        journey_rules=intel.journey_rules,
    )

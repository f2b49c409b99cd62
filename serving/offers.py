"""Offers and the next best action for customers read from the store (no HTTP, no I/O).

The rules are ``recsys.decisions.offers`` and ``recsys.decisions.nba``; this module feeds them what
serving knows: the merged and re-described features (``serving.customer_models``), the contacts read
with the customer, the live cart, and recommended items from the hot-path recommender
(``serving.recommend``) for offers that need items -- computed only for customers who have such an
offer, since scoring every item is the costly part.

* :func:`offers_for` -- one customer (``GET /v1/customers/{id}/offers``, next best action);
* :func:`offers_for_many` -- a batch (``POST /v1/offers/batch``, export chunks): one feature table,
  one :func:`~recsys.decisions.offers.offer_matrix` for all rows, the recommended items of every
  customer who needs them scored together (:func:`recommended_items_many`), then the per-customer
  contact policy. Both give the same answer for the same customer state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.decisions.adaptive import Learned
from recsys.decisions.contacts import channel_open
from recsys.decisions.nba import Decision, next_best_action
from recsys.decisions.offers import (
    LearnedRow,
    RankedOffer,
    offer_matrix,
    rank_offers,
    rank_offers_batch,
)
from recsys.ranking.batch import rank_items_batch
from recsys.ranking.customer_batch import CustomerBatch
from recsys.store import CustomerState
from serving.adaptive import Adaptation, BudgetReservations
from serving.customer_models import (
    changed_by_events,
    describe_row,
    describe_table,
    merged_features,
)
from serving.model_state import Snapshot
from serving.recommend import (
    RecommendationQuery,
    blocked_mask,
    context_of,
    profile_of,
    recommend,
)

#: How many recommended items the "recommend" action of the next best action carries.
NBA_ITEMS: Final = 10


@dataclass(frozen=True)
class CustomerOffers:
    customer_id: str
    known: bool  # the store holds something of them (else: a new customer's offers)
    consent: (
        bool  # marketing consent (a missing flag counts as consent, as in recsys.decisions.offers)
    )
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
    """``offer.to_dict()`` with the score rounded to 4 decimals."""
    body = offer.to_dict()
    body["score"] = round(offer.score, 4)
    return body


def customer_features(snapshot: Snapshot, customer: CustomerState) -> dict[str, Any]:
    """The customer's merged features with the profile columns up to date."""
    customer_models = snapshot.model.customer_models
    return describe_row(customer_models, merged_features(customer), changed_by_events(customer))


def items_query(channel: str | None, k: int) -> RecommendationQuery:
    """The hot path's query behind an offer's items (bought items allowed: "your
    favourites"; the recent views on the web and in the app, the history alone by email)."""
    context = "home" if channel in ("web", "app") else "email"
    return RecommendationQuery(k=k, context=context, exclude_purchased=False)


def recommended_items(
    snapshot: Snapshot, customer: CustomerState, channel: str | None, k: int
) -> list[str]:
    """The hot path's items for this customer (:func:`items_query`)."""
    if k <= 0:
        return []
    query = items_query(channel, k)
    if snapshot.model.retrieval is None:  # else the single path scores on retrieved candidates
        [found] = precomputed_items(snapshot, [customer], query)
        if found is not None:
            return found
    _, ranked = recommend(snapshot, customer, query)
    ids = snapshot.model.item_ids
    return [ids[row] for row in ranked.rows.tolist()]


def recommended_items_many(
    snapshot: Snapshot, customers: Sequence[CustomerState], channel: str | None, k: int
) -> list[list[str]]:
    """:func:`recommended_items` of every customer, the same items, scored together
    (:func:`recsys.ranking.batch.rank_items_batch`: one matrix product for all of them) from the
    very inputs :func:`~serving.recommend.recommend` would score each of them with."""
    if k <= 0 or not customers:
        return [[] for _ in customers]
    model = snapshot.model
    query = items_query(channel, k)
    out = precomputed_items(snapshot, customers, query)
    todo = [i for i, found in enumerate(out) if found is None]
    if not todo:
        return [found or [] for found in out]
    batch, extra = scoring_inputs(snapshot, [customers[i] for i in todo], query)
    ranked = rank_items_batch(model.ranking, batch, k, snapshot.catalog.blocked, extra)
    ids = model.item_ids
    for i, top in zip(todo, ranked, strict=True):
        out[i] = [ids[row] for row in top.rows.tolist()]
    return [found or [] for found in out]


def precomputed_items(
    snapshot: Snapshot, customers: Sequence[CustomerState], query: RecommendationQuery
) -> list[list[str] | None]:
    """Each customer's items for ``query`` as ranked at training (``serving.email_items``),
    or None where they must be ranked here."""
    email = snapshot.model.email_items
    if (
        email is None
        or not snapshot.catalog.email_items_valid
        or query.k != email.k
        or query.exclude_purchased
        or query.category is not None
        or query.item_id is not None
        or query.exclude
    ):
        return [None] * len(customers)
    return email.lookup(customers, query.context == "home", snapshot.model.item_ids)


_NO_ROWS: Final = np.zeros(0, dtype=np.int64)
_NO_WEIGHTS: Final = np.zeros(0, dtype=np.float32)


def scoring_inputs(
    snapshot: Snapshot, customers: Sequence[CustomerState], query: RecommendationQuery
) -> tuple[CustomerBatch, list[np.ndarray]]:
    """What :func:`~serving.recommend.recommend` scores each customer with for ``query`` (one
    without a category, exclusions or blocked context: :func:`items_query`): the
    :class:`~recsys.ranking.scoring.CustomerBatch` of their profiles and contexts, and each one's
    item rows blocked on top of the catalogue's (their dislikes).

    ``profile_of``, ``context_of`` and ``blocked_mask`` decide, except where they cannot
    change a thing (a few microseconds a customer saved on a batch): a customer without live
    purchases or a folded-in vector takes the batch record's vector and history as they are;
    no page context by email, none without recent views; nothing blocked of their own
    without dislikes. ``tests/serving/test_offers_api.py`` holds the batch to the single route.
    """
    model = snapshot.model
    factors = model.ranking.item_factors.shape[1]
    base = snapshot.catalog.blocked
    vectors: list[np.ndarray | None] = []
    histories: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    contexts: list[tuple[np.ndarray, np.ndarray]] = []
    extra: list[np.ndarray] = []
    views = query.context == "home"
    for customer in customers:
        live, record = customer.live, customer.batch
        if record is not None and live.user_vector is None and not live.purchased:
            vector = record.user_vector
            vectors.append(vector if vector is None or vector.shape == (factors,) else None)
            histories.append(
                (record.history_items, record.history_counts, record.history_last_days)
            )
            profile = None
        else:
            profile = profile_of(model, customer)
            vectors.append(profile.user_vector)
            histories.append(
                (profile.history_items, profile.history_counts, profile.history_age_days)
            )
        context = context_of(model, live, query) if views and live.recent_views else None
        contexts.append((_NO_ROWS, _NO_WEIGHTS) if context is None else context)
        if live.disliked:
            profile = profile or profile_of(model, customer)
            rows = _NO_ROWS if context is None else context[0]
            mask = blocked_mask(snapshot, query, profile, live, rows)
            extra.append(np.flatnonzero(mask & ~base))
        else:
            extra.append(_NO_ROWS)
    return CustomerBatch.build(factors, vectors, histories, contexts), extra


def offers_for(
    snapshot: Snapshot,
    customer: CustomerState,
    *,
    now: datetime,
    channel: str | None,
    k: int,
    items: Sequence[str] | None = None,
    features: dict[str, Any] | None = None,
    adaptation: Adaptation | None = None,
) -> CustomerOffers:
    """One customer's best ``k`` offers; ``items`` (recommended) and ``features``
    (:func:`customer_features`): when the caller has them already; ``adaptation``: the
    learned propensities and budgets (``serving.adaptive``; None: the hand-set rules)."""
    customer_models = snapshot.model.customer_models
    offer_set = customer_models.offer_set
    if features is None:
        features = customer_features(snapshot, customer)
    live = customer.live
    learned = adaptation.learned(features, offer_set, channel) if adaptation else None
    eligible, value = offer_matrix(
        features, offer_set, now, channel, None if learned is None else learned.propensity
    )
    if adaptation is not None:
        eligible &= adaptation.allowed(offer_set)[None, :]
    if items is None:
        wanted = customer_models.wants_items(eligible[0], value[0], live.cart) and channel_open(
            live.contacts, channel, now, offer_set.contact_policy
        )
        items = recommended_items(
            snapshot, customer, channel, customer_models.item_slots if wanted else 0
        )
    offers = rank_offers(
        features,
        offer_set,
        now=now,
        channel=channel,
        contacts=live.contacts,
        items=items,
        cart=live.cart,
        k=k,
        matrix=(eligible, value),
        learned=None if learned is None else learned.row(0),
    )
    return CustomerOffers(customer.customer_id, customer.known, has_consent(features), offers)


def offers_for_many(
    snapshot: Snapshot,
    customers: Sequence[CustomerState],
    *,
    now: datetime,
    channel: str | None,
    k: int,
    adaptation: Adaptation | None = None,
    reservations: BudgetReservations | None = None,
) -> list[CustomerOffers]:
    """:func:`offers_for` of every customer, in order, eligibility computed for all at once;
    ``reservations``: reserve the sends of budgeted offers handed out (a customer denied one is
    ranked again without it)."""
    if not customers:
        return []
    customer_models = snapshot.model.customer_models
    offer_set = customer_models.offer_set
    rows = [merged_features(c) for c in customers]
    ids = [c.customer_id for c in customers]
    table = pd.DataFrame.from_records(rows)
    table["customer_id"] = ids  # keys the per-customer maps of rank_offers_batch
    changed = np.fromiter((changed_by_events(c) for c in customers), bool, len(customers))
    table = describe_table(customer_models, table, changed)
    learned = adaptation.learned(table, offer_set, channel) if adaptation else None
    eligible, value = offer_matrix(
        table, offer_set, now, channel, None if learned is None else learned.propensity
    )
    if adaptation is not None:
        eligible &= adaptation.allowed(offer_set)[None, :]
    policy = offer_set.contact_policy
    carts = np.fromiter((bool(c.live.cart) for c in customers), bool, len(customers))
    wanted: dict[str, CustomerState] = {}
    for i in np.flatnonzero(customer_models.wants_items_many(eligible, value, carts)).tolist():
        customer = customers[i]
        if customer.customer_id not in wanted and channel_open(
            customer.live.contacts, channel, now, policy
        ):
            wanted[customer.customer_id] = customer
    found = recommended_items_many(
        snapshot, list(wanted.values()), channel, customer_models.item_slots
    )
    items = dict(zip(wanted, found, strict=True))
    contacts = {c.customer_id: c.live.contacts for c in customers}
    carts_of = {c.customer_id: c.live.cart for c in customers}
    ranked: list[list[RankedOffer]] = [[] for _ in customers]
    todo = list(range(len(customers)))
    for _ in range(len(offer_set.offers) + 1):  # each pass denies at least one more offer
        part = rank_offers_batch(
            table.iloc[todo],
            offer_set,
            now=now,
            channel=channel,
            contacts=contacts,
            items=items,
            carts=carts_of,
            matrix=(eligible[todo], value[todo]),
            k=k,
            learned=None if learned is None else _rows_of(learned, todo),
        )
        for row, chosen in zip(todo, part, strict=True):
            ranked[row] = chosen
        denied = reservations.deny(todo, ranked) if reservations else []
        if not denied:
            break
        for row, j in denied:
            eligible[row, j] = False
        todo = sorted({row for row, _ in denied})
    return [
        CustomerOffers(c.customer_id, c.known, has_consent(row), offers)
        for c, row, offers in zip(customers, rows, ranked, strict=True)
    ]


def _rows_of(learned: Learned, rows: Sequence[int]) -> Callable[[int], LearnedRow]:
    """Row ``i`` of a part of the batch (its rows ``rows``) as :func:`rank_offers_batch` asks."""
    return lambda i: learned.row(rows[i])


def decide(
    snapshot: Snapshot,
    customer: CustomerState,
    *,
    now: datetime,
    channel: str | None,
    adaptation: Adaptation | None = None,
) -> Decision:
    """The next best action (``recsys.decisions.nba``) with this customer's offers and items
    (``adaptation``: learned propensities, the posterior mean: a next best action explores not)."""
    customer_models = snapshot.model.customer_models
    features = customer_features(snapshot, customer)
    items = recommended_items(
        snapshot, customer, channel, max(NBA_ITEMS, customer_models.item_slots)
    )
    chosen = offers_for(
        snapshot,
        customer,
        now=now,
        channel=channel,
        k=3,
        items=items[: customer_models.item_slots],
        features=features,
        adaptation=adaptation,
    )
    return next_best_action(
        features,
        offers=chosen.offers,
        items=items,
        channel=channel,
        journey_rules=customer_models.journey_rules,
    )

"""Adaptive offers in serving: what a decision learns from, budgets, and the events hook.

* :func:`adaptation_for` makes an :class:`Adaptation`, which reads the counts of every offer in
  the decision's cells and the budgets used (one round trip once the customers' cells are known,
  ``feature_store.offer_stats``; no cache): the propensities of a decision
  (``recsys.decisions.adaptive``; Thompson sampling for a share of the decisions on the
  ``offers.explore_channels`` that decays with each cell's evidence, seeded per request), and
  the offers whose budget is used up.
* :class:`BudgetReservations` reserves the sends of budgeted offers a batch hands out.
* :func:`check_offer_ids` (422 for an offer id the serving offer set does not hold) and
  :func:`offer_counting` (how the event write counts a request's offer events, atomically with
  them) are the events route's hook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from fastapi import FastAPI

from feature_store.ingest import OfferCounting
from feature_store.offer_attribution import Attribution
from feature_store.offer_stats import OfferCounts, OfferStats, day_of
from recsys.config import OffersConfig, Settings
from recsys.customers.live_update import CustomerSnapshot, LiveUpdate
from recsys.customers.segments import Features, n_rows
from recsys.decisions.adaptive import (
    Learned,
    cell_of,
    cells_of,
    evidence,
    exploration_share,
    explore_rows,
    learn,
    prior_matrix,
)
from recsys.decisions.offer_set import OfferSet
from recsys.decisions.offers import RankedOffer
from recsys.errors import InvalidEventError
from recsys.events import Event
from recsys.store import CustomerState
from serving.customer_models import (
    LoadedCustomerModels,
    changed_by_events,
    default_offer_set,
    describe_row,
    merged_features,
)
from serving.state import ServingState


@dataclass
class Adaptation:
    """What one offers request decides with (see the module docstring). The counts are read
    when a decision knows its customers' cells (:meth:`learned`), only those cells' (one round
    trip, no cache: every count recorded before, by any process, is seen)."""

    config: OffersConfig
    offer_set: OfferSet
    stats: OfferStats
    now: datetime
    rng: np.random.Generator
    explore: bool  # this request's channel explores (a batch channel)
    read: OfferCounts | None = None
    read_cells: frozenset[str] = frozenset()

    def counts(self, cells: Sequence[str]) -> OfferCounts:
        """The counts of ``cells`` and the budgets used, read once per request (again only
        for cells not read yet)."""
        if self.read is None or not self.read_cells.issuperset(cells):
            wanted = self.read_cells.union(cells)
            self.read = self.stats.read(self.offer_set, sorted(wanted), self.now)
            self.read_cells = frozenset(wanted)
        return self.read

    def learned(self, features: Features, offer_set: OfferSet, channel: str | None) -> Learned:
        prior = prior_matrix(features, offer_set)
        ids = [o.offer_id for o in offer_set.offers]
        cells = cells_of(features, channel)
        sends, responses = evidence(ids, cells, self.counts(cells).counts)
        share = self.config.explore_share if self.explore and self.config.adaptive else 0.0
        chance = exploration_share(share, self.config.prior_strength, sends.sum(axis=1))
        rows = explore_rows(n_rows(features), chance, self.rng)
        return learn(
            prior,
            sends,
            responses,
            strength=self.config.prior_strength,
            adaptive=self.config.adaptive,
            explore=rows,
            rng=self.rng,
        )

    @property
    def exhausted(self) -> dict[str, str]:
        """Offer id -> why its budget is used up."""
        budgets = self.counts([]).budgets
        out: dict[str, str] = {}
        for offer in self.offer_set.offers:
            used = budgets.get(offer.offer_id)
            if offer.budget is not None and used is not None:
                why = offer.budget.exhausted(
                    used.sends_day, used.sends_total, used.redemptions_day, used.redemptions_total
                )
                if why is not None:
                    out[offer.offer_id] = why
        return out

    def allowed(self, offer_set: OfferSet) -> np.ndarray:
        """One bool per offer: its budget is not used up."""
        exhausted = self.exhausted
        return np.array([o.offer_id not in exhausted for o in offer_set.offers], dtype=bool)


def offer_stats(app: FastAPI) -> OfferStats:
    stats: OfferStats = app.state.offer_stats  # made by the lifespan (serving.app)
    return stats


def adaptation_for(
    app: FastAPI,
    offer_set: OfferSet,
    *,
    now: datetime,
    channel: str | None,
    seed: int | None = None,
    batch: bool = False,
) -> Adaptation:
    """What one request decides with; ``seed``: the request's Thompson draws (None: fresh
    entropy). Nothing is read yet (:meth:`Adaptation.counts`)."""
    settings: Settings = app.state.settings
    config = settings.offers
    return Adaptation(
        config=config,
        offer_set=offer_set,
        stats=offer_stats(app),
        now=now,
        rng=np.random.default_rng(seed),
        explore=channel is not None and channel in config.explore_channels,
    )


class BudgetReservations:
    """Reserves the sends of the budgeted offers a batch hands out, customers in request order;
    a customer denied one gets it excluded and is ranked again."""

    def __init__(self, stats: OfferStats, offer_set: OfferSet, now: datetime) -> None:
        self.stats, self.offer_set, self.now = stats, offer_set, now
        self.budgeted = [
            (j, o)
            for j, o in enumerate(offer_set.offers)
            if o.budget is not None
            and (o.budget.sends_per_day is not None or o.budget.sends_total is not None)
        ]
        self.granted: dict[int, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.budgeted)

    def deny(
        self, rows: Sequence[int], ranked: Sequence[list[RankedOffer]]
    ) -> list[tuple[int, int]]:
        """Reserve what ``rows`` (with their ``ranked`` offers) newly hold; the ``(row, offer
        column)`` pairs denied."""
        denied: list[tuple[int, int]] = []
        for j, offer in self.budgeted:
            assert offer.budget is not None
            want = [
                r
                for r in rows
                if any(o.offer_id == offer.offer_id for o in ranked[r])
                and offer.offer_id not in self.granted.get(r, set())
            ]
            granted = self.stats.reserve(offer.offer_id, len(want), offer.budget, self.now)
            for r in want[:granted]:
                self.granted.setdefault(r, set()).add(offer.offer_id)
            denied += [(r, j) for r in want[granted:]]
        return denied


# -- the events route's hook -----------------------------------------------------------------


def serving_offer_set(serving: ServingState) -> OfferSet:
    snapshot = serving.snapshot
    return snapshot.model.customer_models.offer_set if snapshot is not None else default_offer_set()


def check_offer_ids(serving: ServingState, events: Sequence[Event]) -> None:
    """:class:`InvalidEventError` (422) for the first offer event whose ``offer_id`` the serving
    offer set does not hold (before anything is stored)."""
    known = {o.offer_id for o in serving_offer_set(serving).offers}
    for index, event in enumerate(events):
        offer = event.offer
        if offer is not None and offer[0] and offer[0] not in known:
            raise InvalidEventError(
                index,
                f"properties.offer_id {offer[0][:140]!r} is not an offer of the serving offer "
                f"set (known: {', '.join(sorted(known))})",
            )


def offer_counting(app: FastAPI, serving: ServingState, now: datetime) -> OfferCounting:
    """How the event write counts a request's offer events and attributes its purchases
    (``feature_store.offer_attribution``: in the write script, only the events it applies): the
    serving offer set, the attribution window, the budget day of ``now``; the cell of a send is
    the customer's segment and journey stage once the request's events are applied, and the
    send's channel."""
    offer_set = serving_offer_set(serving)
    settings: Settings = app.state.settings
    attribution = Attribution(
        offers=tuple(o.offer_id for o in offer_set.offers),
        window_s=settings.offers.attribution_window_days * 86_400.0,
        day=day_of(now),
    )
    snapshot = serving.snapshot
    customer_models = snapshot.model.customer_models if snapshot is not None else None

    def cells(
        snapshots: Mapping[str, CustomerSnapshot],
        updates: Mapping[str, LiveUpdate],
        sends: Sequence[Event],
    ) -> dict[tuple[str, str], str]:
        return send_cells(customer_models, snapshots, updates, sends)

    return OfferCounting(attribution, cells)


def send_cells(
    customer_models: LoadedCustomerModels | None,
    snapshots: Mapping[str, CustomerSnapshot],
    updates: Mapping[str, LiveUpdate],
    sends: Sequence[Event],
) -> dict[tuple[str, str], str]:
    """``(customer_id, channel)`` -> cell of each send: the customer's profile from their
    planned record (``-`` parts without a model)."""
    profile: dict[str, tuple[Any, Any]] = {}
    out: dict[tuple[str, str], str] = {}
    for event in sends:
        customer = event.customer_id
        if customer not in profile:
            profile[customer] = _profile(customer_models, snapshots[customer], updates[customer])
        _, channel = event.offer or ("", "")
        segment, stage = profile[customer]
        out[(customer, channel)] = cell_of(segment, stage, channel or None)
    return out


def _profile(
    customer_models: LoadedCustomerModels | None, snap: CustomerSnapshot, update: LiveUpdate
) -> tuple[Any, Any]:
    """(segment, journey stage) of a customer whose record becomes ``update``."""
    if customer_models is None:
        return None, None
    live = replace(
        snap.live,
        recent_views=tuple(update.recent_views),
        cart=tuple(update.cart),
        purchased=update.purchased,
        disliked=frozenset(update.disliked),
        features=update.features,
    )
    state = CustomerState(snap.customer_id, snap.batch, live)
    row = describe_row(customer_models, merged_features(state), changed_by_events(state), clv=False)
    return row.get("segment"), row.get("journey_stage")

"""Offers: who is eligible, ranking by expected value, contact policy.

The offers come from an :class:`~recsys.decisions.offer_set.OfferSet` (the shop's file: offers,
their conditions, the contact policy); the contact history and its tests are
:mod:`recsys.decisions.contacts`.

**Built-in rules**, on top of the catalogue's conditions:

* an offer is live only inside ``[valid_from, valid_until)`` and on one of its ``channels``;
* a ``marketing`` offer needs ``marketing_consent`` (a missing flag counts as consent, as in
  ``recsys.customers.features``);
* a **detractor** (latest NPS 0-6 or latest CSAT 1-2) gets ``service_recovery`` offers and
  nothing else: never a sales push; ``service_recovery`` is for detractors only;
* ``cart_reminder`` needs a non-empty cart (``cart_open_items`` or the live cart passed in);
* ``welcome`` is for a customer with at most one order whose order (if any) is less than
  :data:`WELCOME_MAX_DAYS` old; ``win_back`` needs a purchase at least
  :data:`WIN_BACK_MIN_QUIET_DAYS` ago (never right after one) and a customer outside the
  welcome window: the two never go to the same customer (:func:`welcome_window`,
  :func:`quiet_for_win_back`);
* an offer with ``needs_items`` is filled with the caller's items (a cart reminder with the
  live cart's, any other offer with the recommended items) and is dropped when there are none;
* an offer whose expected value is not positive is not made;
* the **contact policy**: at most ``max_contacts`` per channel in any ``window_days`` (counting
  every offer sent on that channel), and the same offer not again within ``cooldown_days``.

**Expected value** = propensity x value - cost. ``value`` is the catalogue's ``value`` times the
``value_basis`` (``fixed``: 1; ``avg_order_value``; ``clv``: the customer's figure, 0 if
missing). Propensity is a deliberately simple documented model of the features, by type
(:func:`propensity`); with adaptation on it is the prior of a propensity learned from responses
(``recsys.decisions.adaptive``, passed in as ``propensities`` / ``learned``):

===================  =========================================================================
type                 propensity
===================  =========================================================================
discount             0.04 + 0.08 * (1 - churn_risk) + 0.04 * [orders in the last 90 days]
cart_reminder        0.25 with a non-empty cart, else 0
loyalty_reward       0.10 + 0.20 * min(frequency / 10, 1)
win_back             0.02 + 0.20 * churn_risk
welcome              0.20 for at most one order, else 0
referral_invitation  0.15 for a promoter (NPS 9-10), else 0.03
review_request       0.20 with an order in the last 30 days, else 0.05
service_recovery     0.50 for a detractor, else 0
===================  =========================================================================

``churn_risk`` missing counts as 0.5. Everything is vectorized over customers (a feature table)
and the same code serves one feature dict (a table of one row).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.customers.segments import Features, column, is_detractor, is_promoter, n_rows
from recsys.decisions.contacts import Contact, channel_open, cooling_down
from recsys.decisions.offer_set import Offer, OfferSet

#: Days without a purchase before a customer can be won back.
WIN_BACK_MIN_QUIET_DAYS: Final = 7.0
#: Days after a first (and only) order during which a customer is welcomed, not won back.
WELCOME_MAX_DAYS: Final = 60.0


def welcome_window(features: Features) -> np.ndarray:
    """At most one order, and that order (if any) under :data:`WELCOME_MAX_DAYS` old."""
    freq = _filled(column(features, "frequency"))
    return (freq <= 1) & ~(column(features, "recency_days") >= WELCOME_MAX_DAYS)


def quiet_for_win_back(features: Features) -> np.ndarray:
    """Bought at least :data:`WIN_BACK_MIN_QUIET_DAYS` ago (NaN recency: never bought) and
    outside the welcome window."""
    quiet = column(features, "recency_days") >= WIN_BACK_MIN_QUIET_DAYS
    return quiet & ~welcome_window(features)


def _filled(values: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """NaN replaced by ``fill`` (``np.nan_to_num``'s job on NaN, at a tenth of its cost on the
    one-row tables of the online path)."""
    return np.where(np.isnan(values), fill, values)


def propensity(offer_type: str, features: Features) -> np.ndarray:
    """The documented per-type propensity model (module docstring), one value per customer."""
    risk = _filled(column(features, "churn_risk"), 0.5)
    freq = _filled(column(features, "frequency"))
    n = n_rows(features)
    if offer_type == "discount":
        return 0.04 + 0.08 * (1 - risk) + 0.04 * (_filled(column(features, "orders_90d")) > 0)
    if offer_type == "cart_reminder":
        return np.where(_filled(column(features, "cart_open_items")) > 0, 0.25, 0.0)
    if offer_type == "loyalty_reward":
        return 0.10 + 0.20 * np.minimum(freq / 10.0, 1.0)
    if offer_type == "win_back":
        return 0.02 + 0.20 * risk
    if offer_type == "welcome":
        return np.where(freq <= 1, 0.20, 0.0)
    if offer_type == "referral_invitation":
        return np.where(is_promoter(features), 0.15, 0.03)
    if offer_type == "review_request":
        return np.where(_filled(column(features, "orders_30d")) > 0, 0.20, 0.05)
    if offer_type == "service_recovery":
        return np.where(is_detractor(features), 0.50, 0.0)
    return np.zeros(n)


def offer_value(offer: Offer, features: Features) -> np.ndarray:
    if offer.value_basis == "fixed":
        return np.full(n_rows(features), offer.value)
    return offer.value * _filled(column(features, offer.value_basis))


def _live(offer: Offer, now: datetime) -> bool:
    return (offer.valid_from is None or offer.valid_from <= now) and (
        offer.valid_until is None or now < offer.valid_until
    )


def offer_matrix(
    features: Features,
    offer_set: OfferSet,
    now: datetime,
    channel: str | None = None,
    propensities: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(eligible, expected_value)``, both ``(n_customers, n_offers)``, before contacts and
    items (those are per customer: :func:`rank_offers`). ``propensities``: learned ones
    (``recsys.decisions.adaptive``), ``(n_customers, n_offers)``, instead of :func:`propensity`."""
    n, offers = n_rows(features), offer_set.offers
    eligible = np.zeros((n, len(offers)), dtype=bool)
    value = np.zeros((n, len(offers)))
    consent_col = column(features, "marketing_consent")
    consent = np.isnan(consent_col) | (consent_col > 0)
    detractor = is_detractor(features)
    cart = _filled(column(features, "cart_open_items")) > 0
    quiet, welcome = quiet_for_win_back(features), welcome_window(features)
    for j, offer in enumerate(offers):
        if not _live(offer, now) or (channel is not None and channel not in offer.channels):
            continue
        ok = np.ones(n, dtype=bool)
        for condition in offer.conditions:
            ok &= condition.holds(features)
        if offer.marketing:
            ok &= consent
        ok &= detractor if offer.type == "service_recovery" else ~detractor
        if offer.type == "cart_reminder":
            ok &= cart
        elif offer.type == "win_back":
            ok &= quiet
        elif offer.type == "welcome":
            ok &= welcome
        eligible[:, j] = ok
        p = propensity(offer.type, features) if propensities is None else propensities[:, j]
        value[:, j] = p * offer_value(offer, features) - offer.cost
    return eligible, value


@dataclass(frozen=True)
class LearnedRow:
    """One customer's propensity of every offer (in offer-set order), its evidence (sends and
    responses of the customer's cell) and the policy that set them
    (``recsys.decisions.adaptive``)."""

    propensity: list[float]
    sends: list[float]
    responses: list[float]
    policy: str


@dataclass(frozen=True)
class RankedOffer:
    offer_id: str
    type: str
    title: str
    discount_pct: float | None
    items: list[str]
    reason: str
    score: float
    expires_at: datetime | None
    channels: list[str] = field(default_factory=list)
    policy: str = "rules"  # which policy set the propensity: rules, posterior_mean, thompson
    propensity: float | None = None
    sends: float = 0.0  # evidence: sends and responses of the customer's cell
    responses: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "offer_id": self.offer_id,
            "type": self.type,
            "title": self.title,
            "discount_pct": self.discount_pct,
            "items": list(self.items),
            "reason": self.reason,
            "score": self.score,
            "expires_at": self.expires_at,
            "policy": self.policy,
            "propensity": None if self.propensity is None else round(self.propensity, 6),
            "evidence": {"responses": int(self.responses), "sends": int(self.sends)},
        }


def _fmt(features: Mapping[str, Any], name: str, spec: str = ".0f") -> str:
    value = features.get(name)
    try:
        number = float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return str(value)
    return format(number, spec) if math.isfinite(number) else "?"


#: The features :func:`reason_for` reads (a batch hands it only these).
REASON_FEATURES: Final = ("frequency", "churn_risk", "recency_days", "nps", "csat")


def reason_for(offer: Offer, features: Mapping[str, Any], n_items: int) -> str:
    """A sentence a person can read: why this offer, for this customer (from the
    :data:`REASON_FEATURES` only)."""
    f, kind = features, offer.type
    if kind == "discount":
        return (
            f"buys regularly ({_fmt(f, 'frequency')} orders); a discount on items "
            "they are likely to want"
        )
    if kind == "cart_reminder":
        return f"{n_items} item(s) left in the cart"
    if kind == "loyalty_reward":
        return f"loyal customer with {_fmt(f, 'frequency')} orders"
    if kind == "win_back":
        return (
            f"churn risk {_fmt(f, 'churn_risk', '.2f')} after "
            f"{_fmt(f, 'recency_days')} days without an order"
        )
    if kind == "welcome":
        return "new customer: a welcome offer for the next order"
    if kind == "referral_invitation":
        return f"promoter (NPS {_fmt(f, 'nps')}): invite them to refer friends"
    if kind == "review_request":
        return "ordered recently: ask for a review"
    if kind == "service_recovery":
        return (
            f"unhappy customer (NPS {_fmt(f, 'nps')}, CSAT {_fmt(f, 'csat')}): "
            "make it right before any sales contact"
        )
    return kind


def _assemble(
    features: Mapping[str, Any],
    offer_set: OfferSet,
    eligible: Sequence[bool],
    value: Sequence[float],
    order: Sequence[int],
    *,
    now: datetime,
    channel: str | None,
    contacts: Sequence[Contact],
    items: Sequence[str],
    cart: Sequence[str],
    k: int,
    learned: LearnedRow | None = None,
) -> list[RankedOffer]:
    policy = offer_set.contact_policy
    if not channel_open(contacts, channel, now, policy):
        return []
    cooling = cooling_down(contacts, now, policy)
    out: list[RankedOffer] = []
    for j in order:  # best value first, ties in offer_set order
        offer = offer_set.offers[j]
        if not eligible[j] or not value[j] > 0 or offer.offer_id in cooling:
            continue
        chosen: list[str] = []
        if offer.needs_items:
            # a cart reminder shows what is in the live cart, never recommended items instead
            pool = list(cart) if offer.type == "cart_reminder" else list(items)
            chosen = pool[: offer.max_items]
            if not chosen:
                continue
        out.append(
            RankedOffer(
                offer_id=offer.offer_id,
                type=offer.type,
                title=offer.title,
                discount_pct=offer.discount_pct,
                items=chosen,
                reason=reason_for(offer, features, len(chosen)),
                score=float(value[j]),
                expires_at=offer.valid_until,
                channels=list(offer.channels),
                **_evidence(learned, j),
            )
        )
        if len(out) >= k:
            break
    return out


def _evidence(learned: LearnedRow | None, j: int) -> dict[str, Any]:
    if learned is None:
        return {}
    return {
        "policy": learned.policy,
        "propensity": learned.propensity[j],
        "sends": learned.sends[j],
        "responses": learned.responses[j],
    }


def rank_offers(
    features: Mapping[str, Any],
    offer_set: OfferSet,
    *,
    now: datetime,
    channel: str | None = None,
    contacts: Sequence[Contact] = (),
    items: Sequence[str] = (),
    cart: Sequence[str] = (),
    k: int = 3,
    matrix: tuple[np.ndarray, np.ndarray] | None = None,
    learned: LearnedRow | None = None,
) -> list[RankedOffer]:
    """One customer's best ``k`` eligible offers, highest expected value first.

    ``features`` is the customer's feature dict (with ``churn_risk`` and ``clv`` when known);
    ``items`` the recommended items (best first) for offers that need items; ``cart`` the live
    cart (it also makes a cart reminder eligible); ``contacts`` the offers already sent;
    ``matrix``: the :func:`offer_matrix` of ``features`` (with the cart counted), when the
    caller has it already.
    """
    if cart:
        features = {
            **features,
            "cart_open_items": max(len(cart), _num(features, "cart_open_items")),
        }
    eligible, value = (
        matrix if matrix is not None else offer_matrix(features, offer_set, now, channel)
    )
    return _assemble(
        features,
        offer_set,
        eligible[0].tolist(),
        value[0].tolist(),
        np.argsort(-value[0], kind="stable").tolist(),
        now=now,
        channel=channel,
        contacts=contacts,
        items=items,
        cart=cart,
        k=k,
        learned=learned,
    )


def rank_offers_batch(
    features: pd.DataFrame,
    offer_set: OfferSet,
    *,
    now: datetime,
    channel: str | None = None,
    contacts: Mapping[str, Sequence[Contact]] | None = None,
    items: Mapping[str, Sequence[str]] | None = None,
    carts: Mapping[str, Sequence[str]] | None = None,
    matrix: tuple[np.ndarray, np.ndarray] | None = None,
    k: int = 3,
    learned: Callable[[int], LearnedRow] | None = None,
) -> list[list[RankedOffer]]:
    """:func:`rank_offers` for every row of a feature table (column ``customer_id``), in order;
    the eligibility and values are computed for all rows at once (or passed in: ``matrix``,
    the :func:`offer_matrix` of ``features``). ``carts``: the live carts, which fill cart
    reminders (the table's ``cart_open_items`` must already count them)."""
    eligible, value = (
        matrix if matrix is not None else offer_matrix(features, offer_set, now, channel)
    )
    contacts, items, carts = contacts or {}, items or {}, carts or {}
    ids = (
        features["customer_id"].astype(str).tolist()
        if "customer_id" in features.columns
        else ["None"] * len(features)
    )
    needed = [name for name in REASON_FEATURES if name in features.columns]
    any_eligible: np.ndarray = np.asarray(eligible.any(axis=1), dtype=bool)
    records = features.loc[any_eligible, needed].to_dict("records")  # what the reasons read
    rows = iter(records)
    allowed, values = eligible.tolist(), value.tolist()
    orders = np.argsort(-value, axis=1, kind="stable").tolist()
    out: list[list[RankedOffer]] = []
    for i, (cid, some) in enumerate(zip(ids, any_eligible.tolist(), strict=True)):
        if not some:
            out.append([])
            continue
        row = next(rows)
        out.append(
            _assemble(
                row,
                offer_set,
                allowed[i],
                values[i],
                orders[i],
                now=now,
                channel=channel,
                contacts=contacts.get(cid, ()),
                items=items.get(cid, ()),
                cart=carts.get(cid, ()),
                k=k,
                learned=None if learned is None else learned(i),
            )
        )
    return out


def _num(features: Mapping[str, Any], name: str) -> float:
    try:
        value = float(features.get(name) or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return value if np.isfinite(value) else 0.0

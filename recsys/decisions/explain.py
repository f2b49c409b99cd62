"""Why an offer was or was not chosen for a customer: the first rule that stopped it.

The order is the order in which :mod:`recsys.decisions.offers` applies its rules (hard rules first:
validity, channel, budget, consent, the detractor rule, the offer's conditions, the contact
policy; then the expected value and the ranking).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from recsys.customers.segments import is_detractor
from recsys.decisions.contacts import Contact, channel_open, cooling_down
from recsys.decisions.offer_set import Offer, OfferSet
from recsys.decisions.offers import (
    WELCOME_MAX_DAYS,
    WIN_BACK_MIN_QUIET_DAYS,
    quiet_for_win_back,
    welcome_window,
)


def _live(offer: Offer, now: datetime) -> bool:
    return (offer.valid_from is None or offer.valid_from <= now) and (
        offer.valid_until is None or now < offer.valid_until
    )


def explain_offer(
    offer_id: str,
    features: Mapping[str, Any],
    offer_set: OfferSet,
    *,
    now: datetime,
    channel: str | None,
    contacts: Sequence[Contact],
    chosen: Sequence[str],
    value: float,
    exhausted: str | None = None,
) -> dict[str, Any]:
    """``{offer_id, chosen, reason}`` for one offer of ``offer_set``; ``chosen``: the offer ids
    answered, ``value``: the offer's expected value for the customer, ``exhausted``: why its
    budget is used up (None: it is not)."""
    offer = next(o for o in offer_set.offers if o.offer_id == offer_id)
    if offer_id in chosen:
        return {"offer_id": offer_id, "chosen": True, "reason": "chosen"}
    reason = _why_not(offer, features, offer_set, now, channel, contacts, value, exhausted)
    return {"offer_id": offer_id, "chosen": False, "reason": reason}


def _why_not(
    offer: Offer,
    features: Mapping[str, Any],
    offer_set: OfferSet,
    now: datetime,
    channel: str | None,
    contacts: Sequence[Contact],
    value: float,
    exhausted: str | None,
) -> str:
    policy = offer_set.contact_policy
    if not _live(offer, now):
        return "not live now (outside valid_from/valid_until)"
    if channel is not None and channel not in offer.channels:
        return f"not offered on channel {channel!r} (channels: {', '.join(offer.channels)})"
    if exhausted:
        return exhausted
    consent = features.get("marketing_consent")
    if offer.marketing and consent is not None and not bool(consent):
        return "no marketing consent"
    detractor = bool(is_detractor(features)[0])
    if detractor and offer.type != "service_recovery":
        return "a detractor gets service recovery and nothing else"
    if not detractor and offer.type == "service_recovery":
        return "service recovery is for detractors only"
    for condition in offer.conditions:
        if not bool(condition.holds(features)[0]):
            return f"condition not met: {condition.feature} {condition.op} {condition.value!r}"
    if offer.type == "cart_reminder" and not float(features.get("cart_open_items") or 0) > 0:
        return "the cart is empty"
    welcome = bool(welcome_window(features)[0])
    if offer.type == "win_back" and not bool(quiet_for_win_back(features)[0]):
        if welcome:
            return "a new customer is welcomed, not won back"
        return f"a win-back needs {WIN_BACK_MIN_QUIET_DAYS:g} days without a purchase"
    if offer.type == "welcome" and not welcome:
        return f"welcome is for at most one order, under {WELCOME_MAX_DAYS:g} days old"
    if not channel_open(contacts, channel, now, policy):
        return f"contact cap of channel {channel!r} reached"
    if offer.offer_id in cooling_down(contacts, now, policy):
        return f"sent within the cool-down of {policy.cooldown_days:g} days"
    if not np.isfinite(value) or value <= 0:
        return f"expected value {value:.4f} is not positive"
    return "ranked below the offers answered (or no items to fill it)"

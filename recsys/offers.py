"""Offers: the shop's catalogue, who is eligible, ranking by expected value, contact policy.

The **catalogue** (:class:`OfferCatalogue`, YAML or JSON; ``recsys/data/offers.yaml`` is the
demo's) lists offers with an eligibility condition list in a small safe language -- each
condition is ``{feature, op, value}`` with ``op`` one of ``< <= > >= == != in``, all must hold,
a missing feature fails every condition but ``!=`` -- and a contact policy.

**Built-in rules**, on top of the catalogue's conditions:

* an offer is live only inside ``[valid_from, valid_until)`` and on one of its ``channels``;
* a ``marketing`` offer needs ``marketing_consent`` (a missing flag counts as consent, as in
  ``recsys.customer_features``);
* a **detractor** (latest NPS 0-6 or latest CSAT 1-2) gets ``service_recovery`` offers and
  nothing else: never a sales push; ``service_recovery`` is for detractors only;
* ``cart_reminder`` needs a non-empty cart (``cart_open_items`` or the live cart passed in);
* an offer with ``needs_items`` is filled with the caller's items (the cart first for a cart
  reminder, else the recommended items) and is dropped when there are none;
* an offer whose expected value is not positive is not made;
* the **contact policy**: at most ``max_contacts`` per channel in any ``window_days`` (counting
  every offer sent on that channel), and the same offer not again within ``cooldown_days``.

**Expected value** = propensity x value - cost. ``value`` is the catalogue's ``value`` times the
``value_basis`` (``fixed``: 1; ``avg_order_value``; ``clv``: the customer's figure, 0 if
missing). Propensity is a deliberately simple documented model of the features, by type
(:func:`propensity`), to be replaced by a learned one when response data exist:

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, Field, field_validator

from recsys.segments import Features, column, is_detractor, is_promoter, n_rows

OfferType = Literal[
    "discount",
    "cart_reminder",
    "loyalty_reward",
    "win_back",
    "welcome",
    "referral_invitation",
    "review_request",
    "service_recovery",
]
OFFER_TYPES: Final[tuple[str, ...]] = OfferType.__args__  # type: ignore[attr-defined]
Op = Literal["<", "<=", ">", ">=", "==", "!=", "in"]
DEFAULT_CATALOGUE: Final = Path(__file__).parent / "data" / "offers.yaml"


class Condition(BaseModel):
    feature: str
    op: Op
    value: float | bool | str | list[float | str]

    def holds(self, features: Features) -> np.ndarray:
        """Where the condition holds, one bool per customer (missing: False, except ``!=``)."""
        if isinstance(self.value, str) or (
            isinstance(self.value, list) and any(isinstance(v, str) for v in self.value)
        ):
            return self._holds_text(features)
        values = column(features, self.feature)
        known = ~np.isnan(values)
        if self.op == "in":
            assert isinstance(self.value, list)
            return known & np.isin(values, np.asarray(self.value, dtype=np.float64))
        target = float(self.value)  # type: ignore[arg-type]
        with np.errstate(invalid="ignore"):
            result = {
                "<": values < target,
                "<=": values <= target,
                ">": values > target,
                ">=": values >= target,
                "==": values == target,
                "!=": values != target,
            }[self.op]
        return result if self.op == "!=" else known & result

    def _holds_text(self, features: Features) -> np.ndarray:
        if isinstance(features, pd.DataFrame):
            raw = features[self.feature] if self.feature in features.columns else None
            texts = (
                np.full(len(features), None, dtype=object)
                if raw is None
                else raw.astype(object).where(raw.notna(), None).to_numpy()
            )
        else:
            texts = np.array([features.get(self.feature)], dtype=object)
        text = np.array([None if t is None else str(t) for t in texts], dtype=object)
        known = np.array([t is not None for t in text], dtype=bool)
        if self.op == "in":
            allowed = {str(v) for v in self.value}  # type: ignore[union-attr]
            return np.array([t in allowed for t in text], dtype=bool)
        if self.op in ("==", "!="):
            equal = np.array([t == str(self.value) for t in text], dtype=bool)
            return known & equal if self.op == "==" else ~equal
        raise ValueError(f"operator {self.op!r} needs a number, not {self.value!r}")


class Offer(BaseModel):
    offer_id: str
    type: OfferType
    title: str
    conditions: list[Condition] = Field(default_factory=list)
    discount_pct: float | None = Field(default=None, ge=0, le=100)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    value: float = 0.0
    value_basis: Literal["fixed", "avg_order_value", "clv"] = "fixed"
    cost: float = 0.0
    channels: list[str] = Field(default_factory=lambda: ["email", "web", "app"])
    needs_items: bool = False
    marketing: bool = True
    max_items: int = 4


class ChannelCap(BaseModel):
    max_contacts: int = Field(ge=0)
    window_days: float = Field(gt=0)


class ContactPolicy(BaseModel):
    caps: dict[str, ChannelCap] = Field(
        default_factory=lambda: {
            "email": ChannelCap(max_contacts=1, window_days=7),
            "sms": ChannelCap(max_contacts=1, window_days=7),
            "app": ChannelCap(max_contacts=2, window_days=7),
        }
    )
    cooldown_days: float = 14.0

    @property
    def horizon_days(self) -> float:
        """How far back the policy looks: its longest cap window or the cool-down."""
        return max([cap.window_days for cap in self.caps.values()] + [self.cooldown_days])


class OfferCatalogue(BaseModel):
    offers: list[Offer]
    contact_policy: ContactPolicy = Field(default_factory=ContactPolicy)

    @field_validator("offers")
    @classmethod
    def _unique_ids(cls, offers: list[Offer]) -> list[Offer]:
        ids = [o.offer_id for o in offers]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate offer ids: {duplicates}")
        return offers


def parse_catalogue(data: Mapping[str, Any] | str) -> OfferCatalogue:
    """A catalogue from a mapping or YAML/JSON text (JSON is YAML)."""
    if isinstance(data, str):
        data = yaml.safe_load(data)
    return OfferCatalogue.model_validate(data)


def load_catalogue(path: Path | str = DEFAULT_CATALOGUE) -> OfferCatalogue:
    """Read a catalogue file (YAML or JSON)."""
    return parse_catalogue(Path(path).read_text(encoding="utf-8"))


class Contact(NamedTuple):
    offer_id: str
    channel: str
    sent_at: datetime


def channel_open(
    contacts: Sequence[Contact], channel: str | None, now: datetime, policy: ContactPolicy
) -> bool:
    """False when ``channel`` has had its cap of contacts within its window before ``now``."""
    cap = policy.caps.get(channel) if channel else None
    if cap is None:
        return True
    if not contacts:  # most customers: no date arithmetic
        return cap.max_contacts > 0
    since = now - timedelta(days=cap.window_days)
    sent = sum(1 for c in contacts if c.channel == channel and since < c.sent_at <= now)
    return sent < cap.max_contacts


def cooling_down(contacts: Sequence[Contact], now: datetime, policy: ContactPolicy) -> set[str]:
    """Offer ids sent (on any channel) within the cool-down before ``now``."""
    if not contacts:
        return set()
    since = now - timedelta(days=policy.cooldown_days)
    return {c.offer_id for c in contacts if since < c.sent_at <= now}


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
    catalogue: OfferCatalogue,
    now: datetime,
    channel: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(eligible, expected_value)``, both ``(n_customers, n_offers)``, before contacts and
    items (those are per customer: :func:`rank_offers`)."""
    n, offers = n_rows(features), catalogue.offers
    eligible = np.zeros((n, len(offers)), dtype=bool)
    value = np.zeros((n, len(offers)))
    consent_col = column(features, "marketing_consent")
    consent = np.isnan(consent_col) | (consent_col > 0)
    detractor = is_detractor(features)
    cart = _filled(column(features, "cart_open_items")) > 0
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
        eligible[:, j] = ok
        value[:, j] = propensity(offer.type, features) * offer_value(offer, features) - offer.cost
    return eligible, value


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
    catalogue: OfferCatalogue,
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
) -> list[RankedOffer]:
    policy = catalogue.contact_policy
    if not channel_open(contacts, channel, now, policy):
        return []
    cooling = cooling_down(contacts, now, policy)
    out: list[RankedOffer] = []
    for j in order:  # best value first, ties in catalogue order
        offer = catalogue.offers[j]
        if not eligible[j] or not value[j] > 0 or offer.offer_id in cooling:
            continue
        chosen: list[str] = []
        if offer.needs_items:
            pool = list(cart) if offer.type == "cart_reminder" and cart else list(items)
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
            )
        )
        if len(out) >= k:
            break
    return out


def rank_offers(
    features: Mapping[str, Any],
    catalogue: OfferCatalogue,
    *,
    now: datetime,
    channel: str | None = None,
    contacts: Sequence[Contact] = (),
    items: Sequence[str] = (),
    cart: Sequence[str] = (),
    k: int = 3,
    matrix: tuple[np.ndarray, np.ndarray] | None = None,
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
        matrix if matrix is not None else offer_matrix(features, catalogue, now, channel)
    )
    return _assemble(
        features,
        catalogue,
        eligible[0].tolist(),
        value[0].tolist(),
        np.argsort(-value[0], kind="stable").tolist(),
        now=now,
        channel=channel,
        contacts=contacts,
        items=items,
        cart=cart,
        k=k,
    )


def rank_offers_batch(
    features: pd.DataFrame,
    catalogue: OfferCatalogue,
    *,
    now: datetime,
    channel: str | None = None,
    contacts: Mapping[str, Sequence[Contact]] | None = None,
    items: Mapping[str, Sequence[str]] | None = None,
    carts: Mapping[str, Sequence[str]] | None = None,
    matrix: tuple[np.ndarray, np.ndarray] | None = None,
    k: int = 3,
) -> list[list[RankedOffer]]:
    """:func:`rank_offers` for every row of a feature table (column ``customer_id``), in order;
    the eligibility and values are computed for all rows at once (or passed in: ``matrix``,
    the :func:`offer_matrix` of ``features``). ``carts``: the live carts, which fill cart
    reminders (the table's ``cart_open_items`` must already count them)."""
    eligible, value = (
        matrix if matrix is not None else offer_matrix(features, catalogue, now, channel)
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
                catalogue,
                allowed[i],
                values[i],
                orders[i],
                now=now,
                channel=channel,
                contacts=contacts.get(cid, ()),
                items=items.get(cid, ()),
                cart=carts.get(cid, ()),
                k=k,
            )
        )
    return out


def _num(features: Mapping[str, Any], name: str) -> float:
    try:
        value = float(features.get(name) or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return value if np.isfinite(value) else 0.0

"""The offer set: the offers the shop configures, their eligibility language, the contact policy.

An offer set is a YAML or JSON file (``recsys/decisions/data/offers.yaml`` is the demo's). It lists
offers with an eligibility condition list in a small safe language -- each condition is
``{feature, op, value}`` with ``op`` one of ``< <= > >= == != in``, all must hold, a missing
feature fails every condition but ``!=`` -- and a contact policy (caps per channel, cool-down).
An offer may carry a ``budget`` (:class:`Budget`: sends or redemptions per UTC day and in total).
How offers are chosen from it is :mod:`recsys.decisions.offers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.customers.segments import Features, column
from recsys.errors import UnknownValueError

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
DEFAULT_OFFERS: Final = Path(__file__).parent / "data" / "offers.yaml"


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


class Budget(BaseModel):
    """How often an offer may go out or be redeemed: per UTC day and in total (None: no
    limit). Sends are reserved by the decisions that hand the offer out for sending; an offer
    whose budget is used up is not chosen (``feature_store.offer_stats``)."""

    model_config = ConfigDict(extra="forbid")

    sends_per_day: int | None = Field(default=None, ge=0)
    sends_total: int | None = Field(default=None, ge=0)
    redemptions_per_day: int | None = Field(default=None, ge=0)
    redemptions_total: int | None = Field(default=None, ge=0)

    def exhausted(
        self, sends_day: int, sends_total: int, redemptions_day: int, redemptions_total: int
    ) -> str | None:
        """Why the budget is used up (None: it is not), given what is used."""
        for used, limit, name in (
            (sends_day, self.sends_per_day, "sends per day"),
            (sends_total, self.sends_total, "sends in total"),
            (redemptions_day, self.redemptions_per_day, "redemptions per day"),
            (redemptions_total, self.redemptions_total, "redemptions in total"),
        ):
            if limit is not None and used >= limit:
                return f"budget exhausted: {name} {used}/{limit}"
        return None


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
    budget: Budget | None = None


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


class OfferSet(BaseModel):
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

    @property
    def channels(self) -> frozenset[str]:
        """Every channel an offer goes out on or the contact policy caps."""
        return frozenset(c for o in self.offers for c in o.channels) | frozenset(
            self.contact_policy.caps
        )

    def check_channel(self, channel: str | None) -> None:
        """:class:`~recsys.errors.UnknownValueError` for a channel no offer or cap names (a
        typo such as ``fax`` would otherwise answer 200 with nothing in it)."""
        if channel is not None and channel not in self.channels:
            known = ", ".join(sorted(self.channels))
            raise UnknownValueError(f"unknown channel {channel!r}: the offers go out on {known}")


def parse_offer_set(data: Mapping[str, Any] | str) -> OfferSet:
    """A catalogue from a mapping or YAML/JSON text (JSON is YAML)."""
    if isinstance(data, str):
        data = yaml.safe_load(data)
    return OfferSet.model_validate(data)


def load_offer_set(path: Path | str = DEFAULT_OFFERS) -> OfferSet:
    """Read a catalogue file (YAML or JSON)."""
    return parse_offer_set(Path(path).read_text(encoding="utf-8"))

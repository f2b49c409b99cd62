"""What a model version knows about customers, ready for requests, and a customer's features.

:class:`LoadedCustomerModels` is built once per bundle (with :class:`serving.state.ModelState`) from
the bundle's ``extra`` (``training/customers.py``): the offer set (``offers``), the RFM scorer
(``rfm``), the CLV model (``clv``) and the segment and journey rules. A bundle without them still
serves: the offer set falls back to ``recsys/decisions/data/offers.yaml``, and the profile columns
stay those of the batch record (segment and CLV are then not recomputed).

A customer's **features** are the batch record's overlaid with the live record's (what events
changed since training: ``recsys.customers.live_update``). When events changed them, the profile
columns the batch computed (``r_score, f_score, m_score, segment, journey_stage, clv,
expected_purchases_365d, p_alive``) are stale, so they are recomputed from the merged row with the
bundle's own models: :func:`describe_row` for one customer, :func:`describe_table` for a batch
(vectorized). A customer the store knows nothing of gets :data:`NEW_CUSTOMER` (no orders), so the
offers they are eligible for are a new customer's (welcome)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import ValidationError

from recsys.customers.clv import CLVModel
from recsys.customers.segments import (
    JourneyRules,
    RFMScorer,
    SegmentRules,
    describe_customers,
    describe_one,
    journey_stages,
)
from recsys.decisions.offer_set import OfferSet, load_offer_set, parse_offer_set
from recsys.store import CustomerState

log = logging.getLogger("recsys.serving")

DAY_S: Final = 86_400.0
#: The features of a customer the store knows nothing of: no orders yet.
NEW_CUSTOMER: Final[Mapping[str, Any]] = {
    "frequency": 0,
    "monetary": 0.0,
    "orders_30d": 0,
    "orders_90d": 0,
    "cart_open_items": 0,
}
#: Columns of the CLV model's answer kept in the features, under these names.
CLV_COLUMNS: Final = {
    "clv": "clv",
    "expected_purchases": "expected_purchases_365d",
    "p_alive": "p_alive",
}


@lru_cache(maxsize=1)
def default_offer_set() -> OfferSet:
    """``recsys/decisions/data/offers.yaml``, read once."""
    return load_offer_set()


@dataclass(frozen=True)
class LoadedCustomerModels:
    offer_set: OfferSet
    rfm: RFMScorer | None
    clv: CLVModel | None
    segment_rules: SegmentRules
    journey_rules: JourneyRules
    needs_items: np.ndarray  # bool per offer of the set: filled with recommended items
    is_cart_reminder: np.ndarray  # bool per offer of the set
    item_slots: int  # how many recommended items the offers need at most

    @property
    def contact_horizon_s(self) -> float:
        """How long sent offers matter to the contact policy (its longest window), seconds."""
        return self.offer_set.contact_policy.horizon_days * DAY_S

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], version: str = "?") -> LoadedCustomerModels:
        """From a bundle's ``extra``; a part missing or unreadable degrades (see the module)."""
        offer_set = _part(version, "offers", extra, parse_offer_set) or default_offer_set()
        offers = offer_set.offers
        needs = np.array([o.needs_items for o in offers], dtype=bool)
        return cls(
            offer_set=offer_set,
            rfm=_part(version, "rfm", extra, RFMScorer.from_dict),
            clv=_part(version, "clv", extra, CLVModel.from_dict),
            segment_rules=_part(version, "segment_rules", extra, SegmentRules.model_validate)
            or SegmentRules(),
            journey_rules=_part(version, "journey_rules", extra, JourneyRules.model_validate)
            or JourneyRules(),
            needs_items=needs,
            is_cart_reminder=np.array([o.type == "cart_reminder" for o in offers], dtype=bool),
            item_slots=max([o.max_items for o in offers if o.needs_items], default=0),
        )

    def wants_items(self, eligible: np.ndarray, value: np.ndarray, cart: Sequence[str]) -> bool:
        """Whether one customer's eligible offers (a row of ``offer_matrix``) need recommended
        items: a worthwhile offer that needs items, other than a cart reminder filled by the
        cart."""
        needs = self.needs_items & ~self.is_cart_reminder if cart else self.needs_items
        return bool(np.any(eligible & needs & (value > 0)))

    def wants_items_many(
        self, eligible: np.ndarray, value: np.ndarray, has_cart: np.ndarray
    ) -> np.ndarray:
        """:meth:`wants_items` of every row of ``offer_matrix`` at once (``has_cart``: one
        bool per row, the live cart is not empty)."""
        needs = self.needs_items[None, :] & ~(self.is_cart_reminder[None, :] & has_cart[:, None])
        return np.any(eligible & needs & (value > 0), axis=1)


def _part(version: str, name: str, extra: Mapping[str, Any], build: Any) -> Any:
    raw = extra.get(name)
    if raw is None:
        return None
    try:
        return build(raw)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        log.warning("model version %s: extra[%r] is unusable, ignored: %s", version, name, exc)
        return None


def merged_features(customer: CustomerState) -> dict[str, Any]:
    """The batch features overlaid with the live ones; :data:`NEW_CUSTOMER` when neither has
    any; ``cart_open_items`` at least the live cart's length."""
    merged: dict[str, Any] = dict(customer.batch.features) if customer.batch else {}
    merged.update(customer.live.features)
    if not merged:
        merged.update(NEW_CUSTOMER)
    cart = customer.live.cart
    if cart:
        merged["cart_open_items"] = max(len(cart), _number(merged.get("cart_open_items")))
    return merged


def _number(value: Any) -> float:
    try:
        number = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return number if np.isfinite(number) else 0.0


def changed_by_events(customer: CustomerState) -> bool:
    """Whether the profile columns must be computed from the features: events changed them, or
    the store knows nothing of the customer (a new customer is described as one: a prospect,
    as after their first event, so that both fall in one context cell of the adaptive offers)."""
    return bool(customer.live.features) or not customer.known


def describe_row(
    customer_models: LoadedCustomerModels,
    features: dict[str, Any],
    changed: bool,
    *,
    clv: bool = True,
) -> dict[str, Any]:
    """``features`` with the profile columns recomputed when ``changed`` (and the journey stage
    filled in when the record has none; the CLV columns too unless ``clv`` is false). Updates and
    returns ``features``."""
    if changed and customer_models.rfm is not None:
        features.update(
            describe_one(
                features,
                customer_models.rfm,
                customer_models.segment_rules,
                customer_models.journey_rules,
            )
        )
    elif changed or not isinstance(features.get("journey_stage"), str):
        features["journey_stage"] = str(
            journey_stages(features, None, customer_models.journey_rules)[0]
        )
    if clv and changed and customer_models.clv is not None:
        predicted = _predict_clv(customer_models.clv, features)
        if predicted is not None:
            features.update({name: float(v[0]) for name, v in predicted.items()})
    return features


def describe_table(
    customer_models: LoadedCustomerModels, table: pd.DataFrame, changed: np.ndarray
) -> pd.DataFrame:
    """:func:`describe_row` for every row of ``table`` at once (``changed``: one bool per row)."""
    stage = table["journey_stage"] if "journey_stage" in table.columns else None
    missing = (
        np.ones(len(table), dtype=bool)
        if stage is None
        else ~stage.map(lambda s: isinstance(s, str)).to_numpy(bool)
    )
    redo = np.asarray(changed, dtype=bool)
    if redo.any() and customer_models.rfm is not None:
        part = describe_customers(
            table.loc[redo],
            customer_models.rfm,
            segment_rules=customer_models.segment_rules,
            journey_rules=customer_models.journey_rules,
        )
        for name in ("r_score", "f_score", "m_score", "segment", "journey_stage"):
            _assign(table, redo, name, part[name].to_numpy())
        missing &= ~redo
    stage_rows = missing | redo if customer_models.rfm is None else missing
    if stage_rows.any():
        stages = journey_stages(table.loc[stage_rows], None, customer_models.journey_rules)
        _assign(table, stage_rows, "journey_stage", stages)
    if redo.any() and customer_models.clv is not None:
        predicted = _predict_clv(customer_models.clv, table.loc[redo])
        for name, values in (predicted or {}).items():
            _assign(table, redo, name, values)
    return table


def _assign(table: pd.DataFrame, rows: np.ndarray, name: str, values: np.ndarray) -> None:
    if name not in table.columns:
        table[name] = pd.Series([None] * len(table), index=table.index, dtype=object)
    elif table[name].dtype != object:
        table[name] = table[name].astype(object)
    table.loc[rows, name] = np.asarray(values, dtype=object)


#: The CLV model's inputs (``recsys.customers.clv.clv_inputs``): times, then numbers.
CLV_TIMES: Final = ("first_purchase_at", "last_purchase_at")
CLV_NUMBERS: Final = ("recency_days", "frequency", "avg_repeat_order_value", "avg_order_value")


def _clv_table(table: pd.DataFrame) -> pd.DataFrame:
    """A table's CLV inputs read as the one-row path reads a feature dict: each time on its
    own (the batch writes ``2011-05-01 10:00:00``, events ``2026-01-02T03:04:05.678+00:00``:
    one format inferred for a whole column fails on the other), a missing column as missing
    values (no KeyError for the whole table)."""
    out = pd.DataFrame(index=table.index)
    for name in CLV_TIMES:
        raw = table[name] if name in table.columns else None
        texts = pd.Series(None, index=table.index, dtype=object) if raw is None else raw
        out[name] = pd.to_datetime(texts.astype(object), format="mixed", utc=True)
    for name in CLV_NUMBERS:
        out[name] = table[name] if name in table.columns else np.nan
    return out


def _predict_clv(
    model: CLVModel, features: pd.DataFrame | Mapping[str, Any]
) -> dict[str, np.ndarray] | None:
    """The CLV columns (named as in the features), or None when the row lacks their inputs."""
    try:
        if isinstance(features, pd.DataFrame):
            features = _clv_table(features)
        predicted = model.predict_arrays(features)
    except (KeyError, TypeError, ValueError):
        return None
    return {name: np.asarray(predicted[column]) for column, name in CLV_COLUMNS.items()}

"""RFM scores and segments, and the journey stage: configurable rules, vectorized.

Every function takes the feature table of ``recsys.customers.features`` (a DataFrame, the batch
path) or one customer's feature dict (the online path) and runs the same numpy code on both: a
dict is a table of one row. Missing features count as missing (NaN), never as errors.

**RFM scores** (1-5, 5 best). :class:`RFMScorer` learns quintile edges of ``recency_days``,
``frequency`` and ``monetary`` over the customers who bought (at training). A score is 1 + the
number of edges strictly below the value (so ties at an edge go to the lower score: with many
one-order customers, one order is F=1), reversed for recency (recent is good). Customers who
never bought get 0 for all three.

**Segments** (:class:`SegmentRules`): the first rule whose R, F and M ranges all hold names the
segment; a customer who never bought is ``prospect``. The default rules cover every (R, F):

==================  =======  =======  ===================================================
segment             R        F        reading
==================  =======  =======  ===================================================
champions           5        4-5      bought recently, buy often
loyal               3-4      4-5      buy often, fairly recently
cant_lose           1-2      5        were among the most frequent, gone quiet
at_risk             1-2      3-4      bought often, long ago
lost                1        1        one or two orders, longest ago
hibernating         1-2      1-2      few orders, long ago
new                 5        1        first order, very recent
promising           4        1        first order, recent
potential_loyalist  4-5      2-3      recent, a few orders
need_attention      3        3        middling on both
about_to_sleep      3        1-2      few orders, getting old
==================  =======  =======  ===================================================

**Journey stage** (:class:`JourneyRules`), first match wins:

1. ``churned``: bought, and quiet for more than ``max(churned_min_days,
   churned_rhythm_factor * inter_purchase_mean_days)`` (a repeat buyer: far beyond their usual
   rhythm) or more than ``churned_single_order_days`` (a one-order customer);
2. ``at_risk``: bought, ``churn_risk >= at_risk_threshold``, and the last purchase at least
   ``at_risk_min_quiet_days`` ago: a customer who has just bought (a first order included) is
   not at risk, whatever a stale or population-level risk says;
3. ``advocacy``: at least ``advocacy_promoter_min_orders`` orders and a promoter (latest NPS
   9-10), or at least ``advocacy_min_orders`` orders and not a detractor (NPS 0-6, CSAT 1-2);
4. ``retention``: two orders or more;  5. ``purchase``: one order;
6. ``consideration``: no order, but product interest in the last 30 days (views, carts);
7. ``awareness``: everyone else (seen, no product interest yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

Features: TypeAlias = pd.DataFrame | Mapping[str, Any]

SEGMENTS: Final[tuple[str, ...]] = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
    "prospect",
)
JOURNEY_STAGES: Final[tuple[str, ...]] = (
    "awareness",
    "consideration",
    "purchase",
    "retention",
    "advocacy",
    "at_risk",
    "churned",
)
PROSPECT: Final = "prospect"


def column(features: Features, name: str) -> np.ndarray:
    """One feature as a float array (NaN where missing), from a table or a feature dict."""
    if isinstance(features, pd.DataFrame):
        if name not in features.columns:
            return np.full(len(features), np.nan)
        return pd.to_numeric(features[name], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    value = features.get(name)
    try:
        number = float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        number = np.nan
    return np.array([number], dtype=np.float64)


def n_rows(features: Features) -> int:
    return len(features) if isinstance(features, pd.DataFrame) else 1


class RFMScorer:
    """Quintile edges learned on buyers; ``scores`` gives R, F, M in 1-5 (0: never bought)."""

    COLUMNS: Final = ("recency_days", "frequency", "monetary")

    def __init__(self, n_bins: int = 5) -> None:
        self.n_bins = n_bins

    def fit(self, features: pd.DataFrame) -> RFMScorer:
        buyers = column(features, "frequency") > 0
        qs = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        self.edges_: dict[str, list[float]] = {}
        for name in self.COLUMNS:
            values = column(features, name)[buyers]
            values = values[np.isfinite(values)]
            edges = np.quantile(values, qs) if values.size else np.zeros(qs.size)
            self.edges_[name] = [float(e) for e in edges]
        return self

    def scores(self, features: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bought = column(features, "frequency") > 0
        out = []
        for name in self.COLUMNS:
            values = column(features, name)
            below = np.searchsorted(np.asarray(self.edges_[name]), values, side="left")
            score = self.n_bins - below if name == "recency_days" else 1 + below
            out.append(np.where(bought & np.isfinite(values), score, 0).astype(np.int64))
        return out[0], out[1], out[2]

    def to_dict(self) -> dict[str, Any]:
        return {"n_bins": self.n_bins, "edges": self.edges_}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RFMScorer:
        scorer = cls(int(data.get("n_bins", 5)))
        scorer.edges_ = {k: [float(e) for e in v] for k, v in data["edges"].items()}
        return scorer


class SegmentRule(BaseModel):
    segment: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)


DEFAULT_SEGMENT_RULES: Final[tuple[SegmentRule, ...]] = (
    SegmentRule(segment="champions", r=(5, 5), f=(4, 5)),
    SegmentRule(segment="loyal", r=(3, 4), f=(4, 5)),
    SegmentRule(segment="cant_lose", r=(1, 2), f=(5, 5)),
    SegmentRule(segment="at_risk", r=(1, 2), f=(3, 4)),
    SegmentRule(segment="lost", r=(1, 1), f=(1, 1)),
    SegmentRule(segment="hibernating", r=(1, 2), f=(1, 2)),
    SegmentRule(segment="new", r=(5, 5), f=(1, 1)),
    SegmentRule(segment="promising", r=(4, 4), f=(1, 1)),
    SegmentRule(segment="potential_loyalist", r=(4, 5), f=(2, 3)),
    SegmentRule(segment="need_attention", r=(3, 3), f=(3, 3)),
    SegmentRule(segment="about_to_sleep", r=(3, 3), f=(1, 2)),
)


class SegmentRules(BaseModel):
    rules: list[SegmentRule] = Field(default_factory=lambda: list(DEFAULT_SEGMENT_RULES))
    fallback: str = "need_attention"


def _within(score: np.ndarray, bounds: tuple[int, int]) -> np.ndarray:
    return (score >= bounds[0]) & (score <= bounds[1])


def segments(
    r: np.ndarray, f: np.ndarray, m: np.ndarray, rules: SegmentRules | None = None
) -> np.ndarray:
    """The segment name of each customer from R, F, M scores (0 = never bought: prospect)."""
    rules = rules or SegmentRules()
    conditions = [_within(r, x.r) & _within(f, x.f) & _within(m, x.m) for x in rules.rules]
    named = np.select(conditions, [x.segment for x in rules.rules], default=rules.fallback)
    return np.where(r > 0, named, PROSPECT).astype(object)


class JourneyRules(BaseModel):
    churned_rhythm_factor: float = 3.0
    churned_min_days: float = 90.0
    churned_single_order_days: float = 150.0
    at_risk_threshold: float = 0.7
    at_risk_min_quiet_days: float = 7.0
    advocacy_promoter_min_orders: int = 2
    advocacy_min_orders: int = 10
    promoter_min_nps: float = 9.0
    detractor_max_nps: float = 6.0
    detractor_max_csat: float = 2.0


def is_detractor(features: Features, rules: JourneyRules | None = None) -> np.ndarray:
    """Latest NPS 0-6 or latest CSAT 1-2."""
    rules = rules or JourneyRules()
    nps, csat = column(features, "nps"), column(features, "csat")
    return (nps <= rules.detractor_max_nps) | (csat <= rules.detractor_max_csat)


def is_promoter(features: Features, rules: JourneyRules | None = None) -> np.ndarray:
    rules = rules or JourneyRules()
    return column(features, "nps") >= rules.promoter_min_nps


def journey_stages(
    features: Features,
    churn_risk: np.ndarray | None = None,
    rules: JourneyRules | None = None,
) -> np.ndarray:
    """The journey stage of each customer (see the module docstring for the rules)."""
    rules = rules or JourneyRules()
    if churn_risk is None:
        churn_risk = column(features, "churn_risk")
    risk = np.asarray(churn_risk, dtype=np.float64)
    freq = np.nan_to_num(column(features, "frequency"))
    recency = column(features, "recency_days")
    gap = column(features, "inter_purchase_mean_days")
    bought = freq > 0
    quiet_limit = np.where(
        freq >= 2,
        np.maximum(rules.churned_min_days, rules.churned_rhythm_factor * np.nan_to_num(gap)),
        rules.churned_single_order_days,
    )
    interest = (
        np.nan_to_num(column(features, "views_30d"))
        + np.nan_to_num(column(features, "carts_30d"))
        + np.nan_to_num(column(features, "cart_open_items"))
    ) > 0
    promoter = is_promoter(features, rules)
    detractor = is_detractor(features, rules)
    conditions = [
        bought & (recency > quiet_limit),
        bought & (risk >= rules.at_risk_threshold) & (recency >= rules.at_risk_min_quiet_days),
        (freq >= rules.advocacy_promoter_min_orders) & promoter
        | (freq >= rules.advocacy_min_orders) & ~detractor,
        freq >= 2,
        bought,
        interest,
    ]
    choices = ["churned", "at_risk", "advocacy", "retention", "purchase", "consideration"]
    return np.select(conditions, choices, default="awareness").astype(object)


def describe_customers(
    features: pd.DataFrame,
    rfm: RFMScorer,
    churn_risk: np.ndarray | None = None,
    clv: np.ndarray | None = None,
    segment_rules: SegmentRules | None = None,
    journey_rules: JourneyRules | None = None,
) -> pd.DataFrame:
    """A copy of ``features`` with ``r_score, f_score, m_score, segment, journey_stage`` and,
    when given, ``churn_risk`` and ``clv``: the profile columns of the bundle's feature table."""
    out = features.copy()
    if churn_risk is not None:
        out["churn_risk"] = np.asarray(churn_risk, dtype=np.float64)
    if clv is not None:
        out["clv"] = np.asarray(clv, dtype=np.float64)
    r, f, m = rfm.scores(out)
    out["r_score"], out["f_score"], out["m_score"] = r, f, m
    out["segment"] = segments(r, f, m, segment_rules)
    risk = out["churn_risk"].to_numpy(np.float64) if "churn_risk" in out.columns else None
    out["journey_stage"] = journey_stages(out, risk, journey_rules)
    return out


def describe_one(
    features: Mapping[str, Any],
    rfm: RFMScorer,
    segment_rules: SegmentRules | None = None,
    journey_rules: JourneyRules | None = None,
) -> dict[str, Any]:
    """The online path: ``r_score, f_score, m_score, segment, journey_stage`` of one feature dict
    (``churn_risk`` read from the dict)."""
    r, f, m = rfm.scores(features)
    return {
        "r_score": int(r[0]),
        "f_score": int(f[0]),
        "m_score": int(m[0]),
        "segment": str(segments(r, f, m, segment_rules)[0]),
        "journey_stage": str(journey_stages(features, None, journey_rules)[0]),
    }

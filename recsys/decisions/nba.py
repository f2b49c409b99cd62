"""Next best action: one arbitration over every lever, service actions included.

Candidates: ``recommend`` (show or send recommended items), ``offer`` (the best offer of
``recsys.decisions.offers``), ``review_request``, ``loyalty_invitation``, ``referral``,
``service_recovery`` (route to a person) and ``do_nothing``. First **eligibility**, then **expected
value** = propensity x value - cost; the highest wins, ``do_nothing`` (value 0) wins when nothing is
worth its cost. The parameters (:class:`NBAParams`) are documented defaults:

====================  ======================================  ===============================
action                eligible when                           propensity x value - cost
====================  ======================================  ===============================
service_recovery      a detractor (NPS 0-6 or CSAT 1-2)       0.5 x (40 + 0.5 x clv) - 10
offer                 an offer passed the offer rules         the offer's own expected value
recommend             items to show; not a detractor; on      (0.03 + 0.07 x (1 - risk)) x
                      email only with marketing consent       0.25 x avg_order_value
review_request        ordered in the last 30 days, no         0.2 x 5 - 0.1
                      survey answer yet; not a detractor
loyalty_invitation    >= 5 orders or segment champions/       (0.1 + 0.2 x min(freq/10, 1)) x
                      loyal; consent; not a detractor;        0.1 x clv - 2
                      not already a member
referral              a promoter (NPS 9-10); consent          0.15 x 60 - 1
do_nothing            always                                  0
====================  ======================================  ===============================

When the best offer is a referral invitation, a review request or a service recovery, it is a
candidate of that action type (``action_id`` the offer id), and of it and the built-in action the
more valuable one stays. A detractor is never offered a sales action (recommend, an offer other than
service recovery, loyalty, referral): service recovery comes first. ``churn_risk`` missing counts as
0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from pydantic import BaseModel

from recsys.customers.segments import JourneyRules, is_detractor, is_promoter, journey_stages
from recsys.decisions.offers import RankedOffer

ACTION_TYPES: Final[tuple[str, ...]] = (
    "recommend",
    "offer",
    "review_request",
    "loyalty_invitation",
    "referral",
    "service_recovery",
    "do_nothing",
)


#: Offer types that stand for an action: when the best offer is one, it replaces that action.
OFFER_COVERS: Final[dict[str, str]] = {
    "referral_invitation": "referral",
    "review_request": "review_request",
    "service_recovery": "service_recovery",
}


class NBAParams(BaseModel):
    recovery_propensity: float = 0.5
    recovery_value: float = 40.0
    recovery_clv_share: float = 0.5
    recovery_cost: float = 10.0
    recommend_base: float = 0.03
    recommend_engaged: float = 0.07
    recommend_margin: float = 0.25
    review_propensity: float = 0.2
    review_value: float = 5.0
    review_cost: float = 0.1
    loyalty_min_orders: int = 5
    loyalty_segments: tuple[str, ...] = ("champions", "loyal")
    loyalty_clv_share: float = 0.1
    loyalty_cost: float = 2.0
    referral_propensity: float = 0.15
    referral_value: float = 60.0
    referral_cost: float = 1.0


@dataclass(frozen=True)
class Action:
    action_id: str
    type: str
    title: str
    reason: str
    expected_value: float
    items: list[str] = field(default_factory=list)
    #: Of an offer's action: the policy that set its propensity, and its evidence
    #: (``recsys.decisions.adaptive``); a built-in action's propensity is the hand-set rule's.
    policy: str = "rules"
    propensity: float | None = None
    evidence: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action_id": self.action_id,
            "type": self.type,
            "title": self.title,
            "reason": self.reason,
            "expected_value": round(self.expected_value, 4),
            "items": list(self.items),
            "policy": self.policy,
        }
        if self.evidence is not None:
            body["propensity"] = None if self.propensity is None else round(self.propensity, 6)
            body["evidence"] = dict(self.evidence)
        return body


@dataclass(frozen=True)
class Decision:
    action: Action
    alternatives: list[Action]
    journey_stage: str
    churn_risk: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.to_dict(),
            "alternatives": [a.to_dict() for a in self.alternatives],
            "journey_stage": self.journey_stage,
            "churn_risk": self.churn_risk,
        }


def _num(features: Mapping[str, Any], name: str, default: float = 0.0) -> float:
    value = features.get(name)
    try:
        number = float(value) if value is not None else default
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


def _consent(features: Mapping[str, Any]) -> bool:
    value = features.get("marketing_consent")
    return True if value is None else bool(value)


def candidate_actions(
    features: Mapping[str, Any],
    *,
    offers: Sequence[RankedOffer] = (),
    items: Sequence[str] = (),
    channel: str | None = None,
    params: NBAParams | None = None,
) -> list[Action]:
    """Every eligible action with its expected value (unsorted; ``do_nothing`` included)."""
    p = params or NBAParams()
    f = features
    detractor = bool(is_detractor(f)[0])
    promoter = bool(is_promoter(f)[0])
    consent = _consent(f)
    risk = _num(f, "churn_risk", 0.5)
    clv = _num(f, "clv")
    freq = _num(f, "frequency")
    out = [Action("do_nothing", "do_nothing", "Do nothing now", "no action is worth its cost", 0.0)]
    best = offers[0] if offers else None
    if best is not None and (not detractor or best.type == "service_recovery"):
        kind = OFFER_COVERS.get(best.type, "offer")
        out.append(
            Action(
                best.offer_id,
                kind,
                best.title,
                best.reason,
                best.score,
                best.items,
                policy=best.policy,
                propensity=best.propensity,
                evidence={"responses": int(best.responses), "sends": int(best.sends)},
            )
        )
    if detractor:
        ev = p.recovery_propensity * (p.recovery_value + p.recovery_clv_share * clv)
        out.append(
            Action(
                "service_recovery",
                "service_recovery",
                "Route to customer service for recovery",
                f"detractor (NPS {_fmt(f, 'nps')}, CSAT {_fmt(f, 'csat')}): "
                "fix the experience before any sales contact",
                ev - p.recovery_cost,
            )
        )
    if detractor:
        return _one_per_covered_type(out)
    if items and (channel != "email" or consent):
        ev = (p.recommend_base + p.recommend_engaged * (1 - risk)) * (
            p.recommend_margin * _num(f, "avg_order_value")
        )
        out.append(
            Action(
                "recommend",
                "recommend",
                "Show personalized recommendations",
                f"{len(items)} items matched to their purchase history",
                ev,
                list(items),
            )
        )
    surveyed = np.isfinite(_num(f, "nps", np.nan)) or np.isfinite(_num(f, "csat", np.nan))
    if _num(f, "orders_30d") > 0 and not surveyed:
        out.append(
            Action(
                "review_request",
                "review_request",
                "Ask for a review of the latest order",
                "ordered in the last 30 days and has not rated us yet",
                p.review_propensity * p.review_value - p.review_cost,
            )
        )
    loyal_segment = str(f.get("segment")) in p.loyalty_segments
    member = bool(f.get("loyalty_member") or False)
    if consent and not member and (freq >= p.loyalty_min_orders or loyal_segment):
        propensity = 0.1 + 0.2 * min(freq / 10.0, 1.0)
        out.append(
            Action(
                "loyalty_invitation",
                "loyalty_invitation",
                "Invite to the loyalty programme",
                f"{freq:.0f} orders, segment {f.get('segment')}",
                propensity * p.loyalty_clv_share * clv - p.loyalty_cost,
            )
        )
    if promoter and consent:
        out.append(
            Action(
                "referral",
                "referral",
                "Ask for a referral",
                f"promoter (NPS {_fmt(f, 'nps')})",
                p.referral_propensity * p.referral_value - p.referral_cost,
            )
        )
    return _one_per_covered_type(out)


def _one_per_covered_type(actions: list[Action]) -> list[Action]:
    """Of an offer and a built-in action of the same covered type, keep the more valuable."""
    best: dict[str, Action] = {}
    for action in actions:
        if action.type in OFFER_COVERS.values():
            kept = best.get(action.type)
            if kept is None or action.expected_value > kept.expected_value:
                best[action.type] = action
    return [a for a in actions if a.type not in best or best[a.type] is a]


def _fmt(features: Mapping[str, Any], name: str) -> str:
    value = _num(features, name, np.nan)
    return f"{value:.0f}" if np.isfinite(value) else "?"


def next_best_action(
    features: Mapping[str, Any],
    *,
    offers: Sequence[RankedOffer] = (),
    items: Sequence[str] = (),
    channel: str | None = None,
    params: NBAParams | None = None,
    journey_rules: JourneyRules | None = None,
) -> Decision:
    """The best action now and the other eligible ones, best first.

    ``offers``: the customer's ranked offers (``recsys.decisions.offers.rank_offers``, already
    filtered by
    consent and contact policy); ``items``: recommended items, best first.
    """
    actions = candidate_actions(
        features, offers=offers, items=items, channel=channel, params=params
    )
    # highest value first; on a tie the order of ACTION_TYPES (service before sales)
    rank = {t: i for i, t in enumerate(("service_recovery", *ACTION_TYPES))}
    actions.sort(key=lambda a: (-a.expected_value, rank.get(a.type, len(rank))))
    if actions[0].expected_value <= 0 and actions[0].type != "do_nothing":
        nothing = next(a for a in actions if a.type == "do_nothing")
        actions.remove(nothing)
        actions.insert(0, nothing)
    stage = features.get("journey_stage")
    if not isinstance(stage, str):
        stage = str(journey_stages(features, None, journey_rules)[0])
    risk = _num(features, "churn_risk", np.nan)
    return Decision(
        action=actions[0],
        alternatives=actions[1:],
        journey_stage=stage,
        churn_risk=float(risk) if np.isfinite(risk) else None,
    )

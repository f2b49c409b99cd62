"""Adaptive propensity: a Beta-Binomial posterior per offer and context cell (pure numpy).

The prior of an offer's response rate in a cell is today's hand-set propensity
(:func:`recsys.decisions.offers.propensity`, per customer) with a configurable strength ``n0``:
``Beta(n0 * p0, n0 * (1 - p0))``. After ``sends`` sends and ``responses`` conversions in the
cell the posterior is ``Beta(n0 * p0 + responses, n0 * (1 - p0) + sends - responses)``, whose
mean is ``(n0 * p0 + responses) / (n0 + sends)``: the prior when nothing was observed, the
observed rate when the evidence outweighs ``n0``.

A **cell** is ``segment|journey_stage|channel`` (:func:`cell_of`; ``-`` for a missing part).
Policies:

* ``rules``: adaptation off, the prior itself (today's propensity);
* ``posterior_mean``: the posterior mean (web, app, next best action, and most batch decisions);
* ``thompson``: one draw from each offer's posterior (a share of the decisions on batch channels,
  :func:`explore_rows`), so that an offer never tried in a cell gets tried.

The counts come from the store (``feature_store.offer_stats``); this module only does the math.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from recsys.customers.segments import Features, n_rows
from recsys.decisions.offer_set import OfferSet
from recsys.decisions.offers import LearnedRow, propensity

Policy = Literal["rules", "posterior_mean", "thompson"]
POLICIES: Final[tuple[str, ...]] = ("rules", "posterior_mean", "thompson")
#: A prior propensity is clipped into ``[EPS, 1 - EPS]`` so that the Beta stays proper.
EPS: Final = 1e-4
MISSING: Final = "-"
ANY_CHANNEL: Final = "any"


def _part(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return MISSING
    text = str(value).strip()
    return text.replace("|", "/") if text else MISSING


def cell_of(segment: Any, stage: Any, channel: str | None) -> str:
    """The context cell ``segment|journey_stage|channel`` (``-`` for a missing part, ``any``
    for no channel)."""
    return f"{_part(segment)}|{_part(stage)}|{channel or ANY_CHANNEL}"


def cells_of(features: Features, channel: str | None) -> list[str]:
    """:func:`cell_of` of every customer of a feature table (or dict)."""
    if isinstance(features, Mapping):
        return [cell_of(features.get("segment"), features.get("journey_stage"), channel)]
    n = len(features)
    segments = features["segment"].tolist() if "segment" in features.columns else [None] * n
    stages = (
        features["journey_stage"].tolist() if "journey_stage" in features.columns else [None] * n
    )
    return [cell_of(s, t, channel) for s, t in zip(segments, stages, strict=True)]


def posterior(
    prior: np.ndarray | float,
    strength: float,
    sends: np.ndarray | float,
    responses: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, beta)`` of the Beta posterior (see the module docstring). Responses are
    clipped into ``[0, sends]`` (a response without a recorded send adds no evidence)."""
    p0 = np.clip(np.asarray(prior, dtype=np.float64), EPS, 1.0 - EPS)
    n = np.maximum(np.asarray(sends, dtype=np.float64), 0.0)
    r = np.clip(np.asarray(responses, dtype=np.float64), 0.0, n)
    n0 = max(float(strength), EPS)
    return n0 * p0 + r, n0 * (1.0 - p0) + (n - r)


def posterior_mean(
    prior: np.ndarray | float,
    strength: float,
    sends: np.ndarray | float,
    responses: np.ndarray | float,
) -> np.ndarray:
    alpha, beta = posterior(prior, strength, sends, responses)
    return np.asarray(alpha / (alpha + beta))


def explore_rows(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which of ``n`` decisions explore (Thompson sampling): each with probability ``share``."""
    if share <= 0 or n == 0:
        return np.zeros(n, dtype=bool)
    return np.asarray(rng.random(n) < share, dtype=bool)


#: Counts of one offer: cell -> (sends, responses).
CellCounts = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class Learned:
    """The propensities a decision uses, ``(n_customers, n_offers)`` each, with their evidence
    and the policy of each row."""

    propensity: np.ndarray
    sends: np.ndarray
    responses: np.ndarray
    policy: list[str]  # one per customer

    def row(self, i: int) -> LearnedRow:
        """Customer ``i``'s propensities and evidence, as :func:`rank_offers` takes them."""
        return LearnedRow(
            self.propensity[i].tolist(),
            self.sends[i].tolist(),
            self.responses[i].tolist(),
            self.policy[i],
        )


def prior_matrix(features: Features, offer_set: OfferSet) -> np.ndarray:
    """Today's hand-set propensity of every offer for every customer, ``(n, n_offers)``."""
    n, offers = n_rows(features), offer_set.offers
    out = np.zeros((n, len(offers)))
    for j, offer in enumerate(offers):
        out[:, j] = propensity(offer.type, features)
    return out


def evidence(
    offer_ids: Sequence[str], cells: Sequence[str], counts: Mapping[str, CellCounts]
) -> tuple[np.ndarray, np.ndarray]:
    """``(sends, responses)``, ``(len(cells), len(offer_ids))``, from the store's counts."""
    sends = np.zeros((len(cells), len(offer_ids)))
    responses = np.zeros_like(sends)
    index: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        index.setdefault(cell, []).append(i)
    for j, offer_id in enumerate(offer_ids):
        per_cell = counts.get(offer_id) or {}
        for cell, rows in index.items():
            found = per_cell.get(cell)
            if found is not None:
                sends[rows, j], responses[rows, j] = found
    return sends, responses


def learn(
    prior: np.ndarray,
    sends: np.ndarray,
    responses: np.ndarray,
    *,
    strength: float,
    adaptive: bool = True,
    explore: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> Learned:
    """The propensities of a decision: the prior (``adaptive`` off: policy ``rules``), the
    posterior mean, or for the rows in ``explore`` one Thompson draw per offer (``rng``)."""
    n = prior.shape[0]
    if not adaptive:
        return Learned(prior, sends, responses, ["rules"] * n)
    mean = posterior_mean(prior, strength, sends, responses)
    policy = ["posterior_mean"] * n
    if explore is not None and explore.any():
        rng = rng if rng is not None else np.random.default_rng()
        alpha, beta = posterior(prior[explore], strength, sends[explore], responses[explore])
        drawn = rng.beta(alpha, beta)
        mean = mean.copy()
        # an offer whose prior is 0 is not for this customer (no cart, not a detractor...)
        mean[explore] = np.where(prior[explore] > 0, drawn, 0.0)
        for i in np.flatnonzero(explore).tolist():
            policy[i] = "thompson"
    mean = np.where(prior > 0, mean, 0.0)
    return Learned(mean, sends, responses, policy)


def counts_dict(counts: Mapping[str, CellCounts]) -> dict[str, dict[str, dict[str, float]]]:
    """The counts as JSON: offer -> cell -> ``{sends, responses}``."""
    return {
        offer: {cell: {"sends": s, "responses": r} for cell, (s, r) in cells.items()}
        for offer, cells in counts.items()
    }


def known_offer_ids(offer_set: OfferSet) -> frozenset[str]:
    return frozenset(o.offer_id for o in offer_set.offers)


def unknown_offer(offer_ids: Iterable[str], offer_set: OfferSet) -> str | None:
    known = known_offer_ids(offer_set)
    return next((o for o in offer_ids if o not in known), None)

"""Adaptive propensity: a Beta-Binomial posterior per offer and context cell (pure numpy).

The prior of an offer's response rate in a cell is today's hand-set propensity
(:func:`recsys.decisions.offers.propensity`, per customer) with a strength ``n0``:
``Beta(n0 * p0, n0 * (1 - p0))``. After ``sends`` sends and ``responses`` conversions in the
cell the posterior is ``Beta(n0 * p0 + responses, n0 * (1 - p0) + sends - responses)``, whose
mean is ``(n0 * p0 + responses) / (n0 + sends)``: the prior when nothing was observed, the
observed rate when the evidence outweighs ``n0``.

**How much the priors are worth is learned too** (:func:`strength_posterior`). The configured
``prior_strength`` is only where a cell starts: ``n0`` ranges over that strength times
``2**k`` (:data:`STRENGTH_STEPS`, 1/16 to 64 times) with a normal hyperprior on ``k``
(:data:`STRENGTH_SD` doublings), and each customer's cell weighs those strengths by how well the
priors predicted the offers already tried there (the Beta-Binomial likelihood of their counts).
Where the tried offers respond as their priors said, the weight moves to strong priors: the
untried offers' posteriors stay narrow around their priors and a well-evidenced best offer is
rarely displaced. Where they do not, it moves to weak priors: every offer's posterior widens
and the evidence takes over quickly. Propensities and draws are over that mixture.

A **cell** is ``segment|journey_stage|channel`` (:func:`cell_of`; ``-`` for a missing part).
Policies:

* ``rules``: adaptation off, the prior itself (today's propensity);
* ``posterior_mean``: the posterior mean (web, app, next best action, and most batch decisions);
* ``thompson``: one draw from each offer's posterior, so that an offer never tried in a cell gets
  tried. On batch channels a decision explores with probability
  ``explore_share * n0 / (n0 + cell sends)`` (:func:`exploration_share`): the configured share in a
  cell with no evidence, decaying as the cell's evidence grows (the ``c / n`` schedule of
  decreasing-epsilon exploration, whose regret grows with the log of the decisions, where a fixed
  share would keep paying for exploration forever).

The counts come from the store (``feature_store.offer_stats``); this module only does the math.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from scipy.special import betaln

from recsys.customers.segments import Features, n_rows
from recsys.decisions.offer_set import OfferSet
from recsys.decisions.offers import LearnedRow, propensity

Policy = Literal["rules", "posterior_mean", "thompson"]
POLICIES: Final[tuple[str, ...]] = ("rules", "posterior_mean", "thompson")
#: A prior propensity is clipped into ``[EPS, 1 - EPS]`` so that the Beta stays proper.
EPS: Final = 1e-4
MISSING: Final = "-"
ANY_CHANNEL: Final = "any"
#: The prior strengths a cell may learn: the configured one times ``2**k`` for these ``k``.
STRENGTH_STEPS: Final = np.arange(-4.0, 7.0)
#: The hyperprior on ``k``: normal, centred on the configured strength, this many doublings wide.
STRENGTH_SD: Final = 2.0


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
    strength: np.ndarray | float,
    sends: np.ndarray | float,
    responses: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, beta)`` of the Beta posterior (see the module docstring). Responses are
    clipped into ``[0, sends]`` (a response without a recorded send adds no evidence)."""
    p0 = np.clip(np.asarray(prior, dtype=np.float64), EPS, 1.0 - EPS)
    n = np.maximum(np.asarray(sends, dtype=np.float64), 0.0)
    r = np.clip(np.asarray(responses, dtype=np.float64), 0.0, n)
    n0 = np.maximum(np.asarray(strength, dtype=np.float64), EPS)
    return n0 * p0 + r, n0 * (1.0 - p0) + (n - r)


def posterior_mean(
    prior: np.ndarray | float,
    strength: float,
    sends: np.ndarray | float,
    responses: np.ndarray | float,
) -> np.ndarray:
    alpha, beta = posterior(prior, strength, sends, responses)
    return np.asarray(alpha / (alpha + beta))


def strength_posterior(
    prior: np.ndarray, sends: np.ndarray, responses: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(strengths (m,), weights (n, m))``: the prior strengths a row's cell may have and their
    posterior weights given the cell's evidence (module docstring). Rows with the same counts
    (one cell) are weighed once, against the mean prior of their customers who may get each
    offer; an offer no such customer may get, or never sent, says nothing about the priors."""
    steps = STRENGTH_STEPS
    grid = max(float(strength), EPS) * 2.0**steps
    hyper = -0.5 * (steps / STRENGTH_SD) ** 2
    log_w = np.tile(hyper, (prior.shape[0], 1))
    rows = np.flatnonzero((np.maximum(sends, 0.0) > 0).any(axis=1))
    if rows.size:
        counts = np.concatenate([sends[rows], responses[rows]], axis=1)
        cells, inverse = np.unique(counts, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        eligible = np.zeros((len(cells), prior.shape[1]))
        total = np.zeros_like(eligible)
        np.add.at(eligible, inverse, prior[rows] > 0)
        np.add.at(total, inverse, np.maximum(prior[rows], 0.0))
        p0 = np.clip(total / np.maximum(eligible, 1.0), EPS, 1.0 - EPS)[:, None, :]
        n = np.maximum(cells[:, : prior.shape[1]], 0.0)
        r = np.clip(cells[:, prior.shape[1] :], 0.0, n)[:, None, :]
        told = ((n > 0) & (eligible > 0))[:, None, :]
        n = n[:, None, :]
        a, b = grid[None, :, None] * p0, grid[None, :, None] * (1.0 - p0)
        fit = np.where(told, betaln(a + r, b + n - r) - betaln(a, b), 0.0).sum(axis=2)
        log_w[rows] += fit[inverse]
    weights = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    return grid, weights / weights.sum(axis=1, keepdims=True)


def learned_mean(
    prior: np.ndarray, sends: np.ndarray, responses: np.ndarray, strength: float
) -> np.ndarray:
    """The posterior mean of every offer, over the learned prior strength."""
    grid, weights = strength_posterior(prior, sends, responses, strength)
    return _mixture_mean(prior, sends, responses, grid, weights)


def _mixture_mean(
    prior: np.ndarray,
    sends: np.ndarray,
    responses: np.ndarray,
    grid: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    alpha, beta = posterior(
        prior[:, None, :], grid[None, :, None], sends[:, None], responses[:, None]
    )
    return np.asarray(np.einsum("nm,nmk->nk", weights, alpha / (alpha + beta)))


def exploration_share(share: float, strength: float, cell_sends: np.ndarray) -> np.ndarray:
    """Each decision's chance to explore: ``share * n0 / (n0 + cell_sends)`` (module docstring)."""
    n0 = max(float(strength), EPS)
    return np.asarray(max(share, 0.0) * n0 / (n0 + np.maximum(cell_sends, 0.0)))


def explore_rows(n: int, share: np.ndarray | float, rng: np.random.Generator) -> np.ndarray:
    """Which of ``n`` decisions explore (Thompson sampling): each with probability ``share``
    (one for all, or one per decision)."""
    chance = np.broadcast_to(np.asarray(share, dtype=np.float64), (n,))
    if n == 0 or not (chance > 0).any():
        return np.zeros(n, dtype=bool)
    return np.asarray(rng.random(n) < chance, dtype=bool)


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
    posterior mean, or for the rows in ``explore`` one Thompson draw per offer (``rng``): a prior
    strength drawn from the row's learned weights, then each offer's rate from its posterior."""
    n = prior.shape[0]
    if not adaptive:
        return Learned(prior, sends, responses, ["rules"] * n)
    grid, weights = strength_posterior(prior, sends, responses, strength)
    mean = _mixture_mean(prior, sends, responses, grid, weights)
    policy = ["posterior_mean"] * n
    if explore is not None and explore.any():
        rng = rng if rng is not None else np.random.default_rng()
        cumulative = np.cumsum(weights[explore], axis=1)
        picked = (rng.random((cumulative.shape[0], 1)) > cumulative).sum(axis=1)
        n0 = grid[np.minimum(picked, grid.size - 1)][:, None]
        alpha, beta = posterior(prior[explore], n0, sends[explore], responses[explore])
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

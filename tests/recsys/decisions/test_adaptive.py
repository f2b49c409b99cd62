"""The Beta-Binomial posterior, Thompson sampling and the learned propensities (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.decisions.adaptive import (
    cell_of,
    cells_of,
    evidence,
    exploration_share,
    explore_rows,
    learn,
    learned_mean,
    posterior,
    posterior_mean,
    strength_posterior,
)


def test_the_posterior_of_a_prior_and_counts_is_the_textbook_one() -> None:
    # prior 0.1 worth 20 sends: Beta(2, 18); 30 sends, 12 responses: Beta(14, 36)
    alpha, beta = posterior(0.1, 20.0, 30, 12)
    assert (float(alpha), float(beta)) == pytest.approx((14.0, 36.0))
    assert float(posterior_mean(0.1, 20.0, 30, 12)) == pytest.approx(14 / 50)


def test_without_evidence_the_mean_is_the_prior_and_with_much_it_is_the_observed_rate() -> None:
    prior = np.array([0.04, 0.25, 0.5])
    assert posterior_mean(prior, 20.0, 0, 0) == pytest.approx(prior)
    assert posterior_mean(prior, 20.0, 1_000_000, 300_000) == pytest.approx(0.3, abs=1e-4)


def test_responses_beyond_the_sends_add_no_evidence() -> None:
    assert float(posterior_mean(0.2, 10.0, 5, 9)) == pytest.approx((2 + 5) / 15)


def test_cells_name_segment_stage_and_channel() -> None:
    assert cell_of("champions", "advocacy", "email") == "champions|advocacy|email"
    assert cell_of(None, float("nan"), None) == "-|-|any"
    assert cells_of({"segment": "a|b", "journey_stage": "x"}, "web") == ["a/b|x|web"]


def test_evidence_is_the_count_of_each_customers_cell() -> None:
    counts = {"o1": {"s|t|email": (10.0, 3.0)}, "o2": {}}
    sends, responses = evidence(["o1", "o2"], ["s|t|email", "u|t|email"], counts)
    assert sends.tolist() == [[10.0, 0.0], [0.0, 0.0]]
    assert responses.tolist() == [[3.0, 0.0], [0.0, 0.0]]


def test_the_share_of_thompson_decisions_is_the_configured_one() -> None:
    rows = explore_rows(20_000, 0.25, np.random.default_rng(7))
    assert rows.mean() == pytest.approx(0.25, abs=0.01)
    assert not explore_rows(100, 0.0, np.random.default_rng(7)).any()
    per_row = explore_rows(20_000, np.repeat([0.5, 0.0], 10_000), np.random.default_rng(7))
    assert per_row[:10_000].mean() == pytest.approx(0.5, abs=0.02) and not per_row[10_000:].any()


def test_the_share_decays_with_the_evidence_of_the_cell() -> None:
    # 0.1 * 20 / (20 + sends): the configured share with no evidence, a tenth of it at 180
    chance = exploration_share(0.1, 20.0, np.array([0.0, 180.0, 1980.0]))
    assert chance == pytest.approx([0.1, 0.01, 0.001])


def _strength(prior: list[float], sends: list[float], responses: list[float]) -> float:
    """The posterior mean of the learned prior strength of one cell."""
    grid, weights = strength_posterior(
        np.array([prior]), np.array([sends]), np.array([responses]), 20.0
    )
    return float(weights[0] @ grid)


def test_priors_that_predicted_the_tried_offers_are_trusted_more_and_contradicted_ones_less() -> (
    None
):
    # no evidence: the hyperprior, symmetric in doublings around the configured 20
    grid, weights = strength_posterior(
        np.array([[0.2, 0.1]]), np.zeros((1, 2)), np.zeros((1, 2)), 20
    )
    assert grid[np.argmax(weights[0])] == 20.0
    # the tried offer converted 2,000 of 10,000 as its prior said: strong priors
    assert _strength([0.2, 0.1], [10_000, 0], [2_000, 0]) > 100
    # it converted 2%, not 20%: weak priors, and the untried offer's mean stays its prior
    assert _strength([0.2, 0.1], [10_000, 0], [200, 0]) < 10
    mean = learned_mean(
        np.array([[0.2, 0.1]]), np.array([[10_000.0, 0]]), np.array([[200.0, 0]]), 20
    )
    assert mean[0] == pytest.approx([0.02, 0.1], abs=0.001)
    # an offer this customer may not get (prior 0) says nothing about the priors
    assert _strength([0.0, 0.1], [10_000, 0], [200, 0]) == pytest.approx(
        _strength([0.2, 0.1], [0, 0], [0, 0])
    )


def _draws(sends: list[float], responses: list[float], seed: int) -> np.ndarray:
    n = 4000
    learned = learn(
        np.full((n, 2), 0.1),
        np.tile(sends, (n, 1)),
        np.tile(responses, (n, 1)),
        strength=20.0,
        explore=np.ones(n, dtype=bool),
        rng=np.random.default_rng(seed),
    )
    assert set(learned.policy) == {"thompson"}
    return learned.propensity


def test_thompson_draws_are_reproducible_with_a_seed_and_follow_the_posterior() -> None:
    first = _draws([0.0, 980.0], [0.0, 490.0], seed=1)
    assert np.array_equal(first, _draws([0.0, 980.0], [0.0, 490.0], seed=1))
    assert not np.array_equal(first, _draws([0.0, 980.0], [0.0, 490.0], seed=2))
    assert first[:, 1].mean() == pytest.approx(0.5, abs=0.005)
    # offer 1 converted 50%, its prior said 10%: the priors are worth little, so the untried
    # offer 0 is drawn twice as wide as at the configured strength (Beta(2, 18), sd 0.065)
    configured_sd = np.sqrt(2 * 18 / (20**2 * 21))
    assert first[:, 0].std() > 2 * configured_sd
    # had offer 1 converted 10% as its prior said, offer 0 would stay near its prior
    confirmed = _draws([0.0, 980.0], [0.0, 98.0], seed=1)
    assert confirmed[:, 0].std() < configured_sd
    assert confirmed[:, 0].mean() == pytest.approx(0.1, abs=0.005)


def test_rules_keep_the_prior_and_a_zero_prior_stays_zero() -> None:
    prior = np.array([[0.2, 0.0]])
    sends, responses = np.array([[100.0, 100.0]]), np.array([[90.0, 90.0]])
    rules = learn(prior, sends, responses, strength=20.0, adaptive=False)
    assert rules.policy == ["rules"] and rules.propensity.tolist() == [[0.2, 0.0]]
    mean = learn(prior, sends, responses, strength=20.0)
    assert mean.policy == ["posterior_mean"]
    assert mean.propensity[0, 0] == pytest.approx(learned_mean(prior, sends, responses, 20.0)[0, 0])
    assert 0.85 < mean.propensity[0, 0] < 0.9 and mean.propensity[0, 1] == 0


def test_a_budget_says_which_limit_is_used_up() -> None:
    from recsys.decisions.offer_set import Budget, parse_offer_set

    budget = Budget(sends_per_day=10, redemptions_total=3)
    assert budget.exhausted(9, 500, 0, 2) is None
    assert budget.exhausted(10, 10, 0, 0) == "budget exhausted: sends per day 10/10"
    assert budget.exhausted(0, 0, 0, 3) == "budget exhausted: redemptions in total 3/3"
    offer = {"offer_id": "o", "type": "discount", "title": "t", "budget": {"sends_total": 5}}
    assert parse_offer_set({"offers": [offer]}).offers[0].budget == Budget(sends_total=5)
    with pytest.raises(ValueError, match="sends_totl"):
        parse_offer_set({"offers": [{**offer, "budget": {"sends_totl": 5}}]})

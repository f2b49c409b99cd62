"""The Beta-Binomial posterior, Thompson sampling and the learned propensities (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.decisions.adaptive import (
    cell_of,
    cells_of,
    evidence,
    explore_rows,
    learn,
    posterior,
    posterior_mean,
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


def test_thompson_draws_are_reproducible_with_a_seed_and_follow_the_posterior() -> None:
    prior = np.full((4000, 2), 0.1)
    sends = np.tile([0.0, 980.0], (4000, 1))
    responses = np.tile([0.0, 490.0], (4000, 1))
    explore = np.ones(4000, dtype=bool)

    def draw(seed: int) -> np.ndarray:
        learned = learn(
            prior,
            sends,
            responses,
            strength=20.0,
            explore=explore,
            rng=np.random.default_rng(seed),
        )
        assert set(learned.policy) == {"thompson"}
        return learned.propensity

    first = draw(1)
    assert np.array_equal(first, draw(1)) and not np.array_equal(first, draw(2))
    # offer 0: Beta(2, 18) (mean 0.1, sd 0.065); offer 1: Beta(492, 508) (mean 0.492)
    assert first[:, 0].mean() == pytest.approx(0.1, abs=0.005)
    assert first[:, 0].std() == pytest.approx(np.sqrt(2 * 18 / (20**2 * 21)), rel=0.05)
    assert first[:, 1].mean() == pytest.approx(492 / 1000, abs=0.002)


def test_rules_keep_the_prior_and_a_zero_prior_stays_zero() -> None:
    prior = np.array([[0.2, 0.0]])
    sends, responses = np.array([[100.0, 100.0]]), np.array([[90.0, 90.0]])
    rules = learn(prior, sends, responses, strength=20.0, adaptive=False)
    assert rules.policy == ["rules"] and rules.propensity.tolist() == [[0.2, 0.0]]
    mean = learn(prior, sends, responses, strength=20.0)
    assert mean.policy == ["posterior_mean"]
    assert mean.propensity[0, 0] == pytest.approx((4 + 90) / 120) and mean.propensity[0, 1] == 0


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

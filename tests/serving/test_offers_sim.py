"""The direction of ``benchmarks/offers_sim.py`` on a small population: where the hand-set priors
are wrong, the adaptive policy regrets less and converts more than the static rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servingkit import API_KEYS as TEST_KEYS
from servingkit import TestClient

from benchmarks import offers_sim
from recsys.config import OffersConfig, Settings
from serving.app import create_app


def run(settings: Settings, customers: list[str], groups: Any, truth: Any) -> offers_sim.Outcome:
    with TestClient(create_app(settings)) as client:

        def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code in (200, 202), response.text
            result: dict[str, Any] = response.json()
            return result

        return offers_sim.campaign(post, customers, groups, truth, rounds=6, seed=3)


def test_the_adaptive_policy_beats_the_static_one_where_the_priors_are_wrong(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    customers, groups = offers_sim.population(90, seed=3)
    names = list(offers_sim.GROUPS)
    root = offers_sim.make_root(customers, [names[g] for g in groups], tmp_path / "artifacts")
    keys = {**TEST_KEYS, offers_sim.READ["X-API-Key"]: frozenset({"read"})}
    keys[offers_sim.WRITE["X-API-Key"]] = frozenset({"write"})
    truth = offers_sim.true_rates("wrong")
    outcomes = {}
    for adaptive in (True, False):
        settings = Settings(
            redis_url=redis_url,
            redis_prefix=f"{redis_prefix}:{adaptive}",
            artifacts=root,
            api_keys=keys,
            offers=OffersConfig(adaptive=adaptive),
        )
        outcomes[adaptive] = run(settings, customers, groups, truth)
    adaptive, static = outcomes[True], outcomes[False]
    assert adaptive.regret[-1] < 0.7 * static.regret[-1]
    assert adaptive.conversions[-1] > static.conversions[-1]

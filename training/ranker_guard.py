"""The validation guard: serve whichever of the learned ranker, the blend and the best single
candidate generator has the highest validation NDCG@K (the validation window lies wholly
before the training cut, so evaluation stays honest)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from recsys.ranking.generator_ranker import GENERATORS, GeneratorRanker
from recsys.ranking.scoring import RankingModel
from recsys.ranking.signals import Ranker

#: the order ties are broken in (the learned ranker first, then the blend, then generators)
PREFERENCE = ("ranker", "blend", *GENERATORS)


def choose_served(figures: Mapping[str, float], generators: Mapping[str, float]) -> str:
    """The name (``ranker``, ``blend`` or a generator) with the highest validation NDCG; a tie
    goes to the earlier name of :data:`PREFERENCE`."""
    candidates = {name: figures[name] for name in ("ranker", "blend") if name in figures}
    candidates.update(generators)
    return max(PREFERENCE, key=lambda n: (candidates.get(n, float("-inf")), -PREFERENCE.index(n)))


def generator_figures(
    model: RankingModel, task: str, ndcg: Callable[[RankingModel], float]
) -> dict[str, float]:
    """Each servable generator's validation NDCG, served as ``task``'s ranker of ``model``."""
    out: dict[str, float] = {}
    for generator in GENERATORS:
        ranker: Ranker = GeneratorRanker(generator)
        rankers = {**model.rankers, task: ranker}
        out[generator] = ndcg(replace(model, rankers=rankers))
    return out

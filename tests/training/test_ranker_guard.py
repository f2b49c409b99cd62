"""The validation guard serves the best of the ranker, the blend and the single generators."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking.candidates import FEATURES
from recsys.ranking.generator_ranker import GeneratorRanker, generator_rankers
from training.ranker_guard import choose_served


def test_the_guard_serves_popularity_where_it_beats_ranker_and_blend() -> None:
    figures = {"ranker": 0.20, "blend": 0.13, "ease": 0.25}  # ease is no candidate to serve
    assert choose_served(figures, {"popularity": 0.22, "trend": 0.21}) == "popularity"


def test_the_guard_keeps_the_ranker_where_it_is_best() -> None:
    figures = {"ranker": 0.30, "blend": 0.13}
    assert choose_served(figures, {"popularity": 0.22, "trend": 0.29}) == "ranker"
    assert choose_served({"ranker": 0.1, "blend": 0.2}, {"popularity": 0.1}) == "blend"


def test_a_tie_goes_to_the_learned_ranker() -> None:
    assert choose_served({"ranker": 0.2, "blend": 0.2}, {"popularity": 0.2}) == "ranker"


def test_a_generator_ranker_scores_by_its_column() -> None:
    features = np.random.default_rng(0).random((5, len(FEATURES))).astype(np.float32)
    scores = GeneratorRanker("popularity").predict(features)
    assert np.array_equal(scores, features[:, FEATURES.index("popularity")])
    with pytest.raises(ValueError):
        GeneratorRanker("cf")


def test_the_manifest_names_the_generator_served() -> None:
    report = {"discovery": {"served": "trend"}, "all": {"served": "ranker"}, "cutoffs": ["x"]}
    rankers = generator_rankers(report)
    assert set(rankers) == {"discovery"}
    assert isinstance(rankers["discovery"], GeneratorRanker)
    assert rankers["discovery"].generator == "trend"


def test_the_guard_may_serve_recent_popularity_by_its_last_column() -> None:
    figures = {"ranker": 0.20, "blend": 0.13}
    generators = {"popularity": 0.21, "trend": 0.19, "popularity_recent": 0.23}
    assert choose_served(figures, generators) == "popularity_recent"
    features = np.random.default_rng(1).random((6, len(FEATURES))).astype(np.float32)
    scores = GeneratorRanker("popularity_recent").predict(features)
    assert FEATURES[-1] == "popularity_recent"
    assert np.array_equal(scores, features[:, -1])
    rankers = generator_rankers({"all": {"served": "popularity_recent"}})
    assert isinstance(rankers["all"], GeneratorRanker)

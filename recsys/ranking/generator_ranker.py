"""A candidate generator served as a task's answer: its feature column is the ranking.

The validation guard (``training.ranker_guard``) may find that a single generator (the
popularity, trending or recent popularity prior) beats both the learned ranker and the blend
on the validation window; it then records ``served: <generator>`` in
``manifest.params["ranker"][task]``, and serving and evaluation rank that task's candidates
by the generator's feature column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from recsys.ranking.candidates import FEATURES
from recsys.ranking.signals import Ranker

#: the generators the guard may serve (each a column of FEATURES)
GENERATORS: Final = ("popularity", "trend", "popularity_recent")


class GeneratorRanker:
    """Scores each candidate by one feature column (a generator's score)."""

    def __init__(self, generator: str) -> None:
        if generator not in GENERATORS:
            raise ValueError(f"{generator!r} is not a servable generator {GENERATORS}")
        self.generator = generator
        self._column = FEATURES.index(generator)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features[:, self._column], dtype=np.float32)


def generator_rankers(report: Mapping[str, Any]) -> dict[str, Ranker]:
    """Task -> :class:`GeneratorRanker` for the tasks whose ``served`` (in the ranker report,
    ``manifest.params["ranker"]``) names a generator."""
    rankers: dict[str, Ranker] = {}
    for task, entry in report.items():
        if isinstance(entry, Mapping) and entry.get("served") in GENERATORS:
            rankers[task] = GeneratorRanker(str(entry["served"]))
    return rankers

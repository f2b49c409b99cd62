"""Candidate retrieval: the index finds the items exact scoring ranks first, cheaply."""

from __future__ import annotations

import numpy as np

from recsys.ranking.retrieval import ItemIndex


def clustered(n_items: int = 4000, factors: int = 16, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, factors))
    return (
        centres[rng.integers(0, 40, n_items)] + 0.3 * rng.normal(size=(n_items, factors))
    ).astype(np.float32)


def test_every_item_is_in_exactly_one_cluster() -> None:
    index = ItemIndex.build(clustered())
    assert sorted(index.rows.tolist()) == list(range(4000))
    assert index.offsets[0] == 0 and index.offsets[-1] == 4000
    assert len(index.centroids) == 63 and index.probes == 8


def test_the_index_recalls_most_of_the_exact_top_20_on_a_fraction_of_the_items() -> None:
    items = clustered()
    index = ItemIndex.build(items, seed=2)
    rng = np.random.default_rng(3)
    recalls, shares = [], []
    for _ in range(50):
        user = items[rng.integers(0, len(items))] + 0.1 * rng.normal(size=items.shape[1])
        exact = set(np.argsort(-(items @ user))[:20].tolist())
        approx = index.cf_scores(items, user.astype(np.float32))
        found = set(np.argsort(-approx, kind="stable")[:20].tolist())
        recalls.append(len(exact & found) / 20)
        shares.append(len(index.candidates(user)) / len(items))
    assert np.mean(recalls) > 0.9
    assert np.mean(shares) < 0.3


def test_cf_scores_are_exact_on_candidates_and_their_minimum_elsewhere() -> None:
    items = clustered(500)
    index = ItemIndex.build(items, clusters=10, probes=2)
    user = items[7]
    rows = index.candidates(user)
    scores = index.cf_scores(items, user)
    np.testing.assert_allclose(scores[rows], items[rows] @ user, rtol=1e-5)
    others = np.setdiff1d(np.arange(500), rows)
    assert others.size and np.all(scores[others] == scores[rows].min())
    assert 7 in rows.tolist()  # an item's own cluster is probed for its own vector

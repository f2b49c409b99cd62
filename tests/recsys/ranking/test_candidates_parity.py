"""The served two-stage ranking (fused selections, sparse ``buy_again``, features at the
candidates only, reasons for the winners only) gives exactly what the straightforward
reference (``reference_candidates.py``: dense blend, an ``argpartition`` per generator) gives:
the same candidate rows, the same features bit for bit, the same ranked rows, scores and
reasons, on random customers with blocked items, page context, duplicated live purchases, an
empty history, cold start, approximate ``cf`` and values tied at every cut."""

from __future__ import annotations

import numpy as np
import pytest
import reference_candidates as reference

from recsys.ranking.batch import rank_customer, rank_one
from recsys.ranking.candidates import FEATURES, candidates_for, rank_candidates
from recsys.ranking.retrieval import ItemIndex
from recsys.ranking.scoring import RankingModel, RankingParams
from recsys.ranking.selection import best_rows, union_of_best
from recsys.ranking.signals import ItemSignals

N_ITEMS, FACTORS, K_NEIGHBOURS, EASE_ITEMS = 700, 8, 12, 500


class Linear:
    """A deterministic ranker over every feature."""

    def __init__(self, seed: int) -> None:
        self.weights = np.random.default_rng(seed).normal(size=len(FEATURES)).astype(np.float32)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weights


def _model(seed: int, coarse: bool) -> RankingModel:
    """Random arrays; ``coarse`` rounds them to one decimal so that values tie everywhere;
    every third seed other blend weights (no buy-again, no neighbours)."""
    rng = np.random.default_rng(seed)

    def values(*shape: int) -> np.ndarray:
        v = rng.random(shape, dtype=np.float32)
        return np.round(v, 1).astype(np.float32) if coarse else v

    factors = rng.normal(size=(N_ITEMS, FACTORS)).astype(np.float32)
    if coarse:
        factors = np.round(factors).astype(np.float32)
    neighbours = rng.integers(0, N_ITEMS, size=(N_ITEMS, K_NEIGHBOURS)).astype(np.int32)
    neighbours[rng.random(neighbours.shape) < 0.2] = -1
    ease = values(EASE_ITEMS, EASE_ITEMS) - np.float32(0.45)
    np.fill_diagonal(ease, 0.0)
    popularity = values(N_ITEMS)
    popularity[rng.random(N_ITEMS) < 0.3] = 0.0
    signals = ItemSignals(
        ease_columns=np.sort(rng.choice(N_ITEMS, EASE_ITEMS, replace=False)).astype(np.int64),
        ease_weights=np.ascontiguousarray(ease),
        trend=np.where(rng.random(N_ITEMS) < 0.5, values(N_ITEMS), 0).astype(np.float32),
        repeat_rate=values(N_ITEMS),
        gap_days=np.where(rng.random(N_ITEMS) < 0.3, -1, values(N_ITEMS) * 60).astype(np.float32),
        log_price=values(N_ITEMS),
        recent=np.where(rng.random(N_ITEMS) < 0.6, values(N_ITEMS), 0).astype(np.float32),
    )
    return RankingModel(
        item_factors=factors,
        neighbour_indices=neighbours,
        neighbour_scores=values(N_ITEMS, K_NEIGHBOURS),
        popularity=popularity,
        params=RankingParams()  # and other weights, some switched off
        if seed % 3 != 2
        else RankingParams(cf_weight=0.7, repeat_weight=0.0, popularity_weight=0.3, knn_weight=0.0),
        signals=signals,
        rankers={"all": Linear(seed), "discovery": Linear(seed + 1)},
    )


def _customer(rng: np.random.Generator, model: RankingModel, kind: int) -> tuple:
    """kind 0: cold; 1: a vector only; 2: a history only; else both, live purchases
    sometimes repeating bought items; a page context in half the cases."""
    vector = None
    if kind in (1, 3, 4, 5):
        vector = rng.normal(size=FACTORS).astype(np.float32)
    size = 0 if kind in (0, 1) else int(rng.integers(1, 160))
    items = rng.choice(N_ITEMS, size, replace=False).astype(np.int64)
    if size and kind == 5:  # live purchases of items bought before
        items = np.concatenate([items, items[: max(1, size // 4)]])
    counts = rng.integers(1, 6, items.size).astype(np.float32)
    ages = np.round(rng.random(items.size) * 300).astype(np.float32)  # ties in recency
    context = rng.choice(N_ITEMS, int(rng.integers(0, 6)), replace=False).astype(np.int64)
    weights = (0.8 ** np.arange(context.size)).astype(np.float32)
    cf = None
    if vector is not None and rng.random() < 0.25:  # a large catalogue's approximate cf
        cf = ItemIndex.build(model.item_factors, clusters=20, probes=3).cf_scores(
            model.item_factors, vector
        )
    if rng.random() < 0.5:
        return (vector, items, counts, ages, context, weights, cf)
    return (vector, items, counts, ages, None, None, cf)


def _blocked(rng: np.random.Generator, customer: tuple) -> np.ndarray | None:
    if rng.random() < 0.2:
        return None
    blocked = rng.random(N_ITEMS) < rng.choice([0.01, 0.1, 0.6, 0.97])
    if rng.random() < 0.5:
        blocked[customer[1]] = True  # exclude_purchased
    return blocked


@pytest.mark.parametrize("coarse", [False, True])
def test_the_served_ranking_is_the_reference_ranking(coarse: bool) -> None:
    rng = np.random.default_rng(11 + coarse)
    for seed in range(3):
        model = _model(seed, coarse)
        signals = model.signals
        assert signals is not None
        for case in range(120):
            customer = _customer(rng, model, case % 6)
            blocked = _blocked(rng, customer)
            k = int(rng.choice([1, 10, 40, 60, 200]))
            task = "all" if case % 2 else "discovery"
            ranker = model.rankers[task]
            known = _known(customer)
            if known:
                want = reference.candidates_for(model, signals, customer, k, blocked)
                got = candidates_for(model, signals, customer, k, blocked)
                np.testing.assert_array_equal(got.rows, want.rows)
                np.testing.assert_array_equal(got.features.view(np.int32),
                                              want.features.view(np.int32))  # fmt: skip
                want_top = reference.rank_candidates(model, signals, ranker, customer, k, blocked)
                got_top = rank_candidates(model, signals, ranker, customer, k, blocked)
            else:
                want_top = rank_one(model, customer, k, blocked)
                got_top = rank_customer(model, customer, k, blocked, task)
            np.testing.assert_array_equal(got_top.rows, want_top.rows)
            np.testing.assert_array_equal(got_top.scores, want_top.scores)
            assert got_top.reasons == want_top.reasons


def _known(customer: tuple) -> bool:
    vector = customer[0]
    return len(customer[1]) > 0 or (vector is not None and bool(np.any(vector)))


def test_the_fused_selection_takes_the_definitions_rows_when_values_tie_at_the_cut() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 400))
        blocked = rng.random(n) < 0.3 if rng.random() < 0.7 else None
        values = [np.round(rng.normal(size=n), int(rng.integers(0, 3))).astype(np.float32)
                  for _ in range(3)]  # fmt: skip
        wanted = [int(rng.integers(1, 60)) for _ in range(3)]
        sources = [(values[0], wanted[0], False, False), (values[1], wanted[1], True, False),
                   (values[2], wanted[2], True, False)]  # fmt: skip
        expected = np.zeros(n, dtype=bool)
        for v, w, positive, _ in sources:
            expected[best_rows(v, blocked, w, positive)] = True
        np.testing.assert_array_equal(union_of_best(sources, blocked, n), expected)


@pytest.mark.parametrize("seed", range(6))
def test_ease_scores_are_the_gathered_rows_sum_bit_for_bit(seed: int) -> None:
    """EASE's scores sum the rows in place: exactly ``weights[columns].sum(axis=0)`` of the
    history's distinct EASE columns, ascending (duplicates, items outside the columns, one
    item, a hundred), scattered onto the items; -0.0 included."""
    rng = np.random.default_rng(seed)
    signals = _model(seed, coarse=seed % 2 == 1).signals
    assert signals is not None
    for size in (1, 2, 7, 40, 100, 300):
        history = rng.integers(0, N_ITEMS, size=size)
        at = signals.ease_position[history]
        columns = np.unique(at[at >= 0])
        expected = np.zeros(N_ITEMS, dtype=np.float32)
        if columns.size:
            gathered = np.take(signals.ease_weights, columns, axis=0)
            expected[signals.ease_columns] = gathered.sum(axis=0, dtype=np.float32)
        got = signals.ease_scores(history)
        assert got.dtype == np.float32
        assert np.array_equal(got.view(np.int32), expected.view(np.int32))

"""The block-batched two-stage ranking gives every customer exactly what it gets alone.

``rank_items_batch`` with a learned ranker (``recsys.ranking.candidates_block``) against
``rank_customer`` one customer at a time: the same rows, order and reasons, and the same
scores bit for bit, on random customers (with and without vectors, empty histories, cold
start, page contexts), blocked items and per-customer blocked rows, both tasks, a real
LightGBM ranker run by onnxruntime.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pytest

from recsys.ranking.batch import (
    BLOCK_VALUES,
    BatchCounts,
    TopItems,
    rank_customer,
    rank_items_batch,
    rank_one,
)
from recsys.ranking.candidates import FEATURES, candidates_for
from recsys.ranking.customer_batch import CustomerBatch
from recsys.ranking.scoring import RankingModel, RankingParams
from recsys.ranking.signals import ItemSignals, Ranker
from training.ranker_onnx import SessionRanker, booster_to_onnx

N_ITEMS = 500
FACTORS = 12


def random_signals(rng: np.random.Generator, n_items: int) -> ItemSignals:
    """EASE over a random half of the items (weights of both signs, many zeros), a trend
    prior with zeros and ties, rhythms with unknowns."""
    columns = np.sort(rng.choice(n_items, n_items // 2, replace=False)).astype(np.int64)
    m = columns.size
    weights = rng.normal(0, 0.2, (m, m)).astype(np.float32)
    weights[rng.random((m, m)) < 0.7] = 0.0
    np.fill_diagonal(weights, 0.0)
    trend = np.round(rng.random(n_items), 1).astype(np.float32)
    trend[rng.random(n_items) < 0.4] = 0.0
    gap = np.round(rng.random(n_items) * 60, 0).astype(np.float32)
    gap[rng.random(n_items) < 0.3] = -1.0
    recent = np.round(rng.random(n_items), 1).astype(np.float32)  # ties, zeros
    recent[rng.random(n_items) < 0.5] = 0.0
    return ItemSignals(
        ease_columns=columns,
        ease_weights=weights,
        trend=trend,
        repeat_rate=rng.random(n_items).astype(np.float32),
        gap_days=gap,
        log_price=np.log1p(rng.random(n_items) * 20).astype(np.float32),
        recent=recent,
    )


def random_model(
    rng: np.random.Generator, n_items: int = N_ITEMS, ties: bool = False
) -> RankingModel:
    """Factors with zero rows and duplicates (exact cf ties), padded neighbour lists, a prior
    with zeros and ties; ``ties``: coarse neighbour scores and factors (ties at every cut)."""
    factors = rng.normal(0, 0.3, (n_items, FACTORS)).astype(np.float32)
    factors[: n_items // 20] = 0.0
    factors[n_items // 20 : n_items // 10] = factors[n_items // 10 : 3 * n_items // 20]
    k = 8
    neighbours = np.stack([rng.choice(n_items, k, replace=False) for _ in range(n_items)])
    neighbours[rng.random((n_items, k)) < 0.15] = -1
    scores = np.where(neighbours >= 0, rng.random((n_items, k)), 0.0).astype(np.float32)
    if ties:
        factors = np.round(factors * 2) / 2
        scores = np.where(neighbours >= 0, 0.5, 0.0).astype(np.float32)
    popularity = np.round(rng.random(n_items), 1).astype(np.float32)
    popularity[rng.random(n_items) < 0.3] = 0.0
    return RankingModel(
        item_factors=factors,
        neighbour_indices=neighbours.astype(np.int32),
        neighbour_scores=scores,
        popularity=popularity,
        params=RankingParams(),
        signals=random_signals(rng, n_items),
    )


def random_customers(rng: np.random.Generator, model: RankingModel, n: int) -> CustomerBatch:
    """Customers with and without vectors (some all-zero), histories (some empty: with no
    vector either, cold start; some with an item twice) and page contexts (some empty)."""
    vectors: list[np.ndarray | None] = []
    histories, contexts = [], []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            vectors.append(None)
        elif kind == 1:
            vectors.append(np.zeros(FACTORS, dtype=np.float32))
        else:
            vectors.append(rng.normal(0, 0.5, FACTORS).astype(np.float32))
        size = 0 if i % 7 == 0 else int(rng.integers(1, 120))
        items = rng.integers(0, model.n_items, size)
        if size > 2:
            items[-1] = items[0]
        ages = np.round(rng.random(size) * 300).astype(np.float32)  # ties in recency
        histories.append((items, rng.integers(1, 6, size).astype(np.float32), ages))
        views = rng.integers(0, model.n_items, int(rng.integers(0, 4)) if i % 3 == 0 else 0)
        contexts.append((views, (0.8 ** np.arange(views.size)).astype(np.float32)))
    return CustomerBatch.build(FACTORS, vectors, histories, contexts)


def trained_ranker(rng: np.random.Generator, model: RankingModel, seed: int) -> SessionRanker:
    """A LightGBM lambdarank booster (ONNX, onnxruntime) fitted on the candidates' own
    features, so that its splits fall where the candidates' values lie."""
    assert model.signals is not None
    customers = random_customers(rng, model, 60)
    blocks, groups = [], []
    for i in range(len(customers)):
        found = candidates_for(model, model.signals, customers.customer(i), 10, None)
        if found.rows.size:
            blocks.append(found.features)
            groups.append(found.rows.size)
    x = np.concatenate(blocks)
    mix = np.random.default_rng(seed).normal(size=len(FEATURES))
    y = ((x @ mix) + rng.normal(scale=0.5, size=x.shape[0]) > 0.5).astype(np.float32)
    booster = lgb.LGBMRanker(n_estimators=30, num_leaves=15, min_child_samples=5, verbose=-1,
                             n_jobs=1, random_state=seed)  # fmt: skip
    booster.fit(x, y, group=groups)
    return SessionRanker(booster_to_onnx(booster.booster_, len(FEATURES)))


@pytest.fixture(scope="module")
def model() -> RankingModel:
    rng = np.random.default_rng(11)
    base = random_model(rng)
    rankers = {"all": trained_ranker(rng, base, 1), "discovery": trained_ranker(rng, base, 2)}
    return dataclasses.replace(base, rankers=rankers)


def masks(
    n_items: int, blocked: np.ndarray | None, rows: Sequence[np.ndarray] | None, n: int
) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for i in range(n):
        if rows is None or not len(rows[i]):
            out.append(blocked)
            continue
        mask = np.zeros(n_items, dtype=bool) if blocked is None else blocked.copy()
        mask[rows[i]] = True
        out.append(mask)
    return out


def assert_same(got: list[TopItems], expected: list[TopItems]) -> None:
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.rows.tolist() == b.rows.tolist(), i
        assert a.reasons == b.reasons, i
        assert a.scores.tobytes() == b.scores.astype(np.float32).tobytes(), i


@pytest.mark.parametrize("task", ["all", "discovery"])
@pytest.mark.parametrize("k", [1, 7, 25])
def test_the_block_ranks_every_customer_as_rank_customer_does(
    model: RankingModel, task: str, k: int
) -> None:
    rng = np.random.default_rng(k)
    n = 2 * (BLOCK_VALUES // N_ITEMS) + 17  # two full blocks and a part
    customers = random_customers(rng, model, n)
    blocked = rng.random(N_ITEMS) < 0.1
    own: list[np.ndarray] = [rng.integers(0, N_ITEMS, int(rng.integers(0, 5))) for _ in range(n)]
    if task == "discovery":  # bought items blocked, as the offline evaluation does
        own = [np.concatenate([own[i], customers.customer(i)[1]]) for i in range(n)]
    counts = BatchCounts()
    got = rank_items_batch(model, customers, k, blocked, own, task, counts)
    each = masks(N_ITEMS, blocked, own, n)
    expected = [rank_customer(model, customers.customer(i), k, each[i], task) for i in range(n)]
    assert_same(got, expected)
    assert counts.customers == n
    assert counts.cold == sum(
        customers.customer(i)[0] is None and not len(customers.customer(i)[1]) for i in range(n)
    )
    # the single path is the exception (this model ties on purpose: a prior rounded to 0.1)
    assert counts.redone < n // 5


def test_nothing_blocked_and_customers_with_everything_blocked(model: RankingModel) -> None:
    rng = np.random.default_rng(3)
    customers = random_customers(rng, model, 40)
    got = rank_items_batch(model, customers, 5, None, None, "all")
    expected = [rank_customer(model, customers.customer(i), 5, None, "all") for i in range(40)]
    assert_same(got, expected)
    everything = np.ones(N_ITEMS, dtype=bool)
    assert all(t.rows.size == 0 for t in rank_items_batch(model, customers, 5, everything))


def test_ties_at_every_cut_are_settled_by_the_single_path() -> None:
    rng = np.random.default_rng(5)
    base = random_model(rng, ties=True)
    ranked = dataclasses.replace(base, rankers={"all": trained_ranker(rng, base, 3)})
    customers = random_customers(rng, ranked, 120)
    counts = BatchCounts()
    got = rank_items_batch(ranked, customers, 6, None, None, "all", counts)
    expected = [rank_customer(ranked, customers.customer(i), 6, None, "all") for i in range(120)]
    assert_same(got, expected)
    assert counts.redone > 0  # the coarse model ties at the cuts: those went the single way


class CountingRanker:
    """The ranker, counting its runs and the rows it scored."""

    def __init__(self, inner: Ranker) -> None:
        self.inner, self.runs, self.rows = inner, 0, 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.runs += 1
        self.rows += features.shape[0]
        return self.inner.predict(features)


def test_one_ranker_run_a_block_besides_the_customers_ranked_again(model: RankingModel) -> None:
    counting = CountingRanker(model.rankers["all"])
    with_counting = dataclasses.replace(model, rankers={"all": counting})
    customers = random_customers(np.random.default_rng(8), model, 3 * (BLOCK_VALUES // N_ITEMS))
    counts = BatchCounts()
    rank_items_batch(with_counting, customers, 10, None, None, "all", counts)
    assert counting.runs == 3 + counts.redone  # the cold ones are the blend's: no ranker


def test_a_task_without_a_ranker_and_a_model_without_signals_are_the_blends(
    model: RankingModel,
) -> None:
    customers = random_customers(np.random.default_rng(9), model, 50)
    only_discovery = dataclasses.replace(model, rankers={"discovery": model.rankers["discovery"]})
    no_signals = dataclasses.replace(model, signals=None)
    blend = [rank_one(model, customers.customer(i), 8, None) for i in range(50)]
    for m in (only_discovery, no_signals):
        got = rank_items_batch(m, customers, 8, None, None, "all")
        for a, b in zip(got, blend, strict=True):
            assert a.rows.tolist() == b.rows.tolist()
            assert a.reasons == b.reasons
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)


class RecordingRanker:
    """The ranker, keeping the feature matrix of every run."""

    def __init__(self, inner: Ranker) -> None:
        self.inner, self.calls = inner, []

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.calls.append(features.copy())
        return self.inner.predict(features)


def test_the_block_computes_every_feature_as_the_single_path_recent_popularity_included(
    model: RankingModel,
) -> None:
    """The block's one ranker run sees, customer after customer, exactly the feature rows of
    ``candidates_for`` (bit for bit, ``popularity_recent`` included); the customers the single
    path ranks again come after it, one run each."""
    assert model.signals is not None
    recording = RecordingRanker(model.rankers["all"])
    recorded = dataclasses.replace(model, rankers={"all": recording})
    n = BLOCK_VALUES // N_ITEMS  # one block
    customers = random_customers(np.random.default_rng(21), model, n)
    counts = BatchCounts()
    rank_items_batch(recorded, customers, 10, None, None, "all", counts)
    block, singles = recording.calls[0], recording.calls[1:]
    assert len(singles) == counts.redone
    column = FEATURES.index("popularity_recent")
    at = redone = 0
    for i in range(n):
        customer = customers.customer(i)
        if not len(customer[1]) and (customer[0] is None or not np.any(customer[0])):
            continue  # cold: the blend's, no ranker
        found = candidates_for(model, model.signals, customer, 10, None)
        expected = model.signals.recent[found.rows]
        assert found.features[:, column].tobytes() == expected.tobytes()
        size = found.rows.size
        if block[at : at + size].tobytes() == found.features.tobytes():
            at += size
        else:
            assert singles[redone].tobytes() == found.features.tobytes(), i
            redone += 1
    assert at == block.shape[0] and redone == len(singles)
    assert block[:, column].any() and not block[:, column].all()


def test_the_recent_best_sellers_join_the_blocks_candidates() -> None:
    """A model whose recent popularity is positive at items no other generator reaches: the
    block's candidates (the rows its ranker scores) hold them, as the single path's do."""
    rng = np.random.default_rng(4)
    base = random_model(rng)
    assert base.signals is not None
    recent = np.zeros(N_ITEMS, dtype=np.float32)
    recent[[3, 250, 499]] = [0.2, 1.0, 0.6]
    signals = dataclasses.replace(base.signals, recent=recent)
    recording = RecordingRanker(trained_ranker(rng, base, 5))
    ranked = dataclasses.replace(base, signals=signals, rankers={"all": recording})
    customers = random_customers(rng, ranked, 30)
    counts = BatchCounts()
    rank_items_batch(ranked, customers, 5, None, None, "all", counts)
    column = FEATURES.index("popularity_recent")
    known = 30 - counts.cold
    scored = np.concatenate(recording.calls)
    assert np.count_nonzero(scored[:, column] == 1.0) == known  # item 250 for every customer
    assert np.count_nonzero(scored[:, column] == np.float32(0.6)) == known
    for i in range(30):
        found = candidates_for(ranked, signals, customers.customer(i), 5, None)
        assert {3, 250, 499} <= set(found.rows.tolist())

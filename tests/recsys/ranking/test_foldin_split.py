"""The fold-in on a kept batch factor (``FoldIn.split_vectors``) equals the merged system's."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ranking.foldin import FoldIn

F = 16


def fold_and_rng(seed: int) -> tuple[FoldIn, np.random.Generator]:
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((200, F)).astype(np.float32) / 2
    return FoldIn.from_factors(factors, 0.5, 2.0), rng


def merged(fold: FoldIn, rb, wb, rl, wl) -> np.ndarray:  # type: ignore[no-untyped-def]
    rows, inverse = np.unique(np.concatenate([rb, rl]), return_inverse=True)
    return fold.user_vector(rows, np.bincount(inverse, np.concatenate([wb, wl]), rows.size))


@pytest.mark.parametrize("live", [0, 1, 3, 8])
@pytest.mark.parametrize("overlap", [0, 1, 2])
def test_batch_factor_plus_live_items_equals_the_merged_solve(live: int, overlap: int) -> None:
    fold, rng = fold_and_rng(10 * live + overlap)
    rb = rng.choice(200, 30, replace=False)  # > f/2 batch items: the split path
    wb = rng.integers(1, 5, rb.size).astype(np.float64)
    fresh = np.setdiff1d(np.arange(200), rb)
    rl = np.concatenate([rb[:overlap], rng.choice(fresh, live, replace=False)])[: max(live, 0)]
    wl = rng.integers(1, 3, rl.size).astype(np.float64)
    (ours,) = fold.split_vectors([(rb, wb, rl, wl)])
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, merged(fold, rb, wb, rl, wl), rtol=2e-5, atol=2e-6)


def test_the_factor_is_kept_and_the_answer_does_not_depend_on_it() -> None:
    fold, rng = fold_and_rng(1)
    rb = rng.choice(200, 40, replace=False)
    wb = np.ones(rb.size)
    lives = [(rng.choice(200, k, replace=False), np.full(k, 2.0)) for k in (1, 2, 3)]
    warm = [fold.split_vectors([(rb, wb, rl, wl)])[0] for rl, wl in lives]
    assert len(fold.batch_factors) == 1 and fold.batch_factors.hits == 2
    for (rl, wl), expected in zip(lives, warm, strict=True):
        cold, _ = fold_and_rng(1)  # a process that folded nothing before
        assert np.array_equal(cold.split_vectors([(rb, wb, rl, wl)])[0], expected)


def test_what_the_split_declines_is_solved_merged_as_before() -> None:
    fold, rng = fold_and_rng(2)
    rb = rng.choice(200, 30, replace=False)
    cases = [
        (rb, np.full(rb.size, 0.25), rb[:2], np.ones(2)),  # c < 1 in the batch part
        (rb, np.ones(rb.size), np.setdiff1d(np.arange(200), rb)[:12], np.ones(12)),  # > f/2 live
        (rb[:5], np.ones(5), rb[5:9], np.ones(4)),  # a short batch history
        (rb, np.ones(rb.size), np.zeros(0, dtype=np.int64), np.zeros(0)),  # nothing live
    ]
    for rb_, wb, rl, wl in cases:
        (ours,) = fold.split_vectors([(rb_, wb, rl, wl)])
        np.testing.assert_allclose(ours, merged(fold, rb_, wb, rl, wl), rtol=2e-5, atol=2e-6)
    with pytest.raises(ValueError, match="out of range"):
        fold.split_vectors([(np.append(rb, 500), np.ones(rb.size + 1), rb[:1], np.ones(1))])

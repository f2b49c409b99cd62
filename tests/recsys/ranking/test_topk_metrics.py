from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ranking.topk_metrics import (
    coverage_at_k,
    hit_matrix,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    summarize,
)


def relevant(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for u, items in enumerate(rows):
        dense[u, items] = 1.0
    return sp.csr_matrix(dense)


def test_hit_matrix_marks_relevant_ranks_and_never_pads() -> None:
    ranked = np.array([[3, 1, -1], [0, 9, 2]])
    rel = relevant([[1, 0], [2, 9]])
    assert hit_matrix(ranked, rel).tolist() == [[False, True, False], [False, True, True]]


def test_hand_computed_user() -> None:
    # relevant {1, 4, 7}; ranked 1 (hit), 2, 4 (hit), 5
    hits = hit_matrix(np.array([[1, 2, 4, 5]]), relevant([[1, 4, 7]]))
    n_rel = np.array([3])
    assert recall_at_k(hits, n_rel, 4)[0] == pytest.approx(2 / 3)
    assert recall_at_k(hits, n_rel, 2)[0] == pytest.approx(1 / 2)  # min(k, n_rel) = 2
    assert precision_at_k(hits, 4)[0] == pytest.approx(2 / 4)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(hits, n_rel, 4)[0] == pytest.approx(dcg / idcg)
    assert map_at_k(hits, n_rel, 4)[0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert hit_rate_at_k(hits, 4)[0] == 1.0
    assert hit_rate_at_k(np.zeros((1, 4), dtype=bool), 4)[0] == 0.0


def test_a_perfect_ranking_scores_one_whatever_the_number_of_relevant_items() -> None:
    hits = np.ones((1, 5), dtype=bool)
    n_rel = np.array([40])
    assert recall_at_k(hits, n_rel, 5)[0] == 1.0
    assert ndcg_at_k(hits, n_rel, 5)[0] == pytest.approx(1.0)
    assert map_at_k(hits, n_rel, 5)[0] == pytest.approx(1.0)


def test_summarize_averages_users_and_counts_coverage() -> None:
    ranked = np.array([[1, 2], [1, 3]])
    out = summarize(ranked, relevant([[1], [2]]), (1, 2), n_candidates=10)
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["hit_rate@2"] == pytest.approx(0.5)
    assert out["coverage@1"] == pytest.approx(1 / 10)
    assert out["coverage@2"] == pytest.approx(3 / 10)


def test_summarize_refuses_users_without_relevant_items() -> None:
    with pytest.raises(ValueError, match="at least one relevant"):
        summarize(np.array([[1]]), relevant([[]]), (1,), n_candidates=10)


def test_coverage_ignores_pads() -> None:
    assert coverage_at_k(np.array([[-1, -1], [4, -1]]), 2, 4) == 0.25

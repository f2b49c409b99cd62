from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.neighbours import cooccurrence_neighbours, factor_neighbours, top_k_rows


def two_clusters() -> sp.csr_matrix:
    dense = np.zeros((8, 6), dtype=np.float32)
    dense[:4, :3] = 1.0  # customers 0-3 bought items 0-2
    dense[4:, 3:] = 2.0  # customers 4-7 bought items 3-5 (twice)
    dense[0, 2] = 0.0
    return sp.csr_matrix(dense)


def test_neighbours_stay_in_their_cluster_and_never_include_the_item_itself() -> None:
    nb = cooccurrence_neighbours(two_clusters(), k=4, block=2)
    for item in range(6):
        found = nb.indices[item][nb.indices[item] >= 0]
        assert item not in found
        assert set(found) <= ({0, 1, 2} if item < 3 else {3, 4, 5})
    # only two other items share buyers, so the rest are pads with score 0
    assert nb.indices[3, 2:].tolist() == [-1, -1] and not nb.scores[3, 2:].any()


def test_cosine_of_identical_buyer_sets_is_one_and_shrinkage_lowers_it() -> None:
    plain = cooccurrence_neighbours(two_clusters(), k=2)
    assert np.isclose(plain.scores[3, 0], 1.0)
    shrunk = cooccurrence_neighbours(two_clusters(), k=2, shrink=4.0)
    assert np.isclose(shrunk.scores[3, 0], 4.0 / (4.0 + 4.0))


def test_neighbours_are_ordered_best_first() -> None:
    nb = cooccurrence_neighbours(two_clusters(), k=2)
    # item 0 shares 4 buyers with item 1 and 3 with item 2
    assert nb.indices[0].tolist() == [1, 2]
    assert nb.scores[0, 0] > nb.scores[0, 1] > 0


def test_top_k_rows_breaks_ties_by_column_and_pads_non_positive() -> None:
    sim = np.array([[0.5, 0.9, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    idx, val = top_k_rows(sim, 3)
    assert idx.tolist() == [[1, 0, 2], [-1, -1, -1]]
    assert val[0].tolist() == [np.float32(0.9), 0.5, 0.5]


def test_factor_neighbours_pick_the_most_aligned_vector() -> None:
    factors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    nb = factor_neighbours(factors, k=1)
    assert nb.indices[:, 0].tolist() == [1, 0, 3, 2]

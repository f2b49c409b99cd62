"""The ranker's training rows with the blocked exact cf scores: the same rows, bit for bit, as
one customer's matrix-vector product at a time (so the trained models are unchanged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.config import TrainingConfig
from recsys.io.loaders import load_interactions
from recsys.ranking.candidates import candidates_for
from recsys.ranking.exact_cf import exact_cf_rows
from training.ranker import (
    HORIZON_DAYS,
    K,
    Window,
    _rows,
    _window,
    blocked_for,
    customer_arguments,
)

AS_OF = pd.Timestamp("2011-09-01")


@pytest.fixture(scope="module")
def window(retail_sample_path: Path) -> Window:
    loaded = load_interactions(retail_sample_path)
    cutoff = AS_OF - pd.Timedelta(days=HORIZON_DAYS)
    return _window(loaded.interactions, loaded.catalog, cutoff, TrainingConfig(), seed=0)


def test_real_factors_score_bit_for_bit_as_one_customer_at_a_time(window: Window) -> None:
    users, items = window.bundle.user_factors, window.model.item_factors
    rows = np.arange(users.shape[0])
    scored = np.stack(list(exact_cf_rows(items, users, rows, block=64)))
    reference = np.stack([items @ np.asarray(v, dtype=np.float32) for v in users])
    assert scored.shape == (users.shape[0], items.shape[0]) and np.any(scored)
    assert np.array_equal(scored, reference)


@pytest.mark.parametrize("task", ["discovery", "all"])
def test_training_rows_are_those_of_the_per_customer_product(window: Window, task: str) -> None:
    signals = window.model.signals
    assert signals is not None
    not_product = ~window.bundle.items.is_product.astype(bool)
    rel = window.relevant[task]
    features, labels = [], []
    for u in window.users[task].tolist():  # the single path: score_items' own product
        found = candidates_for(
            window.model, signals, customer_arguments(window.bundle, u), K,
            blocked_for(window.bundle, u, task, not_product),
        )  # fmt: skip
        y = np.isin(found.rows, rel.indices[rel.indptr[u] : rel.indptr[u + 1]])
        if y.any():
            features.append(found.features)
            labels.append(y)
    rows = _rows(window, task)
    assert len(features) > 10
    assert np.array_equal(rows.features, np.concatenate(features))
    assert np.array_equal(rows.labels, np.concatenate(labels).astype(np.float32))

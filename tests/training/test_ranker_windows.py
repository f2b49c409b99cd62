"""Small training windows get extra cutoffs half a horizon earlier (more ranking groups)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.ranker import (
    HORIZON_DAYS,
    MIN_HISTORY_DAYS,
    MIN_LABELLED_CUSTOMERS,
    Window,
    _extra_cutoffs,
)


def window_with(n_labelled: int) -> Window:
    users = {"discovery": np.arange(n_labelled), "all": np.arange(MIN_LABELLED_CUSTOMERS)}
    return Window(model=None, bundle=None, relevant={}, users=users)  # type: ignore[arg-type]


FIRST = pd.Timestamp("2020-01-01")
CUTOFFS = [pd.Timestamp("2020-06-01"), pd.Timestamp("2020-05-18")]


def test_a_window_with_few_labelled_customers_adds_cutoffs_half_a_horizon_apart() -> None:
    extra = _extra_cutoffs(CUTOFFS, [window_with(10), window_with(5000)], FIRST)
    half = pd.Timedelta(days=HORIZON_DAYS / 2)
    assert extra == [CUTOFFS[1] - half, CUTOFFS[1] - 2 * half]


def test_large_windows_add_nothing() -> None:
    big = MIN_LABELLED_CUSTOMERS
    assert _extra_cutoffs(CUTOFFS, [window_with(big), window_with(big)], FIRST) == []


def test_extra_cutoffs_keep_the_minimum_history() -> None:
    half = pd.Timedelta(days=HORIZON_DAYS / 2)
    first = CUTOFFS[1] - half - pd.Timedelta(days=MIN_HISTORY_DAYS)  # room for one more only
    extra = _extra_cutoffs(CUTOFFS, [window_with(10), window_with(10)], first)
    assert extra == [CUTOFFS[1] - half]

from __future__ import annotations

import numpy as np
import pytest

from training.bootstrap import resample_weights
from training.clv_backtest import (
    LEARNED,
    SERVED,
    clv_choice,
    regression_intervals,
    weighted_pearson,
)


def test_weighted_pearson_with_unit_weights_is_pearson() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    b += a
    ones = np.ones((1, 200))
    assert weighted_pearson(a, b, ones)[0] == pytest.approx(np.corrcoef(a, b)[0, 1])
    w = resample_weights(200, n_boot=50)
    reps = weighted_pearson(a, b, w)
    assert reps.shape == (50,) and np.all((reps > 0.4) & (reps < 0.9))


def test_a_forecast_close_to_the_actual_beats_a_noisy_one_and_is_served() -> None:
    rng = np.random.default_rng(1)
    actual = rng.gamma(2.0, 100.0, 800)
    close = actual + rng.normal(0, 10, 800)
    noisy = actual + rng.normal(0, 200, 800)
    out = regression_intervals(actual, {SERVED: noisy, LEARNED: close}, reference=SERVED)
    row = out["comparisons"][LEARNED]
    assert row["mae_difference"]["lo"] > 0  # the served one's error is larger
    assert row["pearson_difference"]["hi"] < 0
    assert row["mae_difference"]["verdict"] == f"{LEARNED} beats {SERVED}"
    assert clv_choice(out)["served"] == LEARNED
    flipped = regression_intervals(actual, {SERVED: close, LEARNED: noisy}, reference=SERVED)
    assert clv_choice(flipped)["served"] == SERVED
    mae = out["forecasts"][SERVED]["mae"]
    assert mae["value"] == pytest.approx(np.mean(np.abs(noisy - actual)))
    assert mae["lo"] < mae["value"] < mae["hi"]

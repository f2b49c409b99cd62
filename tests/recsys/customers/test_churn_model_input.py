from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.customers.churn import (
    CHURN_FEATURES,
    MISSING,
    IdentityCalibration,
    IsotonicCalibration,
    PlattCalibration,
    calibration_from_dict,
    churn_matrix,
)


def test_matrix_from_table_and_from_dicts_is_the_same():
    rows = [
        {"recency_days": 10.0, "frequency": 3, "tenure_days": 90.0, "inter_purchase_mean_days": 5},
        {"recency_days": np.nan, "frequency": 0, "tenure_days": 10.0, "nps": 9},
    ]
    from_table = churn_matrix(pd.DataFrame(rows))
    from_dicts = churn_matrix(rows)
    np.testing.assert_array_equal(from_table, from_dicts)
    np.testing.assert_array_equal(churn_matrix(rows[0]), from_table[:1])
    assert from_table.dtype == np.float32 and from_table.shape == (2, len(CHURN_FEATURES))


def test_matrix_derives_rhythm_and_rate_and_marks_missing_values():
    row = churn_matrix(
        {"recency_days": 10.0, "frequency": 3, "tenure_days": 90.0, "inter_purchase_mean_days": 5.0}
    )[0]
    col = dict(zip(CHURN_FEATURES, row.tolist(), strict=True))
    assert col["recency_over_rhythm"] == pytest.approx(2.0)
    assert col["orders_per_month"] == pytest.approx(1.0)
    assert col["nps"] == MISSING and col["monetary"] == MISSING
    blank = churn_matrix({"frequency": "not a number"})[0]
    assert np.all(blank == MISSING)


def test_platt_fit_recovers_a_known_calibration():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.02, 0.98, 20000)
    true = PlattCalibration(a=2.0, b=-0.5)
    labels = rng.random(raw.size) < true.apply(raw)
    fitted = PlattCalibration.fit(raw, labels)
    assert fitted.a == pytest.approx(2.0, abs=0.1)
    assert fitted.b == pytest.approx(-0.5, abs=0.05)


def test_calibrations_round_trip_through_dicts():
    raw = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    for calibration in (
        PlattCalibration(a=1.3, b=0.1),
        IsotonicCalibration(x=(0.0, 0.5, 1.0), y=(0.1, 0.3, 0.8)),
        IdentityCalibration(),
    ):
        again = calibration_from_dict(calibration.to_dict())
        np.testing.assert_array_equal(again.apply(raw), calibration.apply(raw))
    assert isinstance(calibration_from_dict(None), IdentityCalibration)
    with pytest.raises(ValueError, match="unknown churn calibration"):
        calibration_from_dict({"method": "magic"})


def test_isotonic_table_interpolates_and_clips():
    iso = IsotonicCalibration(x=(0.2, 0.6), y=(0.1, 0.5))
    assert iso.apply(np.array([0.0, 0.4, 1.0])).tolist() == pytest.approx([0.1, 0.3, 0.5])

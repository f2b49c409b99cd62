"""The cutoff context and the calibration on it (training/churn_context.py): known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.customers.churn import PlattCalibration, _logit, _sigmoid, calibration_from_dict
from training.churn_context import (
    CONTEXT_L2,
    MIN_CONTEXT_CUTOFFS,
    cutoff_context,
    fit_calibration,
    shop_orders,
)

START = pd.Timestamp("2023-01-01")


def _orders(per_day: dict[tuple[str, str], int], customers: int = 10) -> pd.DataFrame:
    """Purchase lines: ``per_day[(first, last)]`` orders a day in ``[first, last)``, each with
    two lines (one order id), customers in turn."""
    rows = []
    n = 0
    for (first, last), k in per_day.items():
        for day in pd.date_range(first, last, inclusive="left"):
            for j in range(k):
                order = f"o{n}"
                at = day + pd.Timedelta(hours=1 + j)
                for item in ("a", "b"):
                    rows.append(
                        {"customer_id": f"c{n % customers}", "event_type": "purchase",
                         "timestamp": at, "order_id": order, "item_id": item}
                    )  # fmt: skip
                n += 1
    return pd.DataFrame(rows)


def test_shop_orders_counts_each_order_once() -> None:
    lines = _orders({("2023-01-01", "2023-01-11"): 2})
    orders = shop_orders(lines)
    assert len(orders) == 20 and orders["timestamp"].is_monotonic_increasing


def test_context_is_missing_without_a_year_and_a_season_of_history() -> None:
    orders = shop_orders(_orders({("2023-01-01", "2024-01-01"): 1}))
    context = cutoff_context(orders, pd.Timestamp("2023-12-01"), START)
    assert all(np.isnan(v) for v in context.values())


def test_context_reads_the_season_ahead_from_a_year_earlier() -> None:
    # a year before the cutoff, the 90 days ahead had 3 orders a day, the 90 before 1
    cutoff = pd.Timestamp("2024-06-01")
    a_year = cutoff - pd.Timedelta(days=365)
    per_day = {
        ("2023-01-01", f"{a_year:%Y-%m-%d}"): 1,
        (f"{a_year:%Y-%m-%d}", f"{a_year + pd.Timedelta(days=90):%Y-%m-%d}"): 3,
        (f"{a_year + pd.Timedelta(days=90):%Y-%m-%d}", "2024-07-01"): 1,
    }
    orders = shop_orders(_orders(per_day, customers=20))
    context = cutoff_context(orders, cutoff, START)
    assert context["seasonal_lift_yoy"] == pytest.approx(np.log((270 + 1) / (90 + 1)))
    assert context["orders_trend_yoy"] == pytest.approx(0.0)  # 90 a day-window, then and now
    assert context["active_share_365d"] == pytest.approx(1.0)  # every customer in turn


def _windows(n: int, coef: float, seed: int = 0) -> tuple[list, list, list]:
    rng = np.random.default_rng(seed)
    raws, labels, contexts = [], [], []
    for k in range(n):
        z = -1.0 + 2.0 * k / max(n - 1, 1)
        raw = rng.uniform(0.1, 0.9, 4000)
        p = _sigmoid(_logit(raw) + coef * z)
        raws.append(raw)
        labels.append((rng.random(raw.size) < p).astype(np.int8))
        contexts.append({"seasonal_lift_yoy": z, "orders_trend_yoy": np.nan})
    return raws, labels, contexts


def test_without_enough_cutoffs_it_is_platt_on_the_newest_window() -> None:
    raws, labels, contexts = _windows(MIN_CONTEXT_CUTOFFS - 1, coef=1.0)
    got = fit_calibration(raws, labels, contexts, {"seasonal_lift_yoy": 0.5})
    assert got == PlattCalibration.fit(raws[0], labels[0]).to_dict()
    assert "context" not in got


def test_the_calibration_follows_the_context_and_is_folded_at_as_of() -> None:
    raws, labels, contexts = _windows(12, coef=1.2)
    now = {"seasonal_lift_yoy": 1.5, "orders_trend_yoy": 0.3, "active_share_365d": np.nan}
    got = fit_calibration(raws, labels, contexts, now)
    assert got["context"]["names"] == ["seasonal_lift_yoy"]  # the only one every window has
    assert got["context"]["coef"][0] == pytest.approx(1.2, abs=0.15)  # shrunk by CONTEXT_L2
    assert CONTEXT_L2 > 0 and got["a"] == pytest.approx(1.0, abs=0.1)
    # folded: at as_of (z = 1.5, beyond the windows) the risk follows the context
    served = calibration_from_dict(got)
    raw = np.random.default_rng(9).uniform(0.1, 0.9, 20000)
    truth = _sigmoid(_logit(raw) + 1.2 * 1.5)
    assert served.apply(raw).mean() == pytest.approx(truth.mean(), abs=0.02)
    plain = PlattCalibration.fit(raws[0], labels[0]).apply(raw)  # the newest window only
    assert abs(plain.mean() - truth.mean()) > 0.1


def test_calibration_from_dict_adds_the_context_terms_to_the_intercept() -> None:
    stored = {
        "method": "platt",
        "a": 1.0,
        "b": -0.5,
        "context": {"names": ["x", "y"], "coef": [2.0, -1.0], "values": [0.25, 1.0]},
    }
    assert calibration_from_dict(stored) == PlattCalibration(a=1.0, b=-0.5 + 0.5 - 1.0)

"""The event path's churn input (``churn_rows``, plain numpy) equals training's (pandas).

Training builds the model input from the feature table with ``churn_matrix(DataFrame)``
(``pd.to_numeric`` per column); the event path builds it from feature dicts without pandas. Both
must give the same float32 numbers, bit for bit, on every row the model can be shown: random rows
of every value kind, the edge cases one at a time, and the rows training's own feature function
computes.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.customers.churn import BASE_FEATURES, CHURN_FEATURES, MISSING, churn_matrix, churn_rows
from recsys.customers.features import compute_customer_features
from recsys.events import Event, to_interactions

# 1e300 does not fit a float32: both paths give inf there, and numpy says so
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

EDGE_VALUES: list[Any] = [
    None, math.nan, math.inf, -math.inf, 0, 0.0, -0.0, 1, -1, 2.5, 1e-300, 1e300, -1e300,
    True, False, 2**62, 10**30, np.float32(1.5), np.float64(2.25), np.int64(7), np.int32(-3),
    "3.5", " 4 ", "1e3", "-2", ".5", "5.", "+5", "inf", "-inf", "nan", "NaN", "x", "", "True",
    "1_000", "0x10", "1,5", "1 000", "\u0661\u0662", b"7", b"x", [1], {}, (2,),
]  # fmt: skip


def pandas_path(rows: list[dict[str, Any]]) -> np.ndarray:
    """Training's input: the rows as a feature table, through pandas."""
    return churn_matrix(pd.DataFrame.from_records(rows, columns=list(BASE_FEATURES)))


def random_value(rng: np.random.Generator) -> Any:
    kind = rng.integers(0, 8)
    if kind == 0:
        return None
    if kind == 1:
        return float(rng.normal(0, 100))
    if kind == 2:
        return int(rng.integers(-5, 500))
    if kind == 3:
        return float(rng.exponential(30))
    if kind == 4:
        return [math.nan, math.inf, 0.0, -0.0, 1e-9][int(rng.integers(0, 5))]
    if kind == 5:
        return bool(rng.random() < 0.5)
    if kind == 6:
        return f"{rng.normal(0, 10):.4f}"
    return EDGE_VALUES[int(rng.integers(0, len(EDGE_VALUES)))]


@pytest.mark.parametrize("seed", range(5))
def test_random_rows_of_every_value_kind_give_the_same_numbers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(400):
        row = {name: random_value(rng) for name in BASE_FEATURES if rng.random() < 0.85}
        row["segment"] = "not a model input"  # other keys are ignored by both
        rows.append(row)
    plain = churn_rows(rows)
    assert plain.dtype == np.float32 and plain.shape == (len(rows), len(CHURN_FEATURES))
    np.testing.assert_array_equal(plain, pandas_path(rows))


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
@pytest.mark.parametrize("name", ["recency_days", "frequency", "tenure_days", "nps"])
def test_each_edge_value_in_a_column_the_derived_features_use(name: str, value: Any) -> None:
    row = {
        "recency_days": 12.0,
        "frequency": 3,
        "tenure_days": 200.0,
        "inter_purchase_mean_days": 6.0,
        name: value,
    }
    np.testing.assert_array_equal(churn_rows([row]), pandas_path([row]))


def test_plain_numbers_and_mixed_rows_take_the_same_way() -> None:
    plain_rows = [{"recency_days": 1.0, "frequency": 2}, {"recency_days": None, "nps": True}]
    mixed = [*plain_rows, {"frequency": "4"}]
    np.testing.assert_array_equal(churn_rows(plain_rows), pandas_path(plain_rows))
    np.testing.assert_array_equal(churn_rows(mixed), pandas_path(mixed))
    np.testing.assert_array_equal(churn_rows(mixed)[:2], churn_rows(plain_rows))
    assert churn_rows([]).shape == (0, len(CHURN_FEATURES))
    assert np.all(churn_rows([{}]) == MISSING)


def test_dicts_to_churn_matrix_are_the_plain_path() -> None:
    rows = [{"recency_days": 3.0, "frequency": "2"}, {"monetary": 5}]
    np.testing.assert_array_equal(churn_matrix(rows), churn_rows(rows))
    np.testing.assert_array_equal(churn_matrix(rows[1]), churn_rows(rows[1:]))


def history(rng: np.random.Generator, customers: int) -> list[Event]:
    start = datetime(2024, 1, 1)
    events: list[Event] = []
    for c in range(customers):
        for k in range(int(rng.integers(1, 30))):
            kind = str(
                rng.choice(["purchase", "purchase", "return", "view", "add_to_cart",
                            "email_open", "email_click", "survey"])
            )  # fmt: skip
            fields: dict[str, Any] = {
                "customer_id": f"c{c}",
                "event_type": kind,
                "timestamp": start + timedelta(days=float(rng.uniform(0, 200))),
            }
            if kind in ("purchase", "return", "view", "add_to_cart"):
                fields["item_id"] = f"i{rng.integers(0, 20)}"
                fields["quantity"] = float(rng.integers(1, 5))
                fields["price"] = float(rng.integers(1, 40)) / 4
            if kind == "purchase":
                fields["order_id"] = f"o{c}-{k // 3}"
            if kind == "survey":
                metric = str(rng.choice(["nps", "csat", "ces"]))
                fields["properties"] = {"metric": metric, "score": int(rng.integers(1, 6))}
            events.append(Event.model_validate(fields))
    return events


@pytest.mark.parametrize("seed", range(3))
def test_rows_of_the_training_feature_table_give_the_same_numbers(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    table = compute_customer_features(
        to_interactions(history(rng, 300)), pd.Timestamp(datetime(2024, 6, 1))
    )
    rows = table.to_dict("records")  # NaN where missing, numpy and Python numbers mixed
    assert len(rows) > 250  # customers with an event before as_of
    from_table = churn_matrix(table)  # exactly what training feeds the model
    np.testing.assert_array_equal(churn_rows(rows), from_table)
    served = [{k: (None if v != v else v) for k, v in row.items()} for row in rows]
    np.testing.assert_array_equal(churn_rows(served), from_table)  # JSON: None for NaN
    assert (from_table != MISSING).any(axis=0).sum() >= len(CHURN_FEATURES) - 3

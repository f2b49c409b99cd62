"""The single-event churn input (``churn_row``, plain Python floats) equals training's, bit for bit.

Training feeds the model ``churn_matrix(feature table)`` (pandas, ``p_alive`` under the BG/NBD
model fitted on the table); one event re-scores one customer through ``churn_row``. Every row
of training's own feature function, in the form the online features write it (None for NaN,
ISO text for times), must give the same float32 numbers; rows the plain path declines go the
numpy way (``churn_rows``), which has its own parity test (``test_churn_rows.py``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.customers.churn import BASE_FEATURES, CHURN_FEATURES, churn_matrix, churn_rows
from recsys.customers.churn_row import churn_row
from recsys.customers.clv import BetaGeoModel, clv_inputs
from recsys.customers.features import compute_customer_features
from recsys.events import to_interactions
from tests.recsys.customers.test_churn_rows import EDGE_VALUES, history, random_value

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


def plain_value(rng: np.random.Generator) -> Any:
    """``random_value``'s plain numbers and None (the kinds the online features write)."""
    while True:
        value = random_value(rng)
        if type(value) in (float, int, bool, type(None)):
            return value


def served(row: dict[str, Any]) -> dict[str, Any]:
    """A table row as the online features hold it: None for NaN/NaT, times as ISO text."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, pd.Timestamp | datetime):
            value = None if pd.isna(value) else pd.Timestamp(value).to_pydatetime().isoformat()
        elif isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, np.integer | np.floating):
            value = value.item()
        out[name] = value
    return out


@pytest.fixture(scope="module")
def table_and_alive() -> tuple[pd.DataFrame, BetaGeoModel]:
    rng = np.random.default_rng(7)
    table = compute_customer_features(
        to_interactions(history(rng, 400)), pd.Timestamp(datetime(2024, 6, 1))
    )
    inputs = clv_inputs(table)
    bought = inputs["bought"]
    alive = BetaGeoModel().fit(inputs["x"][bought], inputs["t_x"][bought], inputs["T"][bought])
    return table, alive


@pytest.mark.parametrize("with_alive", [True, False])
def test_rows_of_the_training_feature_table_give_training_numbers(
    table_and_alive: tuple[pd.DataFrame, BetaGeoModel], with_alive: bool
) -> None:
    table, alive = table_and_alive
    model = alive if with_alive else None
    from_table = churn_matrix(table, model)  # exactly what training feeds the model
    p_alive = from_table[:, CHURN_FEATURES.index("p_alive")]
    if with_alive:  # the case is worth its name: p_alive varies
        assert len(np.unique(p_alive)) > 20
    for i, row in enumerate(table.to_dict("records")):
        plain = churn_row(served(row), model)
        assert plain is not None, row
        assert plain.dtype == np.float32 and plain.shape == (1, len(CHURN_FEATURES))
        np.testing.assert_array_equal(plain, from_table[i : i + 1])
        assert plain.tobytes() == from_table[i : i + 1].tobytes()  # -0.0 too


@pytest.mark.parametrize("seed", range(4))
def test_random_plain_rows_equal_the_numpy_path_or_decline(
    table_and_alive: tuple[pd.DataFrame, BetaGeoModel], seed: int
) -> None:
    _, alive = table_and_alive
    rng = np.random.default_rng(seed)
    taken = 0
    for _ in range(600):
        row: dict[str, Any] = {n: plain_value(rng) for n in BASE_FEATURES if rng.random() < 0.9}
        if rng.random() < 0.8:
            row["first_purchase_at"] = f"2024-0{rng.integers(1, 4)}-0{rng.integers(1, 9)}T10:00:00"
            row["last_purchase_at"] = f"2024-05-0{rng.integers(1, 9)}T12:30:00.250000"
        model = alive if rng.random() < 0.7 else None
        plain = churn_row(row, model)
        if plain is None:
            continue
        taken += 1
        with np.errstate(over="ignore"):  # huge values: numpy says so, the plain path does not
            expected = churn_rows([row], model)
        assert plain.tobytes() == expected.tobytes()
    assert taken > 400  # most rows of plain numbers take the plain path


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
def test_edge_values_equal_the_numpy_path_or_decline(
    table_and_alive: tuple[pd.DataFrame, BetaGeoModel], value: Any
) -> None:
    _, alive = table_and_alive
    for name in ("recency_days", "frequency", "tenure_days", "inter_purchase_std_days"):
        row = {
            "recency_days": 12.0,
            "frequency": 3,
            "tenure_days": 200.0,
            "inter_purchase_mean_days": 6.0,
            "orders_90d": 2,
            "first_purchase_at": "2024-01-02T00:00:00",
            "last_purchase_at": "2024-05-20T08:00:00",
            name: value,
        }
        plain = churn_row(row, alive)
        if plain is not None:
            assert plain.tobytes() == churn_rows([row], alive).tobytes()


def test_what_it_declines() -> None:
    assert churn_row({"frequency": "2"}) is None  # text: the numpy path parses it
    assert churn_row({"frequency": np.float64(2.0)}) is None
    row = {"frequency": 2, "recency_days": 1.0, "first_purchase_at": "2024-01-02"}
    assert churn_row(row, BetaGeoModel()) is None  # a date not written by the online features
    assert churn_row({"frequency": 2}) is not None  # no alive model: p_alive missing

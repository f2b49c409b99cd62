from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trainingkit import START, rows_for

from recsys.schema import INTERACTION_COLUMNS
from training.interactions import (
    build_purchase_matrices,
    buyer_keys,
    index_of,
    item_table,
    sorted_ids,
)


def _table(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame


def _matrices(frame: pd.DataFrame, as_of: pd.Timestamp):
    return build_purchase_matrices(
        frame, sorted_ids(frame["customer_id"]), sorted_ids(frame["item_id"]), as_of
    )


def test_weight_is_the_number_of_distinct_orders_not_lines_or_units() -> None:
    rows = rows_for("c1", ["X", "X", "Y"], 0, "o1") + rows_for("c1", ["X"], 3, "o2")
    m = _matrices(_table(rows), START + pd.Timedelta(days=10))
    x, y = index_of(m.item_ids, ["X", "Y"])
    assert m.orders[0, x] == 2.0
    assert m.orders[0, y] == 1.0


def test_days_since_last_purchase_are_measured_at_as_of() -> None:
    rows = rows_for("c1", ["X"], 0, "o1") + rows_for("c1", ["X"], 4, "o2")
    as_of = START + pd.Timedelta(days=10, hours=10)
    m = _matrices(_table(rows), as_of)
    assert m.last_days[0, 0] == 6.0


def test_a_fully_returned_item_is_dropped_and_a_partial_return_is_kept() -> None:
    rows = rows_for("c1", ["X", "Y"], 0, "o1") + rows_for("c1", ["X"], 1, "r1", event_type="return")
    frame = _table(rows)
    frame.loc[(frame["event_type"] == "return"), "quantity"] = 2.0  # all of X back
    m = _matrices(frame, START + pd.Timedelta(days=5))
    x, y = index_of(m.item_ids, ["X", "Y"])
    assert m.orders[0, x] == 0.0 and m.orders[0, y] == 1.0
    frame.loc[(frame["event_type"] == "return"), "quantity"] = 1.0  # half of X back
    m = _matrices(frame, START + pd.Timedelta(days=5))
    assert m.orders[0, x] == 1.0


def test_non_products_and_guest_checkouts_are_left_out() -> None:
    rows = rows_for("c1", ["X", "POST"], 0, "o1") + rows_for(None, ["Y"], 0, "o2")
    m = _matrices(_table(rows), START + pd.Timedelta(days=5))
    assert list(m.customer_ids) == ["c1"]
    assert m.orders.nnz == 1
    assert m.orders[0, index_of(m.item_ids, ["X"])[0]] == 1.0


def test_counts_and_ages_share_one_sparsity_pattern_even_with_zero_ages() -> None:
    rows = rows_for("c1", ["X"], 0, "o1") + rows_for("c2", ["Y", "X"], 2, "o2")
    as_of = START + pd.Timedelta(days=2, hours=10)  # c2's purchase is 0 days old
    m = _matrices(_table(rows), as_of)
    assert np.array_equal(m.orders.indptr, m.last_days.indptr)
    assert np.array_equal(m.orders.indices, m.last_days.indices)
    assert m.last_days.nnz == m.orders.nnz == 3
    assert sorted(m.last_days.data.tolist()) == [0.0, 0.0, 2.0]


def test_index_of_marks_unknown_ids() -> None:
    ids = np.array(["a", "c"])
    assert index_of(ids, ["c", "b", "a"]).tolist() == [1, -1, 0]


def test_item_table_takes_catalogue_fields_and_flags_non_products() -> None:
    frame = _table(rows_for("c1", ["X", "POST"], 0, "o1"))
    catalog = pd.DataFrame(
        {
            "item_id": ["X", "Z"],
            "title": ["Mug", ""],
            "category": ["kitchen", None],
            "price": [2.5, 1.0],
            "in_stock": [False, True],
        }
    )
    ids = sorted_ids(frame["item_id"], catalog["item_id"])
    table = item_table(ids, frame, catalog)
    assert table.item_ids.tolist() == ["POST", "X", "Z"]
    assert table.titles.tolist() == ["POST", "Mug", "Z"]  # no title: the id stands in
    assert table.categories.tolist() == ["", "kitchen", ""]
    assert table.in_stock.tolist() == [True, False, True]
    assert table.is_product.tolist() == [False, True, True]
    assert table.prices[1] == np.float32(2.5) and np.isnan(table.prices[0])


def test_guest_checkouts_count_as_one_buyer_per_order() -> None:
    frame = _table(
        rows_for("c1", ["X"], 0, "o1")
        + rows_for(None, ["X", "Y"], 0, "g1")
        + rows_for(None, ["X"], 1, "g2")
    )
    keys = buyer_keys(frame, np.array(["c1"]))
    assert keys[0] == 0
    assert keys[1] == keys[2] != keys[3]
    assert min(keys[1:]) >= 1


@pytest.mark.parametrize("dtype", ["string", "string[pyarrow]", object])
def test_index_of_a_string_column_is_the_row_by_row_lookup(dtype: object) -> None:
    """The per-distinct-value lookup of a string column answers as each row's own ``str``."""
    ids = np.array(sorted(["", "<NA>", "a", "b", "nan", "é", "zz"]))
    raw = ["b", "a", None, "", "é", "q", "b", "zz", "<NA>", "nan", None, "a"] * 3
    values = pd.Series(raw, dtype=dtype)  # type: ignore[call-overload]
    expected = [
        int(np.flatnonzero(ids == v)[0]) if (v in ids) else -1
        for v in np.asarray(values, dtype=object).astype(str)
    ]
    assert index_of(ids, values).tolist() == expected
    assert index_of(ids[:0], values).tolist() == [-1] * len(raw)

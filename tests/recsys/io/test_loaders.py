"""The ``events`` format, file reading (CSV, gzip, Parquet), detection and malformed files."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from recsys.errors import DataFileError
from recsys.io.loaders import detect_format, load_interactions
from recsys.io.synthetic import generate_events
from recsys.io.tabular import STRING, read_table, repeated
from recsys.schema import EVENT_TYPES, INTERACTION_COLUMNS, OFFER_RESPONSE_TYPES

EXPECTED_DTYPES = {
    "customer_id": "string",
    "event_type": "string",
    "timestamp": "datetime64[ns]",
    "item_id": "string",
    "quantity": "float64",
    "price": "float64",
    "order_id": "string",
    "properties": "string",
    "is_product": "bool",
    "event_id": "string",
}


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    """A small synthetic events table (every event type occurs in it)."""
    frame, _ = generate_events(customers=60, items=40, days=120, seed=3)
    return frame


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _rows(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


HEADER = "customer_id,event_type,timestamp,item_id,quantity,price,order_id,properties,event_id"


def test_events_file_loads_into_the_exact_interaction_schema(tmp_path, events):
    result = load_interactions(_csv(tmp_path / "events.csv", events))
    table = result.interactions
    assert tuple(table.columns) == INTERACTION_COLUMNS
    assert {c: str(t) for c, t in table.dtypes.items()} == EXPECTED_DTYPES
    assert result.format == result.report.format == "events"
    assert result.report.rows_read == result.report.rows_loaded == len(events)
    assert table["timestamp"].is_monotonic_increasing
    assert (
        set(table["event_type"].unique()) == set(EVENT_TYPES) - OFFER_RESPONSE_TYPES
    )  # none simulated


def test_report_counts_events_by_type_and_is_json_able(tmp_path, events):
    report = load_interactions(_csv(tmp_path / "events.csv", events)).report
    as_dict = json.loads(json.dumps(report.to_dict()))
    for name in EVENT_TYPES:
        assert as_dict["counts"][f"events_{name}"] == int((events["event_type"] == name).sum())
    assert as_dict["counts"]["customers"] == events["customer_id"].nunique()
    assert as_dict["counts"]["items"] == events["item_id"].nunique()


def test_item_events_without_quantity_count_one_and_other_events_have_none(tmp_path):
    path = _rows(
        tmp_path / "e.csv",
        HEADER,
        "c1,view,2025-01-02 10:00:00,i1,,,,,",
        'c1,search,2025-01-02 10:01:00,,,,,"{""query"": ""mug""}",',
    )
    table = load_interactions(path).interactions
    assert table["quantity"].iloc[0] == 1.0
    assert pd.isna(table["quantity"].iloc[1])
    assert table["is_product"].tolist() == [True, False]
    assert table["properties"].iloc[1] == '{"query": "mug"}'


def test_zoned_timestamps_become_naive_utc(tmp_path):
    path = _rows(
        tmp_path / "e.csv",
        "customer_id,event_type,timestamp,item_id",
        "c1,view,2025-03-01T10:00:00+02:00,i1",
        "c1,view,2025-03-01T09:30:00Z,i1",
        "c1,view,2025-03-01 09:45:00,i1",
    )
    stamps = load_interactions(path).interactions["timestamp"].tolist()
    assert stamps == [
        pd.Timestamp("2025-03-01 08:00:00"),
        pd.Timestamp("2025-03-01 09:30:00"),
        pd.Timestamp("2025-03-01 09:45:00"),
    ]


def test_float_written_ids_are_made_whole_again(tmp_path):
    path = _rows(
        tmp_path / "e.csv",
        "customer_id,event_type,timestamp,item_id",
        "17850.0,view,2025-01-02 10:00:00,85123A",
        ",view,2025-01-02 10:01:00,85123A",
        "13047.0,view,2025-01-02 10:02:00,85123A",
    )
    table = load_interactions(path).interactions
    assert table["customer_id"].tolist() == ["17850", pd.NA, "13047"]
    assert load_interactions(path).report.counts["guest_rows"] == 1


def test_event_item_ids_are_stripped_and_keep_the_shops_spelling(tmp_path):
    path = _rows(
        tmp_path / "e.csv",
        "customer_id,event_type,timestamp,item_id",
        "c1,view,2025-01-02 10:00:00,sku-85123a",
        "c1,view,2025-01-02 10:01:00, 85123A ",
    )
    table = load_interactions(path).interactions
    assert table["item_id"].tolist() == ["sku-85123a", "85123A"]
    assert table["customer_id"].tolist() == ["c1", "c1"]


def test_negative_returns_turn_positive_and_bad_values_are_dropped_with_reasons(tmp_path):
    path = _rows(
        tmp_path / "e.csv",
        HEADER,
        "c1,purchase,2025-01-02 10:00:00,i1,2,3.5,o1,,e1",
        "c1,return,2025-01-09 10:00:00,i1,-2,3.5,o1,,e2",
        "c1,purchase,2025-01-02 10:00:00,i2,0,3.5,o1,,e3",
        "c1,purchase,2025-01-02 10:00:00,i3,1,0,o1,,e4",
        "c1,view,2025-01-02 10:00:00,i3,1,-1,,,e5",
        "c1,purchase,2025-01-02 10:00:00,i1,2,3.5,o1,,e1",
    )
    result = load_interactions(path)
    assert result.interactions["event_id"].tolist() == ["e1", "e2"]
    assert result.interactions["quantity"].tolist() == [2.0, 2.0]
    assert result.report.dropped == {"bad_quantity": 1, "bad_price": 2, "duplicate_event_id": 1}
    assert result.report.counts["returns_made_positive"] == 1


def test_gzip_is_recognised_by_its_magic_bytes_whatever_the_name(tmp_path, events):
    plain = _csv(tmp_path / "events.csv", events)
    disguised = tmp_path / "events-gzipped.csv"
    disguised.write_bytes(gzip.compress(plain.read_bytes()))
    assert detect_format(disguised) == "events"
    pd.testing.assert_frame_equal(
        load_interactions(disguised).interactions, load_interactions(plain).interactions
    )


def test_parquet_loads_the_same_table_as_csv(tmp_path, events):
    csv_table = load_interactions(_csv(tmp_path / "e.csv", events)).interactions
    events.to_parquet(tmp_path / "e.parquet", index=False)
    pd.testing.assert_frame_equal(load_interactions(tmp_path / "e.parquet").interactions, csv_table)


def test_parquet_time_outside_the_nanosecond_range_names_its_row(tmp_path, events):
    typed = events.assign(timestamp=pd.to_datetime(events["timestamp"]).astype("datetime64[us]"))
    typed["timestamp"] = typed["timestamp"].astype(object)
    typed.loc[typed.index[5], "timestamp"] = datetime(2300, 1, 1)
    typed["timestamp"] = typed["timestamp"].astype("datetime64[us]")
    typed.to_parquet(tmp_path / "e.parquet", index=False)
    with pytest.raises(DataFileError) as caught:
        load_interactions(tmp_path / "e.parquet")
    assert caught.value.row == 6  # a Parquet file has no header line: its 6th row
    assert "is not a valid date and time" in caught.value.problem


def test_detection_reads_only_the_header(tmp_path):
    path = _rows(tmp_path / "e.csv", HEADER, "this,row,is,not,valid,at,all")
    assert detect_format(path) == "events"
    retail = _rows(
        tmp_path / "r.csv",
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
    )
    assert detect_format(retail) == "online-retail"


def test_explicit_format_overrides_detection_and_checks_its_columns(tmp_path, events):
    path = _csv(tmp_path / "e.csv", events)
    with pytest.raises(DataFileError) as caught:
        load_interactions(path, fmt="online-retail")
    assert caught.value.row is None
    assert "InvoiceNo" in caught.value.problem


# --- malformed files: the error names the file, the row and the problem ---------------------------


def _corrupt(tmp_path: Path, events: pd.DataFrame, position: int, **values: object) -> Path:
    frame = events.astype(dict.fromkeys(events.columns, object))
    for column, value in values.items():
        frame.loc[frame.index[position], column] = value
    return _csv(tmp_path / "bad.csv", frame)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"timestamp": "yesterday"}, "timestamp 'yesterday' is not a valid date and time"),
        ({"timestamp": ""}, "timestamp is missing"),
        (
            {"timestamp": "0001-01-01T00:00+01:00"},
            "timestamp '0001-01-01T00:00+01:00' is not a valid date and time",
        ),
        ({"timestamp": "2300-01-01T00:00"}, "timestamp '2300-01-01T00:00' is not a valid date"),
        ({"quantity": "two"}, "quantity 'two' is not a number"),
        ({"price": "1,50"}, "price '1,50' is not a number"),
        ({"event_type": "click"}, "event_type 'click' is not one of"),
        ({"event_type": "view", "item_id": ""}, "a view event needs an item_id"),
        ({"properties": '{"query": '}, "is not valid JSON"),
        ({"properties": "[1, 2]"}, "is not a JSON object"),
    ],
)
def test_malformed_value_names_file_line_and_problem(tmp_path, events, values, fragment):
    path = _corrupt(tmp_path, events, 41, **values)
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    error = caught.value
    assert (error.path, error.row) == (str(path), 43)  # header is line 1, first row line 2
    assert fragment in error.problem
    assert f"{path}, row 43: " in str(error)


@pytest.mark.parametrize(
    ("properties", "fragment"),
    [
        ('{"metric": "nps", "score": 11}', "survey score 11 for nps is out of range 0-10"),
        ('{"metric": "csat", "score": 0}', "survey score 0 for csat is out of range 1-5"),
        ('{"metric": "ces", "score": 8}', "survey score 8 for ces is out of range 1-7"),
        ('{"metric": "ces", "score": "5"}', "survey score '5' for ces is out of range 1-7"),
        ('{"metric": "happiness", "score": 3}', "survey metric 'happiness' is not one of"),
        ('{"score": 3}', "survey metric None is not one of"),
        ("", "a survey event needs properties with a metric and a score"),
    ],
)
def test_survey_out_of_range_or_unknown_metric_names_the_row(
    tmp_path, events, properties, fragment
):
    position = int((events["event_type"] == "survey").to_numpy().nonzero()[0][3])
    path = _corrupt(tmp_path, events, position, properties=properties)
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert caught.value.row == position + 2
    assert fragment in caught.value.problem


def test_parquet_rows_are_numbered_from_one(tmp_path, events):
    frame = events.astype({"timestamp": object})
    frame.loc[frame.index[41], "timestamp"] = "not a time"
    frame["timestamp"] = frame["timestamp"].astype(str)
    frame.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(DataFileError) as caught:
        load_interactions(tmp_path / "bad.parquet")
    assert caught.value.row == 42
    assert "'not a time'" in caught.value.problem


def test_missing_required_column_has_no_row(tmp_path, events):
    path = _csv(tmp_path / "e.csv", events.drop(columns=["timestamp"]))
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert caught.value.row is None
    assert "'timestamp'" in caught.value.problem
    assert caught.value.path == str(path)


def test_unrecognisable_columns_say_which_are_missing(tmp_path):
    path = _rows(tmp_path / "x.csv", "user,what,when", "1,view,2025-01-01")
    with pytest.raises(DataFileError, match="cannot tell the format") as caught:
        detect_format(path)
    assert "customer_id" in caught.value.problem


def test_ragged_csv_line_is_reported_with_its_line_number(tmp_path):
    path = _rows(
        tmp_path / "e.csv",
        "customer_id,event_type,timestamp,item_id",
        "c1,view,2025-01-02 10:00:00,i1",
        "c1,view,2025-01-02 10:00:00,i1,surplus",
    )
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert caught.value.row == 3
    assert "malformed CSV" in caught.value.problem


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"", "the file is empty"), (gzip.compress(b""), "the file is empty (no header line)")],
)
def test_empty_file_is_a_clear_error(tmp_path, content, fragment):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert caught.value.problem == fragment
    assert caught.value.row is None


def test_header_without_rows_is_a_clear_error(tmp_path):
    path = _rows(tmp_path / "e.csv", HEADER)
    with pytest.raises(DataFileError, match="header but no data rows"):
        read_table(path)


def test_missing_file_and_broken_parquet_are_data_file_errors(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_interactions(tmp_path / "absent.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 but nothing else")
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        load_interactions(broken)


def test_unknown_format_name_is_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'xlsx'"):
        load_interactions(tmp_path / "absent.csv", fmt="xlsx")


def test_repeated_marks_every_present_value_after_its_first_row():
    values = pd.Series(["b", None, "a", "b", None, "a", "c", "b"], dtype=STRING)
    assert repeated(values).tolist() == [False, False, False, True, False, True, False, True]
    assert repeated(values).tolist() == (values.notna() & values.duplicated()).tolist()
    assert repeated(pd.Series(["x"], dtype=STRING)).tolist() == [False]
    assert repeated(pd.Series([], dtype=STRING)).tolist() == []


def test_a_binary_file_is_a_clear_error_not_a_decoding_traceback(tmp_path):
    path = tmp_path / "picture.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(DataFileError, match="cannot tell the format from the columns"):
        load_interactions(path)

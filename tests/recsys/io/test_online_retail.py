"""The Online Retail format and each of its quirks, on the repository's sample of the real file.

``tests/data/online_retail_sample.csv.gz`` is whole customers and some guest invoices of the UCI
file, rows byte for byte (``tests/data/README.md``). The expected counts were taken once from it
with Python's ``csv`` module (independently of the loader) and are pinned here.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataFileError
from recsys.io.loaders import load_interactions
from recsys.io.online_retail import NON_PRODUCT_CODES

SAMPLE_ROWS = 20_000


@pytest.fixture(scope="module")
def sample_path(retail_sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The header and the first 20,000 data lines of the sample, byte for byte."""
    path = tmp_path_factory.mktemp("retail") / "first-20000.csv"
    with gzip.open(retail_sample_path, "rt", encoding="utf-8", newline="") as source:
        lines = [next(source) for _ in range(SAMPLE_ROWS + 1)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sample(sample_path: Path):
    return load_interactions(sample_path)


@pytest.fixture(scope="module")
def sample_raw(sample_path: Path) -> pd.DataFrame:
    return pd.read_csv(sample_path, dtype=str, keep_default_na=False)


def test_sample_is_detected_as_online_retail(sample):
    assert sample.format == sample.report.format == "online-retail"


def test_sample_report_pins_the_known_counts(sample):
    report = sample.report
    assert report.rows_read == 20_000
    assert report.rows_loaded == 19_944
    assert report.dropped == {
        "missing_invoice": 0,
        "missing_item": 0,
        "bad_quantity": 32,
        "bad_price": 24,
    }
    assert report.counts["cancellations_as_returns"] == 360
    assert report.counts["guest_rows"] == 4_567
    assert report.counts["non_product_rows"] == 100
    assert report.counts["customers"] == 472


def test_cancellations_become_returns_with_positive_quantity(sample, sample_raw):
    table = sample.interactions
    returns = table[table["event_type"] == "return"]
    assert len(returns) == 360
    assert (returns["quantity"] > 0).all()
    assert returns["order_id"].str.startswith("C").all()
    assert (table.loc[table["event_type"] == "purchase", "quantity"] > 0).all()
    # C536622 cancels two of item 22752 at 8.50
    first = sample_raw[sample_raw["InvoiceNo"].str.startswith("C")].iloc[0]
    row = returns[returns["order_id"] == first["InvoiceNo"]].iloc[0]
    assert row["quantity"] == -float(first["Quantity"])
    assert row["price"] == float(first["UnitPrice"])
    assert row["customer_id"] == first["CustomerID"]


def test_lines_of_one_invoice_share_its_order_id(sample, sample_raw):
    kept = sample.interactions
    first_invoice = sample_raw["InvoiceNo"].iloc[0]
    lines = kept[kept["order_id"] == first_invoice]
    assert len(lines) == int((sample_raw["InvoiceNo"] == first_invoice).sum())
    assert lines["customer_id"].nunique() == 1
    assert lines["timestamp"].nunique() == 1


def test_non_product_codes_are_kept_but_flagged(sample):
    table = sample.interactions
    flagged = table.loc[~table["is_product"], "item_id"].value_counts().to_dict()
    assert flagged == {
        "POST": 45,
        "M": 29,
        "DOT": 18,
        "AMAZONFEE": 3,
        "BANK CHARGES": 2,
        "D": 2,
        "C2": 1,
    }
    assert set(flagged) <= NON_PRODUCT_CODES
    assert table.loc[table["item_id"] == "85123A", "is_product"].all()


def test_guest_rows_keep_a_missing_customer(sample, sample_raw):
    table = sample.interactions
    guests = table[table["customer_id"].isna()]
    assert len(guests) == 4_567
    assert guests["event_type"].isin(["purchase", "return"]).all()
    assert not (table["customer_id"] == "").any()


def test_stock_codes_are_upper_cased_strings(sample, sample_raw):
    lower = sample_raw["StockCode"][sample_raw["StockCode"].str.contains("[a-z]")]
    assert len(lower) > 0
    items = set(sample.interactions["item_id"])
    assert not any(code in items for code in lower)
    assert set(lower.str.upper()) <= items
    assert "85123A" in items


def test_descriptions_lose_stray_spaces(sample, sample_raw):
    spaced = sample_raw.loc[sample_raw["Description"].str.contains("  "), "StockCode"]
    titles = sample.catalog.set_index("item_id")["title"]
    code = spaced.iloc[0].upper()
    assert "  " not in titles[code]
    assert not titles.str.contains("  ").any()
    assert (titles == titles.str.strip()).all()


def test_bad_quantities_and_prices_are_dropped(sample, sample_raw):
    quantity = sample_raw["Quantity"].astype(float)
    written_off = ~sample_raw["InvoiceNo"].str.startswith("C") & (quantity < 0)
    assert int(written_off.sum()) == 32  # stock write-offs: all counted as bad_quantity
    table = sample.interactions
    assert (table["price"] > 0).all()
    assert (table["quantity"] > 0).all()


def test_country_goes_to_properties(sample):
    first = sample.interactions["properties"].iloc[0]
    assert first == '{"country":"France"}'


def test_float_customer_ids_and_parquet_give_the_same_table(sample, sample_path, tmp_path):
    typed = pd.read_csv(sample_path)  # pandas' own guesses: CustomerID becomes float64
    assert typed["CustomerID"].dtype == np.float64
    typed.to_csv(tmp_path / "floats.csv", index=False)
    typed.to_parquet(tmp_path / "typed.parquet", index=False)
    expected = sample.interactions
    for path in (tmp_path / "floats.csv", tmp_path / "typed.parquet"):
        got = load_interactions(path).interactions
        pd.testing.assert_frame_equal(got, expected)


def test_gzip_sample_loads_like_plain(sample, sample_path, tmp_path):
    packed = tmp_path / "sample.csv.gz"
    packed.write_bytes(gzip.compress(sample_path.read_bytes()))
    pd.testing.assert_frame_equal(load_interactions(packed).interactions, sample.interactions)


def test_every_tenth_invoice_counts_match_the_sampled_rows(sample_raw, tmp_path):
    invoices = sample_raw["InvoiceNo"].drop_duplicates().iloc[::10]
    rows = sample_raw[sample_raw["InvoiceNo"].isin(invoices)]
    rows.to_csv(tmp_path / "tenth.csv", index=False)
    report = load_interactions(tmp_path / "tenth.csv").report
    cancelled = rows["InvoiceNo"].str.startswith("C") & (rows["UnitPrice"].astype(float) > 0)
    assert report.counts["cancellations_as_returns"] == int(cancelled.sum())
    assert report.counts["orders"] <= len(invoices)
    assert report.rows_read == len(rows)


def test_original_uci_date_format_is_understood(sample_raw, tmp_path):
    rows = sample_raw.head(3).copy()
    rows["InvoiceDate"] = ["12/1/2010 8:26", "12/1/2010 8:26", "12/1/2010 13:05"]
    rows.to_csv(tmp_path / "us-dates.csv", index=False)
    stamps = load_interactions(tmp_path / "us-dates.csv").interactions["timestamp"]
    assert stamps.tolist() == [
        pd.Timestamp("2010-12-01 08:26"),
        pd.Timestamp("2010-12-01 08:26"),
        pd.Timestamp("2010-12-01 13:05"),
    ]


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("Quantity", "six", "Quantity 'six' is not a number"),
        ("UnitPrice", "2,55", "UnitPrice '2,55' is not a number"),
        ("InvoiceDate", "2010-13-45 08:26:00", "InvoiceDate '2010-13-45 08:26:00' is not a valid"),
    ],
)
def test_malformed_retail_value_names_file_line_and_problem(
    sample_raw, tmp_path, column, value, fragment
):
    rows = sample_raw.head(500).copy()
    rows.loc[rows.index[321], column] = value
    path = tmp_path / "bad.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataFileError) as caught:
        load_interactions(path)
    assert (caught.value.path, caught.value.row) == (str(path), 323)
    assert fragment in caught.value.problem


def test_missing_retail_column_is_named(sample_raw, tmp_path):
    path = tmp_path / "no-price.csv"
    sample_raw.head(10).drop(columns=["UnitPrice"]).to_csv(path, index=False)
    with pytest.raises(DataFileError) as caught:
        load_interactions(path, fmt="online-retail")
    assert caught.value.row is None
    assert "UnitPrice" in caught.value.problem


def test_whole_sample_report(retail_sample_path):
    report = load_interactions(retail_sample_path).report
    assert report.rows_read == 85_129
    assert report.rows_loaded == 84_828
    assert report.dropped["bad_quantity"] == 141
    assert report.dropped["bad_price"] == 160
    assert report.counts["cancellations_as_returns"] == 1_610
    assert report.counts["guest_rows"] == 13_145
    assert report.counts["customers"] == 1_086


def test_a_latin1_byte_does_not_stop_the_load(sample_raw, tmp_path):
    rows = sample_raw.head(20).copy()
    rows.loc[rows.index[0], "Description"] = "GIFT VOUCHER £20"
    path = tmp_path / "latin1.csv"
    rows.to_csv(path, index=False, encoding="latin-1")
    result = load_interactions(path)
    assert result.report.rows_read == 20
    assert result.catalog["title"].str.contains("GIFT VOUCHER \ufffd20", regex=False).any()

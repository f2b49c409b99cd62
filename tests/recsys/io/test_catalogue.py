"""Catalogue files, catalogues derived from events, and categories from descriptions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.errors import DataFileError
from recsys.io.catalogue import CATEGORIES, categorize, derive_catalog, load_catalog
from recsys.io.loaders import load_interactions
from recsys.schema import CATALOG_COLUMNS


@pytest.mark.parametrize(
    ("title", "category"),
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", "candles & lights"),
        ("FRENCH CARRIAGE LANTERN", "candles & lights"),
        ("PAPER CHAIN KIT 50'S CHRISTMAS ", "christmas"),
        ("CHRISTMAS RETROSPOT MUG", "christmas"),
        ("LUNCH BAG RED RETROSPOT", "bags"),
        ("SET OF 3 CAKE TINS PANTRY DESIGN ", "kitchen & dining"),
        ("PACK OF 72 RETROSPOT CAKE CASES", "kitchen & dining"),
        ("WRAP ENGLISH ROSE", "stationery & wrap"),
        ("DIAMANTE NECKLACE BLACK", "jewellery & accessories"),
        ("CREAM CUPID HEARTS COAT HANGER", "home decor"),
        ("POSTAGE", "fees & services"),
        ("Manual", "fees & services"),
        ("Dotcomgiftshop Gift Voucher ?20.00", "fees & services"),
        ("INFLATABLE POLITICAL GLOBE", "other"),
        ("", "other"),
    ],
)
def test_categorize_applies_the_first_matching_keyword_rule(title, category):
    assert categorize(pd.Series([title])).tolist() == [category]


def test_categorize_keeps_the_index_and_maps_missing_to_other():
    titles = pd.Series(["RED MUG", None, "RED MUG"], index=[7, 3, 5])
    result = categorize(titles)
    assert result.index.tolist() == [7, 3, 5]
    assert result.tolist() == ["kitchen & dining", "other", "kitchen & dining"]
    assert set(CATEGORIES) >= set(result)


def test_on_the_real_descriptions_other_is_a_small_minority(retail_sample_path: Path):
    products = pd.read_csv(
        retail_sample_path, usecols=["StockCode", "Description"], dtype=str
    ).dropna()
    titles = products.drop_duplicates("StockCode", keep="last")["Description"]
    shares = categorize(titles).value_counts(normalize=True)
    assert shares["other"] < 0.2
    assert shares.max() < 0.2  # no category swallows the catalogue
    assert 12 <= len(shares) <= 20


def _interactions(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["item_id", "event_type", "timestamp", "price"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["item_id"] = frame["item_id"].astype("string")
    frame["event_type"] = frame["event_type"].astype("string")
    return frame


def test_derived_catalogue_takes_the_latest_title_and_sale_price():
    interactions = _interactions(
        [
            ("A", "purchase", "2025-01-03", 2.0),
            ("A", "purchase", "2025-01-01", 1.0),
            ("A", "view", "2025-01-05", 9.0),
            ("B", "view", "2025-01-02", 4.0),
            ("C", "search", "2025-01-02", np.nan),
        ]
    )
    interactions.loc[4, "item_id"] = pd.NA
    titles = pd.Series(["OLD  NAME", "OLDEST", None, "BLUE MUG", None], index=interactions.index)
    catalog = derive_catalog(interactions, titles)
    assert tuple(catalog.columns) == CATALOG_COLUMNS
    assert catalog["item_id"].tolist() == ["A", "B"]
    assert catalog["title"].tolist() == ["OLD  NAME", "BLUE MUG"]
    assert catalog["price"].tolist() == [2.0, 4.0]  # B was never sold: its latest price
    assert catalog["category"].tolist() == ["other", "kitchen & dining"]
    assert catalog["in_stock"].tolist() == [True, True]


def test_derived_catalogue_without_titles_uses_the_item_ids():
    catalog = derive_catalog(_interactions([("X1", "view", "2025-01-01", np.nan)]))
    assert catalog["title"].tolist() == ["X1"]
    assert np.isnan(catalog["price"].iloc[0])
    assert {c: str(t) for c, t in catalog.dtypes.items()} == {
        "item_id": "string",
        "title": "string",
        "category": "string",
        "price": "float64",
        "in_stock": "bool",
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_catalogue_file_fills_defaults_for_missing_values(tmp_path):
    path = _write(
        tmp_path / "catalog.csv",
        "item_id,title,category,price,in_stock\n"
        "B2,RED MUG,,3.5,no\n"
        "A1,,gifts,,TRUE\n"
        "C3,BLUE LANTERN,lights,1.25,\n",
    )
    catalog = load_catalog(path)
    assert catalog["item_id"].tolist() == ["A1", "B2", "C3"]
    assert catalog["title"].tolist() == ["A1", "RED MUG", "BLUE LANTERN"]
    assert catalog["category"].tolist() == ["gifts", "kitchen & dining", "lights"]
    assert catalog["price"].iloc[1:].tolist() == [3.5, 1.25]
    assert catalog["in_stock"].tolist() == [True, False, True]


def test_catalogue_parquet_with_only_item_ids(tmp_path):
    pd.DataFrame({"item_id": [20725, 22423]}).to_parquet(tmp_path / "c.parquet", index=False)
    catalog = load_catalog(tmp_path / "c.parquet")
    assert catalog["item_id"].tolist() == ["20725", "22423"]
    assert catalog["in_stock"].all()


@pytest.mark.parametrize(
    ("body", "row", "fragment"),
    [
        ("A,1.0,true\nA,2.0,true\n", 3, "item_id 'A' appears twice"),
        ("A,cheap,true\n", 2, "price 'cheap' is not a number"),
        ("A,1.0,true\nB,-1,true\n", 3, "price -1.0 is negative"),
        ("A,1.0,maybe\n", 2, "in_stock 'maybe' is not true or false"),
        ("A,1.0,true\n,1.0,true\n", 3, "item_id is missing"),
    ],
)
def test_malformed_catalogue_names_the_row(tmp_path, body, row, fragment):
    path = _write(tmp_path / "catalog.csv", "item_id,price,in_stock\n" + body)
    with pytest.raises(DataFileError) as caught:
        load_catalog(path)
    assert (caught.value.path, caught.value.row) == (str(path), row)
    assert fragment in caught.value.problem


def test_catalogue_without_item_id_column_is_rejected(tmp_path):
    path = _write(tmp_path / "catalog.csv", "sku,title\nA,B\n")
    with pytest.raises(DataFileError, match="missing required column 'item_id'"):
        load_catalog(path)


def test_given_catalogue_wins_and_unlisted_items_are_derived(tmp_path):
    events = _write(
        tmp_path / "events.csv",
        "customer_id,event_type,timestamp,item_id,price\n"
        "c1,purchase,2025-01-01,A1,2.0\n"
        "c1,purchase,2025-01-02,Z9,5.0\n",
    )
    catalog_path = _write(tmp_path / "catalog.csv", "item_id,title,price\nA1,RED MUG,2.5\nB2,X,1\n")
    result = load_interactions(events, catalog_path=catalog_path)
    catalog = result.catalog.set_index("item_id")
    assert catalog.index.tolist() == ["A1", "B2", "Z9"]
    assert catalog.loc["A1", "price"] == 2.5
    assert catalog.loc["Z9", "price"] == 5.0
    assert result.report.counts["catalog_items_derived"] == 1


def test_catalogue_item_ids_are_stripped_like_event_item_ids(tmp_path):
    events = _write(
        tmp_path / "events.csv",
        "customer_id,event_type,timestamp,item_id,price\n"
        "c1,purchase,2025-01-01,85123A,2.0\n"
        "c1,view,2025-01-02, 22423b ,\n",
    )
    catalog_path = _write(
        tmp_path / "catalog.csv", "item_id,title,price\n85123A ,RED MUG,2.5\n 22423b ,BLUE JUG,1\n"
    )
    assert load_catalog(catalog_path)["item_id"].tolist() == ["22423b", "85123A"]
    result = load_interactions(events, catalog_path=catalog_path)
    assert result.interactions["item_id"].tolist() == ["85123A", "22423b"]
    catalog = result.catalog.set_index("item_id")
    assert catalog.index.tolist() == ["22423b", "85123A"]
    assert catalog.loc["85123A", "title"] == "RED MUG"  # the listed row, not a derived one
    assert result.report.counts["catalog_items_derived"] == 0


def test_catalogue_ids_listed_twice_are_an_error_naming_the_row(tmp_path):
    path = _write(tmp_path / "catalog.csv", "item_id,title\n85123A,MUG\n 85123A,MUG\n")
    with pytest.raises(DataFileError) as caught:
        load_catalog(path)
    assert caught.value.row == 3
    assert "item_id '85123A' appears twice" in caught.value.problem

"""The synthetic shop: deterministic, realistic, and loadable in every file format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.io.catalogue import categorize
from recsys.io.loaders import load_interactions
from recsys.io.synthetic import generate_events, stream_events, write_events, write_synthetic
from recsys.schema import (
    CATALOG_COLUMNS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    OFFER_RESPONSE_TYPES,
    SURVEY_METRICS,
)


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The size the demo uses."""
    return generate_events(2000, 500, 365, seed=7)


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_events(120, 60, 90, seed=11)


def test_same_seed_gives_an_identical_frame_and_another_seed_a_different_one(small):
    events, catalog = small
    again, catalog_again = generate_events(120, 60, 90, seed=11)
    pd.testing.assert_frame_equal(events, again)
    pd.testing.assert_frame_equal(catalog, catalog_again)
    other, _ = generate_events(120, 60, 90, seed=12)
    assert not other.equals(events)


def test_default_size_gives_between_100k_and_300k_events_of_every_type(shop):
    events, catalog = shop
    assert 100_000 <= len(events) <= 300_000
    assert tuple(events.columns) == EVENT_COLUMNS
    assert (
        set(events["event_type"].unique()) == set(EVENT_TYPES) - OFFER_RESPONSE_TYPES
    )  # none simulated
    assert events["customer_id"].nunique() > 1900
    assert tuple(catalog.columns) == CATALOG_COLUMNS
    assert catalog["item_id"].is_unique and len(catalog) == 500
    assert events["event_id"].is_unique


def test_timestamps_lie_in_the_window_in_order():
    events, _ = generate_events(50, 30, 30, seed=1, start="2024-06-01")
    assert events["timestamp"].min() >= pd.Timestamp("2024-06-01")
    assert events["timestamp"].max() < pd.Timestamp("2024-07-01")
    assert events["timestamp"].is_monotonic_increasing


def test_funnel_narrows_from_views_to_carts_to_purchases(shop):
    counts = shop[0]["event_type"].value_counts()
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"] > counts["return"]
    assert counts["add_to_cart"] > counts["remove_from_cart"]


def test_every_purchase_was_viewed_and_carted_before(small):
    events, _ = small
    purchases = events[events["event_type"] == "purchase"]
    for kind in ("view", "add_to_cart"):
        earlier = (
            events[events["event_type"] == kind]
            .groupby(["customer_id", "item_id"])["timestamp"]
            .min()
        )
        first = purchases.groupby(["customer_id", "item_id"])["timestamp"].min()
        assert (earlier.reindex(first.index) < first).all()


def test_purchases_carry_orders_quantities_and_catalogue_prices(shop):
    events, catalog = shop
    purchases = events[events["event_type"] == "purchase"]
    assert purchases["order_id"].notna().all()
    assert (purchases["quantity"] >= 1).all()
    prices = catalog.set_index("item_id")["price"]
    assert np.allclose(purchases["price"].to_numpy(), prices[purchases["item_id"]].to_numpy())
    assert purchases.groupby("order_id")["customer_id"].nunique().max() == 1


def test_customers_reorder_the_same_items(shop):
    purchases = shop[0][shop[0]["event_type"] == "purchase"]
    orders_per_pair = purchases.groupby(["customer_id", "item_id"])["order_id"].nunique()
    assert (orders_per_pair >= 3).mean() > 0.05


def test_some_customers_churn_well_before_the_end(shop):
    events, _ = shop
    active = events[~events["event_type"].isin(["email_open", "email_click", "offer_sent"])]
    last = active.groupby("customer_id")["timestamp"].max()
    first = active.groupby("customer_id")["timestamp"].min()
    gone = (last < pd.Timestamp("2025-10-01")) & (last - first > pd.Timedelta(days=30))
    assert 0.1 < gone.mean() < 0.4


def test_survey_scores_are_in_range_and_lower_after_a_return(shop):
    events, _ = shop
    surveys = events[events["event_type"] == "survey"]
    props = surveys["properties"].map(json.loads)
    metric = props.map(lambda p: p["metric"])
    score = props.map(lambda p: p["score"])
    assert set(metric) == set(SURVEY_METRICS)
    for name, (low, high) in SURVEY_METRICS.items():
        assert score[metric == name].between(low, high).all()
    returned_orders = set(events.loc[events["event_type"] == "return", "order_id"])
    csat = surveys[metric == "csat"]
    after_return = csat["order_id"].isin(returned_orders)
    csat_score = score[metric == "csat"]
    assert csat_score[after_return].mean() < csat_score[~after_return].mean() - 1.0


def test_searches_offers_and_dislikes_carry_what_they_should(shop):
    events, _ = shop
    searches = events[events["event_type"] == "search"]
    assert searches["properties"].map(lambda p: json.loads(p)["query"]).str.len().min() > 0
    offers = events[events["event_type"] == "offer_sent"]
    assert offers["properties"].map(lambda p: "offer_id" in json.loads(p)).all()
    assert events.loc[events["event_type"] == "dislike", "item_id"].notna().all()


def test_buyers_concentrate_on_their_taste(shop):
    events, catalog = shop
    purchases = events[events["event_type"] == "purchase"].merge(
        catalog[["item_id", "category"]], on="item_id"
    )
    per_category = purchases.groupby(["customer_id", "category"]).size().unstack(fill_value=0)
    top_share = per_category.max(axis=1) / per_category.sum(axis=1)
    assert top_share.mean() > 0.4  # versus about 1/12 without tastes


def test_titles_are_put_back_in_their_category_by_categorize(shop):
    catalog = shop[1]
    assert (categorize(catalog["title"]) == catalog["category"]).all()
    assert 10 <= catalog["category"].nunique() <= 15


@pytest.mark.parametrize("name", ["events.csv", "events.csv.gz", "events.parquet"])
def test_written_events_load_back_unchanged(small, tmp_path, name):
    events, _ = small
    write_events(events, tmp_path / name)
    result = load_interactions(tmp_path / name)
    assert result.format == "events"
    assert result.report.rows_loaded == len(events)
    pd.testing.assert_frame_equal(result.interactions[list(EVENT_COLUMNS)], events)


def test_gzip_output_is_byte_for_byte_reproducible(small, tmp_path):
    write_events(small[0], tmp_path / "a" / "events.csv.gz")
    write_events(small[0], tmp_path / "b" / "events.csv.gz")
    first = (tmp_path / "a" / "events.csv.gz").read_bytes()
    assert first == (tmp_path / "b" / "events.csv.gz").read_bytes()


def test_unknown_extension_and_empty_shop_are_refused(small, tmp_path):
    with pytest.raises(ValueError, match="unknown extension"):
        write_events(small[0], tmp_path / "events.json")
    with pytest.raises(ValueError, match="at least 1"):
        generate_events(0, 10, 10)


def test_a_shop_drawn_in_chunks_numbers_ids_across_chunks_and_is_deterministic():
    catalog, chunks = stream_events(250, 40, 60, seed=5, chunk=100)
    parts = list(chunks)
    assert [p["customer_id"].nunique() > 40 for p in parts] == [True, True, True]
    events = pd.concat(parts, ignore_index=True)
    assert events["event_id"].is_unique
    assert events["customer_id"].nunique() > 200
    assert events["customer_id"].str.slice(1).astype(int).max() <= 250
    purchases = events[events["event_type"] == "purchase"]
    assert purchases.groupby("order_id")["customer_id"].nunique().max() == 1
    assert all(p["timestamp"].is_monotonic_increasing for p in parts)
    again = pd.concat(list(stream_events(250, 40, 60, seed=5, chunk=100)[1]), ignore_index=True)
    pd.testing.assert_frame_equal(events, again)
    assert len(catalog) == 40


@pytest.mark.parametrize("name", ["events.csv.gz", "events.parquet"])
def test_write_synthetic_streams_chunks_into_one_loadable_file(tmp_path, name):
    count, catalog = write_synthetic(tmp_path / name, 120, 60, 90, seed=11)
    events, catalog_in_memory = generate_events(120, 60, 90, seed=11)
    assert count == len(events)
    pd.testing.assert_frame_equal(catalog, catalog_in_memory)
    loaded = load_interactions(tmp_path / name)
    pd.testing.assert_frame_equal(loaded.interactions[list(EVENT_COLUMNS)], events)

"""Bounded customer samples (``training.sampling``), prefix views of the sorted table
(``training.interactions.rows_before``) and what ``train`` records when it samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from trainingkit import START, clustered_interactions, write_events_csv

from recsys.bundle import read_bundle
from recsys.config import TrainingConfig
from training.interactions import rows_before
from training.pipeline import train_bundle
from training.sampling import sample_customers

CONFIG = TrainingConfig(factors=4, regularization=0.1, alpha=2.0, iterations=10, neighbours=5)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def test_below_the_bound_the_table_itself_is_returned() -> None:
    table = clustered_interactions()
    sample = sample_customers(table, table["customer_id"].nunique(), seed=0)
    assert sample.interactions is table and not sample.sampled
    assert sample_customers(table, None, seed=0).interactions is table


def test_a_sample_keeps_every_row_of_its_customers_and_no_other() -> None:
    table = clustered_interactions()
    sample = sample_customers(table, 10, seed=3)
    kept = sample.interactions
    assert sample.sampled and sample.to_dict() == {"customers": 10, "of_customers": 42}
    assert kept["customer_id"].nunique() == 10
    chosen = set(kept["customer_id"])
    expected = table.loc[table["customer_id"].isin(chosen)]
    pd.testing.assert_frame_equal(kept, expected)
    again = sample_customers(table, 10, seed=3).interactions
    assert set(again["customer_id"]) == chosen  # fixed by the seed
    assert set(sample_customers(table, 10, seed=4).interactions["customer_id"]) != chosen


def test_guest_rows_are_kept_by_whole_orders() -> None:
    table = clustered_interactions()
    guest = table["customer_id"].isin(["a00", "a01", "b00", "b01"])
    table["customer_id"] = table["customer_id"].mask(guest)
    kept = sample_customers(table, 20, seed=1).interactions
    guests = kept.loc[kept["customer_id"].isna()]
    all_guest_rows = table.loc[table["customer_id"].isna()]
    for order in guests["order_id"].unique():
        assert (guests["order_id"] == order).sum() == (all_guest_rows["order_id"] == order).sum()


def test_rows_before_a_cutoff_are_the_same_rows_without_a_copy_when_sorted() -> None:
    table = _sorted(clustered_interactions())
    cutoff = START + pd.Timedelta(days=30)
    want = table.loc[table["timestamp"].lt(cutoff)]
    got = rows_before(table, cutoff)
    pd.testing.assert_frame_equal(got, want)
    assert np.shares_memory(got["quantity"].to_numpy(), table["quantity"].to_numpy())
    assert rows_before(table, START + pd.Timedelta(days=365)) is table
    shuffled = table.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(
        rows_before(shuffled, cutoff), shuffled.loc[shuffled["timestamp"].lt(cutoff)]
    )


def test_train_records_the_samples_of_its_hold_out_and_ranker(tmp_path: Path) -> None:
    events = write_events_csv(clustered_interactions(days=120), tmp_path / "events.csv")
    config = CONFIG.model_copy(
        update={"holdout_training_customers": 30, "ranker_training_customers": 35}
    )
    path = train_bundle(events, tmp_path / "artifacts", config=config, holdout_days=20)
    manifest = read_bundle(path).manifest
    offline = manifest.metrics["offline"]
    assert offline["customer_sample"]["customers"] == 30
    assert offline["customer_sample"]["of_customers"] == 42
    assert "ease" not in offline["tasks"]["all"] and "churn" not in offline
    assert manifest.counts["customers"] == 42  # the served model: every customer
    ranker = manifest.params["ranker"]
    assert "skipped" in ranker or ranker["customer_sample"] == {"customers": 35, "of_customers": 42}

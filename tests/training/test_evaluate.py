from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from trainingkit import START, clustered_interactions, rows_for, write_events_csv

from recsys.config import TrainingConfig
from recsys.errors import InvalidRequestError
from recsys.schema import INTERACTION_COLUMNS
from training.build import BuildOptions, build_bundle
from training.evaluate import METHODS, evaluate, evaluate_split, ground_truth

CONFIG = TrainingConfig(factors=4, regularization=0.1, alpha=2.0, iterations=10, neighbours=5)
FAST = BuildOptions(with_features=False, with_churn=False)
SPLIT = START + pd.Timedelta(days=61)


def with_future(frame: pd.DataFrame) -> pd.DataFrame:
    """After the split: probe buys A3 (new) and A0 (a repeat); a stranger buys A1."""
    rows = rows_for("probe", ["A3", "A0", "POST"], 62, "f1")
    rows += rows_for("stranger", ["A1"], 62, "f2")
    rows += rows_for("loyal", ["B0", "NEWITEM"], 63, "f3")
    future = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    future["timestamp"] = future["timestamp"].astype("datetime64[ns]")
    return pd.concat([frame, future.astype(frame.dtypes.to_dict())], ignore_index=True)


def test_ground_truth_scores_known_customers_on_known_products_only() -> None:
    frame = with_future(clustered_interactions())
    bundle = build_bundle(frame, None, SPLIT, CONFIG, options=FAST)
    test = frame.loc[frame["timestamp"] >= SPLIT]
    gt = ground_truth(bundle, test)
    customers = bundle.customer_ids
    assert [customers[u] for u in gt.users["all"]] == ["loyal", "probe"]
    assert [customers[u] for u in gt.users["discovery"]] == ["probe"]
    ids = bundle.items.item_ids
    probe_all = {ids[i] for i in gt.relevant["all"][1].indices}
    assert probe_all == {"A0", "A3"}  # POST is not a product
    assert {ids[i] for i in gt.relevant["discovery"][0].indices} == {"A3"}
    assert gt.counts["new_customers_not_evaluated"] == 1
    assert gt.counts["unknown_item_purchases"] == 1


def test_ground_truth_scores_a_fixed_sample_when_asked_for_at_most_n_customers() -> None:
    frame = with_future(clustered_interactions())
    bundle = build_bundle(frame, None, SPLIT, CONFIG, options=FAST)
    test = frame.loc[frame["timestamp"] >= SPLIT]
    full = ground_truth(bundle, test)
    one = ground_truth(bundle, test, max_customers=1, seed=3)
    assert len(one.users["all"]) == 1 and set(one.users["all"]) <= set(full.users["all"])
    assert one.relevant["all"].shape[0] == 1
    assert one.counts["customers_sampled_from"] == 2
    row = list(full.users["all"]).index(one.users["all"][0])
    assert set(one.relevant["all"][0].indices) == set(full.relevant["all"][row].indices)
    again = ground_truth(bundle, test, max_customers=1, seed=3)
    assert list(again.users["all"]) == list(one.users["all"])


def test_evaluate_split_reports_every_method_per_task_and_the_served_lift() -> None:
    frame = with_future(clustered_interactions())
    report = evaluate_split(frame, None, SPLIT, CONFIG, k_values=(2, 5))
    assert set(report["tasks"]["all"]) == set(METHODS)
    assert set(report["tasks"]["discovery"]) == set(METHODS) - {"buy_again", "buy_again_popular"}
    for task in report["tasks"].values():
        for metrics in task.values():
            assert 0.0 <= metrics["ndcg@5"] <= 1.0 and "recall@2" in metrics
    # probe's only new item A3 is one of 3 left in cluster A: found in the top 5
    assert report["tasks"]["discovery"]["served"]["recall@5"] == 1.0
    assert "served_lift_ndcg" in report["summary"]["all"]["als"]


def test_evaluate_writes_report_json_and_plots(tmp_path: Path) -> None:
    events = write_events_csv(with_future(clustered_interactions()), tmp_path / "events.csv")
    out = tmp_path / "report"
    report = evaluate(events, SPLIT, out_dir=out, config=CONFIG, k_values=(5,))
    saved = json.loads((out / "report.json").read_text())
    assert saved["counts"]["customers_all"] == 2
    assert saved["peak_memory_mb"] > 0 and saved["timing"]["train_seconds"] > 0
    for name in report["plots"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(report["plots"]) == ["ndcg_at_5.png", "recall_at_5.png"]


def test_a_split_with_nothing_after_it_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="nothing to score"):
        evaluate_split(clustered_interactions(), None, SPLIT, CONFIG)


def test_served_beats_a_baseline_only_where_the_paired_interval_excludes_zero() -> None:
    frame = with_future(clustered_interactions())
    report = evaluate_split(frame, None, SPLIT, CONFIG, k_values=(5,), with_churn=False)
    assert "ease" in report["tasks"]["discovery"] and "buy_again_popular" in report["tasks"]["all"]
    assert report["baseline_tuning"]["ease"]["discovery"]["best_l2"] > 0
    for task, block in report["intervals"].items():
        served = block["methods"]["served"]["ndcg@5"]
        assert served["lo"] <= served["value"] <= served["hi"]
        assert served["value"] == report["tasks"][task]["served"]["ndcg@5"]
        for method, row in block["comparisons"].items():
            d = row["ndcg@5"]
            beats = d["verdict"] == f"served beats {method}"
            assert beats == (d["lo"] > 0)
    assert any("served - ease" in line for line in report["verdicts"])
    assert "churn" not in report

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from recsys.customers.churn import CHURN_FEATURES, calibration_from_dict, churn_matrix
from recsys.io.loaders import load_interactions
from serving.churn_scorer import OnnxChurnScorer
from training.churn import (
    ChurnArtifacts,
    build_window,
    churn_labels,
    top_decile_lift,
    train_churn,
    window_cutoffs,
)
from training.churn_onnx import float32_booster

AS_OF = pd.Timestamp("2011-06-01")
#: LightGBM's kZeroThreshold: inputs within it of zero are taken as zero when predicting.
ZERO_THRESHOLD = float(np.float32(1e-35))


@pytest.fixture(scope="module")
def retail(retail_sample_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test sample: a deterministic third of the real customers, with all their rows."""
    loaded = load_interactions(retail_sample_path)
    return loaded.interactions, loaded.catalog


@pytest.fixture(scope="module")
def artifacts(retail: tuple[pd.DataFrame, pd.DataFrame]) -> ChurnArtifacts:
    events, catalog = retail
    return train_churn(events.loc[events["timestamp"] < AS_OF], AS_OF, 90, catalog)


@pytest.fixture(scope="module")
def rows(retail: tuple[pd.DataFrame, pd.DataFrame]) -> np.ndarray:
    """Model inputs of real customers at two dates, plus rows with missing values."""
    events, catalog = retail
    windows = [build_window(events, c, 90, catalog) for c in (AS_OF, pd.Timestamp("2011-03-01"))]
    matrix = np.vstack([churn_matrix(w.features) for w in windows])
    blank = churn_matrix([{}, {"recency_days": 3.0}, {"frequency": 40, "monetary": 1e6}])
    return np.vstack([matrix, blank])


def test_onnx_raw_probabilities_equal_lightgbm_predict_proba(artifacts, rows):
    session = ort.InferenceSession(artifacts.onnx_bytes, providers=["CPUExecutionProvider"])
    (onnx_probs,) = session.run(["probabilities"], {"input": rows})
    lgbm_probs = artifacts.model.predict_proba(rows)
    assert onnx_probs.shape == lgbm_probs.shape == (len(rows), 2)
    np.testing.assert_allclose(onnx_probs, lgbm_probs, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def rows_on_the_splits(artifacts, rows) -> np.ndarray:
    """For every split of the fitted trees, a real row with that feature set to the float32
    nearest the (float64) threshold and to its two float32 neighbours."""
    dump = artifacts.model.booster_.dump_model()
    stack = [tree["tree_structure"] for tree in dump["tree_info"]]
    made = []
    while stack:
        node = stack.pop()
        if "split_index" not in node:
            continue
        stack.extend((node["left_child"], node["right_child"]))
        nearest = np.float32(node["threshold"])
        values = (np.nextafter(nearest, -np.inf), nearest, np.nextafter(nearest, np.inf))
        if abs(node["threshold"]) <= ZERO_THRESHOLD:  # a split at zero: LightGBM reads any
            values = (np.float32(-1e-20), np.float32(0.0), np.float32(1e-20))  # |x| <= it as 0
        for value in values:
            row = rows[len(made) % (len(rows) - 3)].copy()
            row[node["split_feature"]] = value
            made.append(row)
    return np.asarray(made, dtype=np.float32)


def test_onnx_agrees_with_lightgbm_on_values_at_the_split_thresholds(artifacts, rows_on_the_splits):
    session = ort.InferenceSession(artifacts.onnx_bytes, providers=["CPUExecutionProvider"])
    (onnx_probs,) = session.run(["probabilities"], {"input": rows_on_the_splits})
    lgbm_probs = artifacts.model.predict_proba(rows_on_the_splits)
    assert len(rows_on_the_splits) >= 3 * 300  # 300 trees, at least one split each
    np.testing.assert_allclose(onnx_probs, lgbm_probs, rtol=0, atol=1e-5)


def test_float32_thresholds_change_no_prediction_on_float32_input(artifacts, rows_on_the_splits):
    trees = artifacts.model.trees  # the served model's LightGBM half
    moved = float32_booster(trees)
    np.testing.assert_array_equal(
        moved.predict(rows_on_the_splits), trees.predict_proba(rows_on_the_splits)[:, 1]
    )


def test_calibrated_serving_scorer_equals_calibration_of_lightgbm(artifacts, rows):
    scorer = OnnxChurnScorer(artifacts.onnx_bytes, artifacts.calibration)
    expected = calibration_from_dict(artifacts.calibration).apply(
        artifacts.model.predict_proba(rows)[:, 1]
    )
    np.testing.assert_allclose(scorer.score(rows), expected, rtol=0, atol=1e-5)
    assert artifacts.calibration["method"] == "platt"


def test_artifacts_name_the_features_and_beat_recency_on_the_held_out_window(retail, artifacts):
    assert artifacts.feature_names == list(CHURN_FEATURES)
    # at AS_OF the windows that end by the held-out one (2011-03-03) begin with the data
    assert "skipped" in artifacts.metrics and "model" not in artifacts.metrics
    events, catalog = retail
    later = pd.Timestamp("2011-08-01")
    metrics = train_churn(events.loc[events["timestamp"] < later], later, 90, catalog).metrics
    assert metrics["held_out_cutoff"] == "2011-05-03"
    assert all(c <= "2011-05-03" for c in metrics["train_cutoffs"])  # labels end by it
    assert metrics["model"]["roc_auc"] > metrics["recency"]["roc_auc"]
    assert 0.0 < metrics["model"]["brier"] < 0.25


def test_training_ignores_events_after_as_of(retail, artifacts):
    events, catalog = retail
    again = train_churn(events, AS_OF, 90, catalog)  # the whole file, later events included
    assert again.calibration == artifacts.calibration
    assert again.onnx_bytes == artifacts.onnx_bytes


def _purchase(customer: str, day: str) -> dict[str, object]:
    return {"customer_id": customer, "event_type": "purchase", "timestamp": pd.Timestamp(day)}


def test_label_is_one_when_nothing_is_bought_in_the_horizon():
    events = pd.DataFrame(
        [
            _purchase("stays", "2024-03-05"),
            _purchase("late", "2024-04-02"),  # the day after the 30-day horizon ends
            {"customer_id": "views", "event_type": "view", "timestamp": pd.Timestamp("2024-03-10")},
        ]
    )
    customers = pd.Series(["stays", "late", "views", "absent"])
    labels = churn_labels(events, customers, pd.Timestamp("2024-03-01"), 30)
    assert labels.tolist() == [0, 1, 1, 1]


def test_windows_step_back_from_the_held_out_cutoff():
    cutoffs = window_cutoffs(pd.Timestamp("2024-06-01"), 90, 2, 7)
    assert cutoffs == [
        pd.Timestamp("2024-03-03"),
        pd.Timestamp("2024-02-25"),
        pd.Timestamp("2024-02-18"),
    ]


def test_top_decile_lift_of_a_perfect_ranking():
    labels = np.array([1] * 10 + [0] * 90)
    scores = np.linspace(1, 0, 100)
    assert top_decile_lift(labels, scores) == pytest.approx(10.0)
    assert top_decile_lift(labels, -scores) == pytest.approx(0.0)

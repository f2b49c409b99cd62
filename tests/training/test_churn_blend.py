"""The served churn model: LightGBM averaged with logistic regression on RFM, and its ONNX."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from recsys.customers.churn import CHURN_FEATURES, churn_matrix
from training.churn import export_onnx, fit_baselines, rfm_matrix
from training.churn_blend import BlendedChurnModel, linear_terms, rfm_logs


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, np.ndarray]:
    """Buyers whose churn grows with recency and falls with frequency."""
    rng = np.random.default_rng(7)
    n = 1500
    frequency = rng.integers(1, 30, n)
    recency = rng.gamma(2.0, 30.0, n)
    monetary = np.exp(rng.normal(6.0, 1.0, n))
    logit = 0.8 * np.log1p(recency) - 0.9 * np.log1p(frequency) - 1.5
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    features = pd.DataFrame(
        {
            "recency_days": recency,
            "frequency": frequency,
            "monetary": monetary,
            "tenure_days": recency + rng.gamma(2.0, 40.0, n),
            "avg_order_value": monetary / frequency,
        }
    )
    return features, labels


@pytest.fixture(scope="module")
def blend(table: tuple[pd.DataFrame, np.ndarray]) -> BlendedChurnModel:
    features, labels = table
    x = churn_matrix(features)
    trees = LGBMClassifier(n_estimators=40, num_leaves=4, num_threads=1, verbose=-1)
    trees.fit(x, labels)
    return BlendedChurnModel.fit(trees, fit_baselines(features, labels)["rfm_logistic"], x)


def test_linear_half_is_the_rfm_logistic_regression_on_the_model_input(table) -> None:
    features, labels = table
    pipeline = fit_baselines(features, labels)["rfm_logistic"]
    coef, intercept = linear_terms(pipeline)
    logs = rfm_logs(churn_matrix(features))
    np.testing.assert_allclose(logs, rfm_matrix(features), rtol=1e-6)  # float32 input
    np.testing.assert_allclose(
        logs @ coef + intercept, pipeline.decision_function(rfm_matrix(features)), atol=1e-4
    )


def test_recency_falls_back_to_tenure_and_missing_values_count_as_zero() -> None:
    rows = churn_matrix([{"tenure_days": 9.0, "frequency": 2}, {"recency_days": 3.0}])
    np.testing.assert_allclose(
        rfm_logs(rows), np.log1p([[9.0, 2.0, 0.0], [3.0, 0.0, 0.0]]), rtol=1e-6
    )


def test_the_two_halves_weigh_alike_on_the_training_rows(blend, table) -> None:
    x = churn_matrix(table[0])
    margin = blend.trees.predict_proba(x, raw_score=True)
    linear = rfm_logs(x) @ blend.rfm_coef + blend.intercept
    assert np.std(blend.tree_weight * margin) == pytest.approx(0.5, rel=1e-6)
    assert np.std(linear) == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_allclose(blend.logit(x), blend.tree_weight * margin + linear)


def test_weight_one_ranks_as_the_trees_alone(table) -> None:
    features, labels = table
    x = churn_matrix(features)
    trees = LGBMClassifier(n_estimators=40, num_leaves=4, num_threads=1, verbose=-1)
    trees.fit(x, labels)
    alone = BlendedChurnModel.fit(trees, fit_baselines(features, labels)["rfm_logistic"], x, 1.0)
    assert not np.any(alone.rfm_coef) and alone.intercept == 0.0
    order = np.argsort(trees.predict_proba(x)[:, 1], kind="stable")
    assert np.all(np.diff(alone.predict_proba(x)[order, 1]) >= 0)


def test_onnx_outputs_the_blend_probabilities(blend, table) -> None:
    x = churn_matrix(table[0])
    blank = churn_matrix([{}, {"recency_days": 3.0}, {"frequency": 40, "monetary": 1e6}])
    rows = np.vstack([x, blank])
    session = ort.InferenceSession(
        export_onnx(blend, len(CHURN_FEATURES)), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    label, probs = session.run(["label", "probabilities"], {"input": rows})
    assert probs.shape == (len(rows), 2)
    np.testing.assert_allclose(probs, blend.predict_proba(rows), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(label, np.argmax(probs, axis=1))

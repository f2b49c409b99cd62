from __future__ import annotations

import numpy as np
import pytest
from lightgbm import LGBMClassifier

from recsys.customers.churn import CHURN_FEATURES, ChurnScorer, PlattCalibration, churn_matrix
from recsys.errors import ModelUnavailableError
from serving.churn_scorer import OnnxChurnScorer
from training.churn import export_onnx

N_FEATURES = len(CHURN_FEATURES)


@pytest.fixture(scope="module")
def fitted() -> tuple[LGBMClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 20.0, (400, N_FEATURES)).astype(np.float32)
    y = (x[:, 0] + rng.normal(0, 20, 400) > 40).astype(int)  # churn grows with recency
    model = LGBMClassifier(n_estimators=20, num_leaves=4, num_threads=1, verbose=-1)
    return model.fit(x, y), x


def test_scores_are_the_calibrated_lightgbm_probabilities(fitted):
    model, x = fitted
    platt = PlattCalibration(a=0.8, b=-0.3)
    scorer = OnnxChurnScorer(export_onnx(model, N_FEATURES), platt.to_dict())
    expected = platt.apply(model.predict_proba(x)[:, 1])
    np.testing.assert_allclose(scorer.score(x), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(scorer.raw(x), model.predict_proba(x)[:, 1], rtol=0, atol=1e-5)
    assert isinstance(scorer, ChurnScorer)


def test_calibration_object_dict_and_none_are_accepted(fitted):
    model, x = fitted
    onnx = export_onnx(model, N_FEATURES)
    platt = PlattCalibration(a=1.5, b=0.2)
    by_object = OnnxChurnScorer(onnx, platt).score(x[:5])
    by_dict = OnnxChurnScorer(onnx, platt.to_dict()).score(x[:5])
    np.testing.assert_array_equal(by_object, by_dict)
    identity = OnnxChurnScorer(onnx, None)
    np.testing.assert_allclose(identity.score(x[:5]), identity.raw(x[:5]))


def test_one_row_no_rows_and_feature_dicts(fitted):
    model, x = fitted
    scorer = OnnxChurnScorer(export_onnx(model, N_FEATURES))
    assert scorer.score(x[0]).shape == (1,)
    assert scorer.score(np.zeros((0, N_FEATURES), dtype=np.float32)).shape == (0,)
    risks = scorer.score(churn_matrix([{"recency_days": 200.0}, {"recency_days": 1.0}]))
    assert risks.shape == (2,) and np.all((risks >= 0) & (risks <= 1))
    assert risks[0] > risks[1]


def test_broken_or_mismatched_model_is_unavailable(fitted):
    model, _ = fitted
    with pytest.raises(ModelUnavailableError):
        OnnxChurnScorer(b"not an onnx model")
    narrow = LGBMClassifier(n_estimators=2, num_threads=1, verbose=-1, min_child_samples=2)
    rng = np.random.default_rng(1)
    narrow.fit(rng.random((50, 3)).astype(np.float32), rng.integers(0, 2, 50))
    with pytest.raises(ModelUnavailableError, match="expects 3 features"):
        OnnxChurnScorer(export_onnx(narrow, 3))

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.bootstrap import (
    binary_intervals,
    paired_difference,
    ranking_intervals,
    reliability,
    resample_weights,
    verdict,
    weighted_auc,
)


def test_weighted_auc_is_roc_auc_with_ties_and_with_duplicated_customers() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(200), 1)  # many ties
    labels = (rng.random(200) < scores).astype(int)
    assert weighted_auc(scores, labels, np.ones((1, 200)))[0] == pytest.approx(
        roc_auc_score(labels, scores)
    )
    counts = rng.integers(0, 3, 200).astype(float)
    rows = np.repeat(np.arange(200), counts.astype(int))
    assert weighted_auc(scores, labels, counts[None, :])[0] == pytest.approx(
        roc_auc_score(labels[rows], scores[rows])
    )


def test_resampled_weights_draw_every_customer_count_times() -> None:
    w = resample_weights(50, n_boot=20, seed=1)
    assert w.shape == (20, 50) and np.all(w.sum(axis=1) == 50)


def test_a_difference_is_significant_only_when_its_interval_excludes_zero() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(500)
    w = resample_weights(500, seed=0)
    same = paired_difference(base, base, w)
    assert same["lo"] == same["hi"] == 0.0
    assert verdict(same, "served", "ease") == "no significant difference"
    better = paired_difference(base + 0.05, base, w)
    assert better["lo"] > 0 and verdict(better, "served", "ease") == "served beats ease"
    noisy = paired_difference(base + rng.normal(0, 0.5, 500) + 0.001, base, w)
    assert noisy["lo"] < 0 < noisy["hi"]
    assert verdict(noisy, "served", "ease") == "no significant difference"
    assert verdict({"lo": -0.2, "hi": -0.1}, "a", "b") == "b beats a"
    assert verdict({"lo": -0.2, "hi": -0.1}, "a", "b", higher_is_better=False) == "a beats b"


def test_ranking_intervals_pair_every_method_with_the_served_one() -> None:
    rng = np.random.default_rng(1)
    served = rng.random(300)
    per_user = {
        "served": {"ndcg@20": served},
        "ease": {"ndcg@20": served - 0.1},
        "popularity": {"ndcg@20": rng.random(300)},
    }
    out = ranking_intervals(per_user)
    m = out["methods"]["served"]["ndcg@20"]
    assert m["lo"] <= m["value"] <= m["hi"] and m["value"] == pytest.approx(served.mean())
    assert out["comparisons"]["ease"]["ndcg@20"]["verdict"] == "served beats ease"
    assert set(out["comparisons"]) == {"ease", "popularity"}


def test_binary_intervals_report_auc_brier_and_mean_risk_against_the_actual_rate() -> None:
    rng = np.random.default_rng(2)
    truth = rng.random(1000)
    labels = (rng.random(1000) < truth).astype(int)
    out = binary_intervals(labels, {"model": truth, "constant": np.full(1000, 0.9)}, "model")
    assert out["actual_rate"]["value"] == pytest.approx(labels.mean())
    model = out["scorers"]["model"]
    assert model["roc_auc"]["value"] == pytest.approx(roc_auc_score(labels, truth))
    assert model["mean_predicted"]["lo"] < labels.mean() < model["mean_predicted"]["hi"]
    compare = out["comparisons"]["constant"]
    assert compare["roc_auc_difference"]["verdict"] == "model beats constant"
    assert compare["brier_difference"]["verdict"] == "model beats constant"


def test_reliability_bins_hold_mean_predicted_and_actual_rate() -> None:
    probs = np.array([0.05, 0.05, 0.95, 0.95])
    rows = reliability(np.array([0, 0, 1, 0]), probs)
    assert [r["n"] for r in rows] == [2, 2]
    assert rows[1]["actual_rate"] == 0.5 and rows[1]["mean_predicted"] == pytest.approx(0.95)

"""The churn recipe on synthetic data: honest held-out windows, calibration, p_alive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from recsys.customers.churn import CHURN_FEATURES, churn_matrix
from recsys.io.loaders import load_interactions
from recsys.io.synthetic import generate_events, write_events
from training.churn import ChurnArtifacts, build_window, train_churn, window_cutoffs

HORIZON = 30
START = pd.Timestamp("2025-01-01")
AS_OF = START + pd.Timedelta(days=200)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    events, catalog = generate_events(400, 60, 240, seed=3, start=f"{START:%Y-%m-%d}")
    root: Path = tmp_path_factory.mktemp("shop")
    write_events(events, root / "events.csv")
    catalog.to_csv(root / "catalog.csv", index=False)
    loaded = load_interactions(root / "events.csv", catalog_path=root / "catalog.csv")
    return loaded.interactions, loaded.catalog


@pytest.fixture(scope="module")
def artifacts(shop: tuple[pd.DataFrame, pd.DataFrame]) -> ChurnArtifacts:
    events, catalog = shop
    return train_churn(events, AS_OF, HORIZON, catalog, n_windows=3, step_days=7)


def test_held_out_metric_trains_on_windows_whose_labels_end_by_the_held_out_cutoff(
    artifacts: ChurnArtifacts,
) -> None:
    metrics = artifacts.metrics
    held = pd.Timestamp(metrics["held_out_cutoff"])
    assert held == AS_OF - pd.Timedelta(days=HORIZON)
    train = [pd.Timestamp(c) for c in metrics["train_cutoffs"]]
    assert len(train) == 3
    assert all(c + pd.Timedelta(days=HORIZON) <= held for c in train)
    assert "model" in metrics and "rfm_logistic" in metrics
    # the served model uses the newer windows, the newest included: every label ends by as_of
    served = [pd.Timestamp(c) for c in metrics["served_train_cutoffs"]]
    assert served[0] == held and all(c + pd.Timedelta(days=HORIZON) <= AS_OF for c in served)
    assert [w["cutoff"] for w in metrics["windows"]] == metrics["served_train_cutoffs"]
    assert all(
        0 <= w["churn_rate"] <= 1 and 0 < w["mean_predicted"] < 1 for w in metrics["windows"]
    )


def test_shifted_cutoffs_step_back_from_one_horizon_before_the_held_out_one() -> None:
    cutoffs = window_cutoffs(pd.Timestamp("2024-06-01"), 90, 2, 7, shift=90)
    assert cutoffs == [
        pd.Timestamp("2024-03-03"),
        pd.Timestamp("2023-12-04"),
        pd.Timestamp("2023-11-27"),
    ]


def test_calibration_matches_the_base_rate_of_the_newest_labelled_window(
    shop: tuple[pd.DataFrame, pd.DataFrame], artifacts: ChurnArtifacts
) -> None:
    events, catalog = shop
    held = build_window(events, AS_OF - pd.Timedelta(days=HORIZON), HORIZON, catalog)
    assert artifacts.metrics["calibration_window"] == f"{held.cutoff:%Y-%m-%d}"
    risk = artifacts.predict(held.features.assign())
    # Platt scaling by maximum likelihood: mean risk = base rate on the window it is fitted on
    # (predict uses the BG/NBD of as_of for p_alive, the window the one of its own cutoff)
    raw_window = artifacts.model.predict_proba(held.matrix())[:, 1]
    from recsys.customers.churn import calibration_from_dict

    calibrated = calibration_from_dict(artifacts.calibration).apply(raw_window)
    assert calibrated.mean() == pytest.approx(held.labels.mean(), abs=1e-6)
    assert 0.0 < risk.mean() < 1.0


def test_p_alive_comes_from_the_stored_bgnbd_and_the_onnx_model_agrees_with_it(
    shop: tuple[pd.DataFrame, pd.DataFrame], artifacts: ChurnArtifacts
) -> None:
    events, catalog = shop
    held = build_window(events, AS_OF, HORIZON, catalog)
    alive = artifacts.alive_model()
    assert alive is not None
    column = CHURN_FEATURES.index("p_alive")
    table = churn_matrix(held.features, alive)
    assert np.all((table[:, column] > 0) & (table[:, column] <= 1))
    assert np.all(churn_matrix(held.features)[:, column] == -1.0)  # no model: missing
    # the online path (feature dicts with ISO times) builds the same rows
    records = held.features.head(25).copy()
    for name in ("first_purchase_at", "last_purchase_at", "first_seen_at"):
        records[name] = records[name].map(lambda t: t.isoformat() if pd.notna(t) else None)
    dicts = records.to_dict("records")
    np.testing.assert_allclose(churn_matrix(dicts, alive), table[:25], atol=1e-6)
    session = ort.InferenceSession(artifacts.onnx_bytes, providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"input": table})
    np.testing.assert_allclose(probs, artifacts.model.predict_proba(table), atol=1e-5)


def test_churn_figures_compare_the_model_with_rfm_logistic_with_intervals(
    shop: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from training.customer_eval import churn_figures, churn_verdicts

    events, catalog = shop
    figures = churn_figures(events, AS_OF, HORIZON, catalog)
    intervals = figures["intervals"]
    assert set(intervals["scorers"]) == {"model", "recency", "rfm_logistic"}
    auc = intervals["scorers"]["model"]["roc_auc"]
    assert auc["lo"] <= auc["value"] <= auc["hi"]
    assert auc["value"] == pytest.approx(figures["test"]["model"]["roc_auc"])
    diff = intervals["comparisons"]["rfm_logistic"]["roc_auc_difference"]
    assert (diff["verdict"] == "model beats rfm_logistic") == (diff["lo"] > 0)
    assert sum(row["n"] for row in figures["reliability"]["model"]) == figures["test"]["model"]["n"]
    assert any("model - rfm_logistic" in line for line in churn_verdicts(figures))

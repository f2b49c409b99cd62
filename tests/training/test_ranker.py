"""The learned ranker's training side: ONNX export parity, item rhythm, window guard."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from trainingkit import START, rows_for

from recsys.ranking.candidates import FEATURES
from recsys.schema import INTERACTION_COLUMNS
from training.ranker import train_rankers
from training.ranker_onnx import SessionRanker, booster_to_onnx
from training.signals import rhythm


def test_a_lambdarank_booster_exports_to_onnx_with_its_scores_and_order() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, len(FEATURES))).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] + rng.normal(scale=0.5, size=3000) > 1.0).astype(np.float32)
    model = lgb.LGBMRanker(n_estimators=40, num_leaves=15, verbose=-1, n_jobs=1)
    model.fit(x, y, group=[100] * 30)
    ranker = SessionRanker(booster_to_onnx(model.booster_, len(FEATURES)))
    probe = rng.normal(size=(200, len(FEATURES))).astype(np.float32)
    onnx, native = ranker.predict(probe), model.booster_.predict(probe)
    np.testing.assert_allclose(onnx, native, atol=1e-5)
    assert np.array_equal(np.argsort(-onnx)[:20], np.argsort(-native)[:20])
    assert np.corrcoef(onnx, probe[:, 0])[0, 1] > 0.5  # it learned the signal


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    for col in ("customer_id", "item_id", "order_id", "properties", "event_id"):
        frame[col] = frame[col].astype("string")
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame


def test_item_rhythm_is_the_median_gap_of_repeat_buyers_and_their_share() -> None:
    rows = []
    for n, day in enumerate((0, 10, 20)):
        rows += rows_for("x", ["I"], day, f"x{n}")
    rows += rows_for("y", ["I"], 0, "y0") + rows_for("y", ["I"], 30, "y1")
    rows += rows_for("z", ["I", "J"], 5, "z0")
    gap, rate = rhythm(_frame(rows), np.array(["x", "y", "z"]), np.array(["I", "J", "K"]))
    np.testing.assert_allclose(gap, [20.0, -1.0, -1.0])  # median of 10 (x) and 30 (y)
    np.testing.assert_allclose(rate, [2 / 3, 0.0, 0.0], rtol=1e-6)


def test_no_ranker_without_two_windows_of_history(clustered: pd.DataFrame) -> None:
    trained = train_rankers(clustered, None, START + pd.Timedelta(days=61))
    assert trained.onnx == {} and trained.served == frozenset()
    assert "skipped" in trained.report

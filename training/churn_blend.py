"""The served churn model: LightGBM averaged, in logit space, with logistic regression on RFM.

Why. On the development data LightGBM alone and logistic regression on RFM rank customers
almost alike (ROC-AUC 0.7566 vs 0.7529 at 2011-06-01, the difference inside its 95% interval),
and LightGBM's trees cannot extrapolate: about a third of the customers scored at a cutoff have
been quiet for longer than any customer of the training windows (the data begin 2010-12-01),
and the trees give them all the risk of the quietest training leaf, where the regression keeps
its slope in log recency. Averaging the two standardized logits ranks better than either, at
every split measured (``benchmarks/churn_blend.py``).

The blend, on the float32 model input of ``recsys.customers.churn.churn_matrix``::

    z = tree_weight * margin_lgbm(x) + rfm_coef . log1p(rfm(x)) + intercept

with ``rfm(x)`` = (recency, or tenure where recency is missing; frequency; monetary), each
floored at 0, and ``margin_lgbm`` the booster's raw score. ``tree_weight`` is
``BLEND_WEIGHT / std(margin)``; the regression's coefficients, unstandardized, are scaled by
``(1 - BLEND_WEIGHT) / std(its logit)`` (both standard deviations over the training rows), so the
two halves weigh alike whatever their scales. The raw probability is ``sigmoid(z)``; the stored
Platt calibration applies to it as before.

Export (:func:`blend_onnx`): the booster's ONNX graph (``training.churn_onnx.export_onnx``) with
a few standard ops appended (logit of the trees' probability, the RFM columns gathered from the
same input, a MatMul, a sigmoid), so the ONNX outputs (``label``, ``probabilities (n, 2)``) are
the blend's: serving (``serving.churn_scorer``) runs one session and applies the calibration,
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from lightgbm import Booster, LGBMClassifier
from sklearn.pipeline import Pipeline

from recsys.customers.churn import CHURN_FEATURES

#: The LightGBM half of the average (the regression gets the rest); measured in
#: ``benchmarks/churn_blend.py``: 0.5 ranked best on two of three splits, 0.7 on the third.
BLEND_WEIGHT: Final = 0.5
#: The model-input columns of the regression half, in its order (recency falls back to tenure).
RFM_COLUMNS: Final = ("recency_days", "frequency", "monetary")
_EPS: Final = 1e-7


def rfm_logs(matrix: np.ndarray) -> np.ndarray:
    """``log1p`` of recency (tenure where missing), frequency and monetary, each floored at 0,
    from :func:`~recsys.customers.churn.churn_matrix` rows (float64, ``(n, 3)``)."""
    x = np.asarray(matrix, dtype=np.float64)
    col = {name: x[:, CHURN_FEATURES.index(name)] for name in (*RFM_COLUMNS, "tenure_days")}
    recency = np.where(col["recency_days"] < 0, col["tenure_days"], col["recency_days"])
    rfm = np.column_stack([recency, col["frequency"], col["monetary"]])
    return np.log1p(np.maximum(rfm, 0.0))


def linear_terms(rfm_logistic: Pipeline) -> tuple[np.ndarray, float]:
    """The fitted ``StandardScaler -> LogisticRegression`` pipeline on log RFM as one
    ``(coef, intercept)`` on the unstandardized logs."""
    scaler, logistic = rfm_logistic[0], rfm_logistic[-1]
    coef = np.asarray(logistic.coef_[0], dtype=np.float64) / scaler.scale_
    intercept = float(logistic.intercept_[0] - coef @ scaler.mean_)
    return coef, intercept


@dataclass
class BlendedChurnModel:
    """LightGBM and logistic regression on RFM, averaged in logit space (module docstring);
    ``predict_proba`` is what the exported ONNX model computes."""

    trees: LGBMClassifier
    tree_weight: float
    rfm_coef: np.ndarray  # (3,) on :func:`rfm_logs`
    intercept: float

    @classmethod
    def fit(
        cls,
        trees: LGBMClassifier,
        rfm_logistic: Pipeline,
        matrix: np.ndarray,
        weight: float = BLEND_WEIGHT,
    ) -> BlendedChurnModel:
        """Weights from the training rows ``matrix``: each half standardized, then averaged."""
        margin = np.asarray(trees.predict_proba(matrix, raw_score=True), dtype=np.float64)
        coef, intercept = linear_terms(rfm_logistic)
        linear = rfm_logs(matrix) @ coef + intercept
        scale_trees = weight / max(float(np.std(margin)), 1e-9)
        scale_linear = (1.0 - weight) / max(float(np.std(linear)), 1e-9)
        return cls(trees, scale_trees, coef * scale_linear, intercept * scale_linear)

    @property
    def booster_(self) -> Booster:
        return self.trees.booster_

    def logit(self, matrix: np.ndarray) -> np.ndarray:
        margin = np.asarray(self.trees.predict_proba(matrix, raw_score=True), dtype=np.float64)
        return self.tree_weight * margin + rfm_logs(matrix) @ self.rfm_coef + self.intercept

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        p = 0.5 * (1.0 + np.tanh(0.5 * self.logit(matrix)))
        return np.column_stack([1.0 - p, p])

    def to_dict(self) -> dict[str, Any]:
        """The blend's own numbers, for the manifest."""
        return {
            "tree_weight": self.tree_weight,
            "rfm_columns": [*RFM_COLUMNS],
            "rfm_coef": [float(c) for c in self.rfm_coef],
            "intercept": self.intercept,
        }


def blend_onnx(trees_onnx: bytes, blend: BlendedChurnModel) -> bytes:
    """The booster's ONNX model (``probabilities`` of the trees) extended to output the
    blend's ``probabilities (n, 2)`` from the same ``input`` (module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(trees_onnx)
    graph = model.graph
    renamed = {"probabilities": "tree_probabilities", "label": "tree_label"}
    for node in graph.node:  # the trees' outputs become intermediates
        node.output[:] = [renamed.get(o, o) for o in node.output]

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def column(name: str) -> str:
        index = const(f"blend_idx_{name}", [CHURN_FEATURES.index(name)], np.int64)
        graph.node.append(helper.make_node("Gather", ["input", index], [name], axis=1))
        return name

    one = const("blend_one", 1.0)
    zero = const("blend_zero", 0.0)
    p_idx = const("blend_idx_p1", [1], np.int64)
    weights = const("blend_rfm_coef", blend.rfm_coef.reshape(3, 1))
    nodes = [
        helper.make_node("Gather", ["tree_probabilities", p_idx], ["p1"], axis=1),
        helper.make_node("Clip", ["p1"], ["p1c"], min=_EPS, max=1.0 - _EPS),
        helper.make_node("Log", ["p1c"], ["log_p"]),
        helper.make_node("Sub", [one, "p1c"], ["q1c"]),
        helper.make_node("Log", ["q1c"], ["log_q"]),
        helper.make_node("Sub", ["log_p", "log_q"], ["margin"]),
        helper.make_node("Less", [column("recency_days"), zero], ["no_recency"]),
        helper.make_node(
            "Where", ["no_recency", column("tenure_days"), "recency_days"], ["recency"]
        ),
        helper.make_node(
            "Concat", ["recency", column("frequency"), column("monetary")], ["rfm"], axis=1
        ),
        helper.make_node("Max", ["rfm", zero], ["rfm_pos"]),
        helper.make_node("Add", ["rfm_pos", one], ["rfm_1p"]),
        helper.make_node("Log", ["rfm_1p"], ["rfm_log"]),
        helper.make_node("MatMul", ["rfm_log", weights], ["linear"]),
        helper.make_node("Mul", ["margin", const("blend_tree_weight", blend.tree_weight)], ["t"]),
        helper.make_node("Add", ["t", "linear"], ["z0"]),
        helper.make_node("Add", ["z0", const("blend_intercept", blend.intercept)], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p_churn"]),
        helper.make_node("Sub", [one, "p_churn"], ["p_stay"]),
        helper.make_node("Concat", ["p_stay", "p_churn"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ]
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()

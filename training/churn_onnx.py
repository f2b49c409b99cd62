"""The churn model as ONNX: the booster with float32 thresholds, and the blend around it.

LightGBM splits at float64 midpoints; the ONNX tree ensemble stores float32 thresholds, so the
booster is first rewritten with every threshold moved down to a float32 (:func:`float32_booster`)
and then converted with ``onnxmltools.convert_lightgbm`` (``zipmap=False``: outputs ``label``
and ``probabilities (n, 2)``). The served blend (``training.churn_blend``) appends its logistic
half to that graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lightgbm import Booster, LGBMClassifier

from training.churn_blend import BlendedChurnModel, blend_onnx


def _float32_threshold(threshold: float) -> float:
    """The largest float32 not above ``threshold``: for a float32 ``x``, ``x <= t`` exactly when
    ``x <= _float32_threshold(t)``, and that value survives ONNX's cast to float32."""
    value = np.float32(threshold)
    if float(value) > threshold:
        value = np.nextafter(value, np.float32(-np.inf))
    return float(value)


def float32_booster(model: LGBMClassifier) -> Booster:
    """The fitted booster with every split threshold moved down to a float32 (see above).

    LightGBM splits at float64 midpoints; the ONNX tree ensemble stores float32 thresholds,
    rounded to nearest, so a feature value equal to the rounded threshold went left in ONNX and
    right in LightGBM (a real customer's ``monetary`` of 227.72 did). On float32 input, which
    is what :func:`recsys.customers.churn.churn_matrix` gives both, the moved booster predicts
    exactly as the fitted one.
    """
    booster = model.booster_
    if any(node.get("decision_type") == "==" for node in _split_nodes(booster.dump_model())):
        raise ValueError("categorical splits cannot be moved to float32 thresholds")
    lines = []
    for line in booster.model_to_string().splitlines():
        if line.startswith("tree_sizes="):
            continue  # byte offsets of the trees, which the new numbers change; optional
        if line.startswith("threshold="):
            values = (float(v) for v in line.removeprefix("threshold=").split())
            line = "threshold=" + " ".join(repr(_float32_threshold(v)) for v in values)
        lines.append(line)
    return Booster(model_str="\n".join(lines) + "\n")


def _split_nodes(dump: dict[str, Any]) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    stack = [tree["tree_structure"] for tree in dump["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            nodes.append(node)
            stack.extend((node["left_child"], node["right_child"]))
    return nodes


def export_onnx(model: BlendedChurnModel | LGBMClassifier, n_features: int) -> bytes:
    """The model as ONNX: input ``input`` float32 (n, n_features), outputs ``label`` and
    ``probabilities`` (no ZipMap). The booster's thresholds are float32 values
    (:func:`float32_booster`), so it agrees with ``model``; a blend appends its logistic half
    (``training.churn_blend.blend_onnx``)."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    if isinstance(model, BlendedChurnModel):
        return blend_onnx(export_onnx(model.trees, n_features), model)
    onnx_model = convert_lightgbm(
        float32_booster(model),
        name="pelanggan_churn",
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
    )
    return onnx_model.SerializeToString()

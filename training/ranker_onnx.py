"""The ranker's ONNX form: export of a LightGBM booster, and the session training scores with.

``onnxmltools.convert_lightgbm`` converts lambdarank boosters as regressors (one raw score per
row; ``tests/training/test_ranker.py`` checks it against ``Booster.predict``). Training scores
the validation window and the offline evaluation through these very bytes with onnxruntime,
as serving does (``serving.ranker_onnx``), one thread per session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

#: The ONNX opset of the exported rankers.
TARGET_OPSET = 15


def booster_to_onnx(booster: Any, n_features: int) -> bytes:
    """A fitted ``lightgbm.Booster`` as ONNX bytes (input ``features``: f4 (n, n_features))."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = convert_lightgbm(
        booster,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
    )
    return bytes(model.SerializeToString())


class SessionRanker:
    """``predict(features) -> scores`` over one onnxruntime session (one thread)."""

    def __init__(self, onnx_bytes: bytes) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, features: np.ndarray) -> np.ndarray:
        (scores,) = self._session.run(None, {"features": np.asarray(features, np.float32)})
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def onnx_rankers(models: Mapping[str, bytes]) -> dict[str, SessionRanker]:
    """A session per task of a bundle's ``ranker_onnx``."""
    return {task: SessionRanker(onnx) for task, onnx in models.items()}

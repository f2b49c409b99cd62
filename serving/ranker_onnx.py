"""The learned rankers at serving time: one onnxruntime session per task, one thread each.

:class:`OnnxRanker` implements :class:`recsys.ranking.signals.Ranker` over the bundle's
``ranker_<task>.onnx`` (a LightGBM lambdarank booster exported by ``training/ranker.py``;
input: the f4 feature matrix of :data:`recsys.ranking.candidates.FEATURES`, output: one raw
score per row). Training evaluates through the same ONNX bytes (``training.ranker_onnx``).
Serving runs it where the native forest cannot be (``serving.rankers``).
"""

from __future__ import annotations

import numpy as np

from serving.onnx_session import onnx_session


class OnnxRanker:
    """``predict(features) -> scores``; the session is created once, here."""

    def __init__(self, onnx_bytes: bytes) -> None:
        self._session = onnx_session(onnx_bytes, "ranker")
        first = self._session.get_inputs()[0]
        self._input = first.name
        width = first.shape[-1] if first.shape else None
        #: the feature columns the model reads (None where the graph leaves it open)
        self.n_features: int | None = width if isinstance(width, int) else None

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: np.asarray(features, dtype=np.float32)})
        return np.asarray(out[0], dtype=np.float32).reshape(-1)

"""The churn model at serving time: one onnxruntime session, calibration applied after it.

:class:`OnnxChurnScorer` implements :class:`recsys.customers.churn.ChurnScorer`. The ONNX model is
the LightGBM booster averaged with logistic regression on RFM (``training/churn_blend.py``;
outputs ``label`` and ``probabilities (n, 2)``, no ZipMap); the stored calibration
(``extra["churn"]["calibration"]``) turns its raw probability of class 1 into the calibrated
churn risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from recsys.customers.churn import CHURN_FEATURES, Calibration, calibration_from_dict
from recsys.errors import ModelUnavailableError
from serving.onnx_session import onnx_session


class OnnxChurnScorer:
    """``score(matrix) -> calibrated probabilities``; the session is created once, here."""

    def __init__(
        self,
        onnx_bytes: bytes,
        calibration: Calibration | Mapping[str, Any] | None = None,
        intra_op_num_threads: int = 1,
    ) -> None:
        self._session = onnx_session(onnx_bytes, "churn model", intra_op_num_threads)
        inputs = self._session.get_inputs()
        self._input = inputs[0].name
        width = inputs[0].shape[1]
        if isinstance(width, int) and width != len(CHURN_FEATURES):
            raise ModelUnavailableError(
                f"churn model expects {width} features, this code builds {len(CHURN_FEATURES)}"
            )
        names = [o.name for o in self._session.get_outputs()]
        self._output = "probabilities" if "probabilities" in names else names[-1]
        self.calibration: Calibration = (
            calibration_from_dict(calibration)
            if calibration is None or isinstance(calibration, Mapping)
            else calibration
        )

    def raw(self, features: np.ndarray) -> np.ndarray:
        """The booster's own probability of churn, ``(n,)``."""
        matrix = np.ascontiguousarray(features, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        (probs,) = self._session.run([self._output], {self._input: matrix})
        return np.asarray(probs, dtype=np.float64)[:, 1]

    def score(self, features: np.ndarray) -> np.ndarray:
        """Calibrated churn probabilities, ``(n,)``, in [0, 1]."""
        return np.clip(self.calibration.apply(self.raw(features)), 0.0, 1.0)

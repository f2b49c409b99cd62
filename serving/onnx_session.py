"""One onnxruntime session on the CPU, with the thread counts the serving processes want."""

from __future__ import annotations

import onnxruntime as ort

from recsys.errors import ModelUnavailableError


def onnx_session(
    onnx_bytes: bytes, what: str, intra_op_num_threads: int = 1
) -> ort.InferenceSession:
    """A CPU session over ``onnx_bytes``; a model that does not load is a
    :class:`ModelUnavailableError` naming ``what`` it is."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_num_threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelUnavailableError(f"cannot load the {what}: {exc}") from exc

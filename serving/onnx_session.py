"""One onnxruntime session on the CPU, with the threading the serving processes want: the given
intra-op threads (1 by default), one inter-op thread, sequential execution, no spinning."""

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
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle pool threads sleep rather than spin: spinning burns the cores the other worker
    # and Redis need under load (no effect with one thread, which has no pool)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelUnavailableError(f"cannot load the {what}: {exc}") from exc

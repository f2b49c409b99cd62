"""Reusable scratch arrays for batch scoring, one workspace per scoring running at once."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any, Final

import numpy as np

#: The largest scratch buffer a scoring workspace keeps for the next block (bytes).
KEEP_BYTES: Final = 16 << 20


class Workspace:
    """Reusable scratch arrays of one scoring at a time: a block's (n, n_items) arrays are
    megabytes, and fresh ones each block cost more in page faults than the arithmetic. A
    buffer over :data:`KEEP_BYTES` is not kept (a rare customer with a huge history)."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` (a view of the named buffer)."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.dtype != np.dtype(dtype) or buffer.size < size:
            buffer = np.empty(size, dtype=dtype)
            if buffer.nbytes <= KEEP_BYTES:
                self._buffers[name] = buffer
        return buffer[:size].reshape(shape)


_IDLE: list[Workspace] = []  # one per scoring running at once, at most
_IDLE_LOCK = threading.Lock()


@contextlib.contextmanager
def borrowed_workspace() -> Iterator[Workspace]:
    with _IDLE_LOCK:
        workspace = _IDLE.pop() if _IDLE else Workspace()
    try:
        yield workspace
    finally:
        with _IDLE_LOCK:
            _IDLE.append(workspace)

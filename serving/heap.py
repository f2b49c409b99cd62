"""The process heap after a model version is loaded: collected once, then frozen.

A loaded version is hundreds of thousands of long-lived Python objects (item ids, the id -> row
dict, catalogue lists, pydantic models). CPython's cyclic collector walks every tracked object
on each full collection, and a request that builds many objects (an offers batch of 1,000
customers builds tens of thousands) triggers such collections: measured on the shared data's
model, about half of a 1,000-customer offers batch went to the collector. :func:`settle_heap`
collects what loading left behind and moves the survivors to the permanent generation
(:func:`gc.freeze`), so later collections walk only what requests allocate. Frozen objects are
still freed by reference counting when they are released (a replaced version's arrays and
lists); only reference cycles among them wait for the next :func:`settle_heap`, which first
unfreezes everything so that such cycles of an old version are collected then.
"""

from __future__ import annotations

import gc
import threading

_LOCK = threading.Lock()


def settle_heap() -> None:
    """Collect everything (frozen objects included), then freeze what survives."""
    with _LOCK:
        gc.unfreeze()
        gc.collect()
        gc.freeze()

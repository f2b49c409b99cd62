"""From a model bundle to the online store: one batch record per customer, loaded once.

:func:`records_from_bundle` turns the bundle's columnar data (feature table, factor matrix,
history CSR) into ``(customer_id, BatchRecord)`` pairs without per-row pandas work: each
feature column is converted to plain Python values once, arrays are sliced, not copied.
:func:`ensure_loaded` loads a version the store lacks (one process at a time, the others wait)
and activates it; :meth:`RedisFeatureStore.load_version` pipelines the writes in chunks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Container, Iterator
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from feature_store.redis_store import RedisFeatureStore
from recsys.bundle import ModelBundle
from recsys.errors import ModelUnavailableError, StoreUnavailableError
from recsys.io.progress import track
from recsys.store import BatchRecord

ID_COLUMN = "customer_id"


def _plain(value: Any) -> Any:
    """One feature value as JSON-able Python: None for missing, ISO text for times."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _iso_seconds(column: pd.Series) -> list[str | None]:
    """Datetimes as ISO 8601 text to the second (UTC offset kept for aware ones), vectorised."""
    suffix = ""
    if getattr(column.dtype, "tz", None) is not None:
        column, suffix = column.dt.tz_convert("UTC").dt.tz_localize(None), "+00:00"
    values = column.to_numpy(dtype="datetime64[s]")
    text: list[Any] = np.datetime_as_string(values, unit="s").tolist()
    if suffix:
        text = [t + suffix for t in text]
    for i in np.flatnonzero(np.isnat(values)).tolist():
        text[i] = None
    return text


def _column_values(column: pd.Series) -> list[Any]:
    """A feature column as a list of JSON-able values, vectorised for the common dtypes."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        values = column.to_numpy()
        if dtype.itemsize < 8:  # keep float32's shortest decimal form: 0.1, not 0.100000001
            values = values.astype(str).astype(np.float64)
        plain: list[Any] = values.astype(np.float64).tolist()
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            plain[i] = None
        return plain
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return column.to_numpy().tolist()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _iso_seconds(column)
    return [_plain(v) for v in column.to_numpy(dtype=object, na_value=None).tolist()]


def _feature_rows(features: pd.DataFrame) -> dict[str, dict[str, Any]]:
    if ID_COLUMN not in features.columns:
        raise ModelUnavailableError(f"feature table has no {ID_COLUMN!r} column")
    names = [str(c) for c in features.columns if c != ID_COLUMN]
    columns = [_column_values(features[c]) for c in features.columns if c != ID_COLUMN]
    ids = [str(v) for v in features[ID_COLUMN].tolist()]
    rows = zip(*columns, strict=True) if columns else [()] * len(ids)
    return {cid: dict(zip(names, row, strict=True)) for cid, row in zip(ids, rows, strict=True)}


def _capped(
    items: np.ndarray, counts: np.ndarray, days: np.ndarray, cap: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``cap`` most recently bought items (ties: the most often bought), in row order."""
    if cap is None or len(items) <= cap:
        return items, counts, days
    keep = np.sort(np.lexsort((-counts, days))[:cap])
    return items[keep], counts[keep], days[keep]


def records_from_bundle(
    bundle: ModelBundle, exclude: Container[str] = frozenset(), max_history: int | None = None
) -> Iterator[tuple[str, BatchRecord]]:
    """Each customer's batch record: feature row, factor row and history row.

    Customers follow ``bundle.customer_ids``; customers with features only (no factors) come
    after them, with no vector and no history. Ids in ``exclude`` (erased: a set, or the
    store's :class:`~feature_store.tombstones.ErasedSet`) are skipped.
    ``max_history``: keep at most this many history items per customer, the most recently
    bought (ties: the most often); the features are computed on the whole history.
    """
    ids = [str(v) for v in bundle.customer_ids.tolist()]
    n = len(ids)
    factors = np.ascontiguousarray(bundle.user_factors, dtype="<f4")
    history = bundle.history.tocsr()
    last_days = bundle.history_last_days.tocsr()
    if factors.shape[0] != n or history.shape[0] != n or last_days.nnz != history.nnz:
        raise ModelUnavailableError(
            f"bundle {bundle.version!r} is inconsistent: {n} customers, "
            f"{factors.shape[0]} factor rows, {history.shape[0]} history rows"
        )
    indptr = history.indptr
    items = history.indices.astype("<i4", copy=False)
    counts = history.data.astype("<f4", copy=False)
    days = last_days.data.astype("<f4", copy=False)
    features = _feature_rows(bundle.features)
    skip = exclude
    for row, customer_id in enumerate(ids):
        if customer_id in skip:
            continue
        start, end = indptr[row], indptr[row + 1]
        h_items, h_counts, h_days = _capped(
            items[start:end], counts[start:end], days[start:end], max_history
        )
        yield (
            customer_id,
            BatchRecord(
                features=features.pop(customer_id, {}),
                user_vector=factors[row],
                history_items=h_items,
                history_counts=h_counts,
                history_last_days=h_days,
            ),
        )
    for customer_id, feature_row in features.items():
        if customer_id not in skip:
            yield customer_id, BatchRecord(features=feature_row)


def ensure_loaded(
    store: RedisFeatureStore,
    bundle: ModelBundle,
    *,
    wait_s: float = 900.0,
    compact: bool = False,
    max_history: int | None = None,
) -> bool:
    """Make ``bundle``'s version loaded and active; True when this call did the loading.

    ``compact`` and ``max_history``: see :meth:`RedisFeatureStore.load_version` and
    :func:`records_from_bundle` (settings ``serving.compact_vectors``,
    ``serving.max_history_items``).

    Several processes may call it at once: one loads (under the store's load lock), the others
    wait for its loaded marker. Erased customers are left out. Use a store with a maintenance
    timeout (seconds, not the serving milliseconds) for a large load.
    """
    version = bundle.version
    deadline = time.monotonic() + wait_s
    loaded = False
    while not store.has_version(version):
        with store.load_lock(version, ttl_s=wait_s) as acquired:
            if acquired and not store.has_version(version):
                erased = store.erased_customers()
                records = track(
                    records_from_bundle(bundle, exclude=erased, max_history=max_history),
                    f"bulk load {version}",
                    total=len(bundle.customer_ids),
                    unit="customers",
                )
                store.load_version(version, records, compact=compact)
                loaded = True
        if acquired:
            break
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"gave up after {wait_s:.0f} s waiting for another process to load {version!r}"
            )
        time.sleep(0.2)
    if store.active_version() != version:
        store.activate(version)
    return loaded

"""From a model bundle to the online store: one batch record per customer, loaded once.

:func:`load_bundle` is the bulk load: the bundle's columnar data (feature table, factor
matrix, history CSR) is encoded a chunk of customers at a time with numpy (features packed by
``feature_store.feature_pack``, vectors and history rows sliced out of one buffer each), and
written by :func:`feature_store.batch_writer.write_version` (versioned namespace, marker last).
:func:`records_from_bundle` yields the same records as :class:`BatchRecord` objects (features as
JSON values: tools, tests, the scale benchmark's in-process checks). :func:`ensure_loaded` loads
a version the store lacks (one process at a time, the others wait) and activates it.

History cap (``serving.max_history_items``): a customer's stored purchase history keeps their
``max_history`` most recently bought items (ties: the most often bought), in item-row order;
their features are computed on the whole history.
"""

from __future__ import annotations

import time
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from feature_store import batch_writer, keys
from feature_store.connection import store_errors
from feature_store.feature_pack import FeatureSchema, column_values
from feature_store.redis_store import RedisFeatureStore, check_customer_id, check_version
from recsys.bundle import ModelBundle
from recsys.errors import ModelUnavailableError, StoreUnavailableError
from recsys.io.progress import track
from recsys.schema import CUSTOMER_ID_PATTERN
from recsys.store import BatchRecord

ID_COLUMN = "customer_id"
#: Customers per chunk of a bulk load (about 1 MB written per chunk).
CHUNK = 5000


def _feature_table(bundle: ModelBundle) -> tuple[pd.DataFrame, list[str]]:
    """The feature table without its id column (one row per id: the last wins) and the ids."""
    features = bundle.features
    if ID_COLUMN not in features.columns:
        raise ModelUnavailableError(f"feature table has no {ID_COLUMN!r} column")
    ids = features[ID_COLUMN].astype(str)
    if not ids.is_unique:
        keep = ~ids.duplicated(keep="last").to_numpy()
        features, ids = features[keep], ids[keep]
    return features.drop(columns=[ID_COLUMN]).reset_index(drop=True), ids.tolist()


@dataclass(frozen=True)
class History:
    """The purchase history CSR of every customer, capped: item rows, counts, days."""

    indptr: np.ndarray
    items: np.ndarray  # <i4
    counts: np.ndarray  # <f4
    days: np.ndarray  # <f4

    @classmethod
    def of(cls, bundle: ModelBundle, cap: int | None) -> History:
        """The bundle's history, each row cut to its ``cap`` most recent items (ties: the most
        bought), kept in row order; vectorised over the whole matrix."""
        history = bundle.history.tocsr()
        last_days = bundle.history_last_days.tocsr()
        if history.shape[0] != len(bundle.customer_ids) or last_days.nnz != history.nnz:
            raise ModelUnavailableError(
                f"bundle {bundle.version!r} is inconsistent: {len(bundle.customer_ids)} "
                f"customers, {history.shape[0]} history rows"
            )
        indptr = history.indptr.astype(np.int64)
        items = history.indices.astype("<i4", copy=False)
        counts = history.data.astype("<f4", copy=False)
        days = last_days.data.astype("<f4", copy=False)
        lengths = np.diff(indptr)
        if cap is None or not len(lengths) or lengths.max() <= cap:
            return cls(indptr, items, counts, days)
        long = np.flatnonzero(lengths > cap)  # only these rows are sorted
        sizes = lengths[long]
        rows = np.repeat(long, sizes)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        entries = indptr[rows] + within
        # per row (rows ascending), most recent first, then most bought: the k-th of a row's
        # sorted entries sits where its k-th entry was
        order = np.lexsort((-counts[entries], days[entries], rows))
        keep = np.ones(len(items), dtype=bool)
        keep[entries[order[within >= cap]]] = False
        kept = np.zeros(len(indptr), dtype=np.int64)
        kept[1:] = np.cumsum(np.minimum(lengths, cap))
        return cls(kept, items[keep], counts[keep], days[keep])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.items[start:end], self.counts[start:end], self.days[start:end]


def _empty(container: Container[str]) -> bool:
    try:
        return len(container) == 0  # type: ignore[arg-type]
    except TypeError:  # a container without a length
        return False


@dataclass(frozen=True)
class _Layout:
    """A bundle's per-customer data, aligned: customers with factors in ``ids`` order, each
    one's feature row (``position``, -1: none), and the feature rows of customers with no
    factors (``only``)."""

    ids: np.ndarray  # str
    factors: np.ndarray  # <f4 (customers, factors)
    history: History
    table: pd.DataFrame  # features, no id column
    feature_ids: list[str]
    position: np.ndarray
    only: np.ndarray

    @classmethod
    def of(cls, bundle: ModelBundle, max_history: int | None) -> _Layout:
        ids = np.asarray(bundle.customer_ids).astype(str)
        factors = np.ascontiguousarray(bundle.user_factors, dtype="<f4")
        if factors.shape[0] != len(ids):
            raise ModelUnavailableError(
                f"bundle {bundle.version!r} is inconsistent: {len(ids)} customers, "
                f"{factors.shape[0]} factor rows"
            )
        history = History.of(bundle, max_history)
        table, feature_ids = _feature_table(bundle)
        index = pd.Index(feature_ids, dtype=object)  # hash tables (not Arrow's isin)
        position = index.get_indexer(pd.Index(ids, dtype=object))
        only = np.flatnonzero(~index.isin(ids))
        return cls(ids, factors, history, table, feature_ids, position, only)

    def kept(self, exclude: Container[str]) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``ids`` and of ``only`` whose customer is not in ``exclude`` (asked id
        by id: an erased set can only say whether an id is in it; skipped when empty)."""
        rows, only = np.arange(len(self.ids)), self.only
        if _empty(exclude):
            return rows, only
        ids = self.ids.tolist()
        rows = np.array([r for r in rows.tolist() if ids[r] not in exclude], dtype=np.int64)
        only = np.array([at for at in only.tolist() if self.feature_ids[at] not in exclude])
        return rows, only.astype(np.int64)


def records_from_bundle(
    bundle: ModelBundle, exclude: Container[str] = frozenset(), max_history: int | None = None
) -> Iterator[tuple[str, BatchRecord]]:
    """Each customer's batch record: feature row (JSON values), factor row and history row.

    Customers follow ``bundle.customer_ids``; customers with features only (no factors) come
    after them, with no vector and no history. Ids in ``exclude`` (erased: a set, or the
    store's :class:`~feature_store.tombstones.ErasedSet`) are skipped.
    ``max_history``: the history cap (module docstring).
    """
    layout = _Layout.of(bundle, max_history)
    names = [str(c) for c in layout.table.columns]
    columns = [column_values(layout.table[c]) for c in layout.table.columns]
    rows = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    if not columns:
        rows = [{} for _ in layout.feature_ids]
    kept, only = layout.kept(exclude)
    for row in kept.tolist():
        items, counts, days = layout.history.row(row)
        at = int(layout.position[row])
        yield (
            str(layout.ids[row]),
            BatchRecord(
                features=rows[at] if at >= 0 else {},
                user_vector=layout.factors[row],
                history_items=items,
                history_counts=counts,
                history_last_days=days,
            ),
        )
    for at in only.tolist():
        yield layout.feature_ids[at], BatchRecord(features=rows[at])


# -- the bulk load -----------------------------------------------------------------------------

#: The fields of a bulk-loaded record, in the order of :func:`_chunk`'s values.
FIELDS = tuple(
    name.encode()
    for name in (
        keys.BATCH_PACKED_FEATURES,
        keys.BATCH_FEATURES,  # empty: the features are packed
        keys.BATCH_USER_VECTOR,
        keys.BATCH_USER_VECTOR_F2,
        keys.BATCH_HISTORY_ITEMS,
        keys.BATCH_HISTORY_COUNTS,
        keys.BATCH_HISTORY_LAST_DAYS,
    )
)


def _slices(buffer: bytes, starts: list[int], ends: list[int]) -> list[bytes]:
    return [buffer[s:e] for s, e in zip(starts, ends, strict=True)]


def _rows_of(matrix: np.ndarray) -> list[bytes]:
    """Each row of a 2-D array as bytes (one buffer, sliced)."""
    buffer, width = matrix.tobytes(), matrix.shape[1] * matrix.itemsize
    return [buffer[i : i + width] for i in range(0, len(buffer), width)]


def _packed(layout: _Layout, schema: FeatureSchema, positions: np.ndarray) -> list[bytes]:
    """The packed feature row of each position (-1: none, empty bytes)."""
    present = positions >= 0
    packed = schema.pack(layout.table.iloc[positions[present]])
    if present.all():
        return packed
    out = [b""] * len(positions)
    for at, row in zip(np.flatnonzero(present).tolist(), packed, strict=True):
        out[at] = row
    return out


def _chunk(
    layout: _Layout, schema: FeatureSchema, rows: np.ndarray, compact: bool
) -> batch_writer.Chunk:
    """The ``HSET`` arguments of the customers of ``rows`` (of ``layout.ids``), vectorised."""
    features = _packed(layout, schema, layout.position[rows])
    vectors = _rows_of(layout.factors[rows].astype("<f2" if compact else "<f4"))
    h = layout.history
    starts, ends = h.indptr[rows], h.indptr[rows + 1]
    low, high = int(starts[0]), int(ends[-1])
    begin, end = ((starts - low) * 4).tolist(), ((ends - low) * 4).tolist()
    items = _slices(h.items[low:high].tobytes(), begin, end)
    counts = _slices(h.counts[low:high].tobytes(), begin, end)
    days = _slices(h.days[low:high].tobytes(), begin, end)
    e = b""
    parts = zip(features, vectors, items, counts, days, strict=True)
    if compact:
        values = [(p, e, e, v, i, c, d) for p, v, i, c, d in parts]
    else:
        values = [(p, e, v, e, i, c, d) for p, v, i, c, d in parts]
    return layout.ids[rows].tolist(), FIELDS, values


def _chunks(
    layout: _Layout, schema: FeatureSchema, exclude: Container[str], compact: bool, size: int
) -> Iterator[batch_writer.Chunk]:
    rows, only = layout.kept(exclude)
    for start in range(0, len(rows), size):
        yield _chunk(layout, schema, rows[start : start + size], compact)
    e = b""
    for start in range(0, len(only), size):
        part = only[start : start + size]
        features = schema.pack(layout.table.iloc[part])
        ids = [layout.feature_ids[at] for at in part.tolist()]
        yield ids, FIELDS, [(p, e, e, e, e, e, e) for p in features]


def _check_ids(ids: Iterable[str]) -> None:
    """Every id well-formed (vectorised; the first bad one is reported)."""
    column = pd.Series(list(ids), dtype=object)
    bad = ~column.str.match(CUSTOMER_ID_PATTERN).fillna(False).astype(bool)
    if bad.any():
        check_customer_id(str(column[bad].iloc[0]))


def load_bundle(
    store: RedisFeatureStore,
    bundle: ModelBundle,
    *,
    exclude: Container[str] = frozenset(),
    compact: bool = False,
    max_history: int | None = None,
    chunk: int = CHUNK,
) -> int:
    """Bulk-load ``bundle``'s batch records under its version (marker last, not activated);
    how many. Features packed (``feature_store.feature_pack``, the schema stored once);
    ``compact``: vectors as float16; ``max_history``: the history cap; ``exclude``: erased."""
    version = check_version(bundle.version)
    layout = _Layout.of(bundle, max_history)
    _check_ids(layout.ids.tolist())
    _check_ids(layout.feature_ids)
    schema = FeatureSchema.of(layout.table)
    width = layout.factors.shape[1] * (2 if compact else 4)
    longest = int(np.diff(layout.history.indptr).max(initial=0)) * 4
    with store_errors("check of the listpack limit"):
        batch_writer.warn_unless_listpack(store.client, max(width, longest, schema.dtype.itemsize))
    chunks = track(
        _chunks(layout, schema, exclude, compact, chunk),
        f"bulk load {version} ({chunk:,} customers a chunk)",
        total=-(-(len(layout.ids) + len(layout.only)) // chunk),
        unit="chunks",
    )
    return batch_writer.write_version(
        store.client, store.prefix, version, chunks, store.tombstones, schema
    )


def ensure_loaded(
    store: RedisFeatureStore,
    bundle: ModelBundle,
    *,
    wait_s: float = 900.0,
    compact: bool = False,
    max_history: int | None = None,
) -> bool:
    """Make ``bundle``'s version loaded and active; True when this call did the loading.

    ``compact`` and ``max_history``: see :func:`load_bundle` (settings
    ``serving.compact_vectors``, ``serving.max_history_items``).

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
                load_bundle(store, bundle, exclude=erased, compact=compact, max_history=max_history)
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

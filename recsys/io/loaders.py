"""Interaction files in: the one entry point, :func:`load_interactions`, and :func:`detect_format`.

:func:`load_interactions` reads a file (CSV, gzip CSV or Parquet: :mod:`recsys.io.tabular`), tells
the two input formats apart from the columns (``events``: :mod:`recsys.io.events_file`;
``online-retail``: :mod:`recsys.io.online_retail`), normalizes the rows into the table of
:mod:`recsys.schema` (sorted by timestamp, stable), and derives or loads the item catalogue
(:mod:`recsys.io.catalogue`). Bad *values* that a real export contains (zero quantities, negative
prices, duplicate event ids) are dropped and counted in the :class:`LoadReport`; a *malformed*
file (missing column, unparsable timestamp or number, unknown event type, invalid JSON, item
event without item, survey score out of range) raises :class:`~recsys.errors.DataFileError`
naming the file, the row (the 1-based line in a CSV file, header = line 1; the 1-based row of a
Parquet file) and the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.errors import DataFileError
from recsys.io import catalogue as catalogs
from recsys.io import events_file, online_retail
from recsys.io.tabular import STRING, Normalized, RawTable, column_names, read_table
from recsys.schema import EVENT_TYPES, INTERACTION_COLUMNS

__all__ = ["FORMATS", "LoadReport", "LoadResult", "detect_format", "load_interactions"]


@dataclass(frozen=True)
class _Reader:
    required: tuple[str, ...]
    missing_columns: Callable[[Sequence[str]], list[str]]
    normalize: Callable[[RawTable], Normalized]


_READERS: Final[dict[str, _Reader]] = {
    events_file.FORMAT: _Reader(
        events_file.REQUIRED, events_file.missing_columns, events_file.normalize
    ),
    online_retail.FORMAT: _Reader(
        online_retail.REQUIRED, online_retail.missing_columns, online_retail.normalize
    ),
}
FORMATS: Final[tuple[str, ...]] = tuple(_READERS)


@dataclass
class LoadReport:
    """What a load did, in counts: JSON-able through :meth:`to_dict`."""

    rows_read: int
    rows_loaded: int
    format: str
    dropped: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": int(self.rows_read),
            "rows_loaded": int(self.rows_loaded),
            "format": self.format,
            "dropped": {k: int(v) for k, v in self.dropped.items()},
            "counts": {k: int(v) for k, v in self.counts.items()},
        }


@dataclass
class LoadResult:
    interactions: pd.DataFrame
    catalog: pd.DataFrame
    report: LoadReport
    format: str


def detect_format(path: Path | str) -> str:
    """``"events"`` or ``"online-retail"``, from the header line or Parquet schema only."""
    path = Path(path)
    return _format_of_columns(column_names(path), path)


def _format_of_columns(columns: Sequence[str], path: Path) -> str:
    """Tell the formats apart by their required columns; name what is missing otherwise."""
    missing = {fmt: reader.missing_columns(columns) for fmt, reader in _READERS.items()}
    for fmt, absent in missing.items():
        if not absent:
            return fmt
    closest = min(missing, key=lambda fmt: len(missing[fmt]) / len(_READERS[fmt].required))
    raise DataFileError(
        str(path),
        None,
        f"cannot tell the format from the columns {list(columns)}: for {closest!r} the file "
        f"lacks the required column(s) {missing[closest]}",
    )


_DTYPES: Final[dict[str, Any]] = {
    **dict.fromkeys(
        ("customer_id", "event_type", "item_id", "order_id", "properties", "event_id"), STRING
    ),
    "timestamp": "datetime64[ns]",
    "quantity": "float64",
    "price": "float64",
    "is_product": bool,
}


def _finish_interactions(table: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """Exactly :data:`INTERACTION_COLUMNS` with the documented dtypes, rows in ``order``.

    Column by column, each taken out of ``table`` (which is left empty) before the next is
    copied: at a million customers the table is gigabytes, and this holds it once plus one
    column instead of twice. Arrow's freed pages go back to the system at the end."""
    columns: dict[str, Any] = {}
    for name in INTERACTION_COLUMNS:
        column = table.pop(name).astype(_DTYPES[name])
        columns[name] = column.take(order).reset_index(drop=True)
        del column
    for name in list(table.columns):
        del table[name]
    out = pd.DataFrame(columns, copy=False)
    pa.default_memory_pool().release_unused()
    return out


def _summary_counts(interactions: pd.DataFrame) -> dict[str, int]:
    """Counts every format reports: customers, items, orders, guests, non-products, by type."""
    by_type = interactions["event_type"].value_counts()
    counts = {
        "customers": int(interactions["customer_id"].nunique()),
        "items": int(interactions["item_id"].nunique()),
        "products": int(interactions.loc[interactions["is_product"], "item_id"].nunique()),
        "orders": int(interactions["order_id"].nunique()),
        "guest_rows": int(interactions["customer_id"].isna().sum()),
        "non_product_rows": int(
            (~interactions["is_product"] & interactions["item_id"].notna()).sum()
        ),
    }
    counts.update({f"events_{name}": int(by_type.get(name, 0)) for name in EVENT_TYPES})
    return counts


def load_interactions(
    path: Path | str, fmt: str = "auto", catalog_path: Path | str | None = None
) -> LoadResult:
    """Read an events or Online Retail file into the interaction table, its catalogue and a report.

    ``fmt`` is ``"auto"`` (tell from the columns), ``"events"`` or ``"online-retail"``. The
    catalogue comes from ``catalog_path`` when given (items seen only in the events get derived
    rows), and is derived from the events otherwise.
    """
    if fmt != "auto" and fmt not in _READERS:
        raise ValueError(f"unknown format {fmt!r}: expected auto, events or online-retail")
    raw = read_table(path)
    if fmt == "auto":
        fmt = _format_of_columns(list(raw.frame.columns), raw.path)
    rows_read = len(raw.frame)
    normalized = _READERS[fmt].normalize(raw)
    del raw  # the file's own columns: not held while the table is sorted
    table = normalized.interactions
    order = np.argsort(table["timestamp"].to_numpy(), kind="stable")
    titles = normalized.titles
    if titles is not None:
        titles = titles.loc[table.index].iloc[order].reset_index(drop=True)
    interactions = _finish_interactions(table, order)
    dropped, counts = normalized.dropped, normalized.counts
    del table, normalized  # the unsorted table
    catalog = catalogs.derive_catalog(interactions, titles)
    counts = {**counts, **_summary_counts(interactions)}
    if catalog_path is not None:
        catalog, derived = catalogs.merge_catalogs(catalogs.load_catalog(catalog_path), catalog)
        counts["catalog_items_derived"] = derived
    report = LoadReport(
        rows_read=rows_read,
        rows_loaded=len(interactions),
        format=fmt,
        dropped=dropped,
        counts=counts,
    )
    return LoadResult(interactions, catalog, report, fmt)

"""Reading tabular files: CSV, gzip CSV (by magic bytes) or Parquet, and typed columns from them.

:func:`read_table` reads a file's rows as they are (CSV: every value a ``str``) into a
:class:`RawTable`, which knows how its rows are numbered: the 1-based line of a CSV file
(header = line 1), the 1-based row of a Parquet file. The column helpers (:func:`text_column`,
:func:`item_id_column`, :func:`number_column`, :func:`timestamp_column`) parse one column each
and raise :class:`~recsys.errors.DataFileError` naming the file, the first bad row and the
problem. Row numbers of CSV files assume one line per record (no line breaks inside quoted
fields, no blank lines).

The format readers (:mod:`recsys.io.events_file`, :mod:`recsys.io.online_retail`) and the catalogue
(:mod:`recsys.io.catalogue`) build on this module; it knows nothing of either format.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsys.errors import DataFileError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
STRING = pd.StringDtype()  # nullable string, missing = pd.NA

_FLOAT_ID = r"-?\d+\.0+"


@dataclass(frozen=True)
class RawTable:
    """A file's rows as read, before any normalization (CSV: every value a ``str``)."""

    path: Path
    frame: pd.DataFrame
    first_row: int  # the number of the first data row: 2 in a CSV file, 1 in Parquet

    def error(self, position: int | None, problem: str) -> DataFileError:
        """The error for the row at 0-based ``position`` (None: the file as a whole)."""
        row = None if position is None else self.first_row + int(position)
        return DataFileError(str(self.path), row, problem)


@dataclass
class Normalized:
    """A format reader's output, before the catalogue and the shared counts are added."""

    interactions: pd.DataFrame
    dropped: dict[str, int]
    counts: dict[str, int]
    titles: pd.Series | None = None  # per interaction row (same index), for the catalogue


# --- reading ------------------------------------------------------------------------------------


def _magic(path: Path) -> bytes:
    if not path.is_file():
        raise DataFileError(str(path), None, "no such file")
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head:
        raise DataFileError(str(path), None, "the file is empty")
    return head


def _compression(head: bytes) -> str | None:
    return "gzip" if head.startswith(GZIP_MAGIC) else None


def _header_line(path: Path, compression: str | None) -> str:
    opener = gzip.open if compression == "gzip" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
            line = handle.readline()
    except (OSError, EOFError) as exc:
        raise DataFileError(str(path), None, f"cannot read the file: {exc}") from exc
    if not line.strip():
        raise DataFileError(str(path), None, "the file is empty (no header line)")
    return line


def column_names(path: Path | str) -> list[str]:
    """The column names from the header line or the Parquet schema only (no rows are read)."""
    path = Path(path)
    head = _magic(path)
    if head == PARQUET_MAGIC:
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataFileError(str(path), None, f"not a readable Parquet file: {exc}") from exc
    line = _header_line(path, _compression(head))
    return [name.strip() for name in next(csv.reader(io.StringIO(line)))]


def read_table(path: Path | str) -> RawTable:
    """Read a CSV, gzip CSV (by magic bytes) or Parquet file; CSV values stay strings."""
    path = Path(path)
    head = _magic(path)
    if head == PARQUET_MAGIC:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataFileError(str(path), None, f"not a readable Parquet file: {exc}") from exc
        first_row = 1
    else:
        frame = _read_csv(path, _compression(head))
        first_row = 2
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataFileError(str(path), None, "the file has a header but no data rows")
    return RawTable(path, frame.reset_index(drop=True), first_row)


def _read_csv(path: Path, compression: str | None) -> pd.DataFrame:
    """Arrow's parser (about twice as fast) for well-formed UTF-8; pandas' for the rest."""
    fast = _read_csv_arrow(path, compression)
    return fast if fast is not None else _read_csv_pandas(path, compression)


def _read_csv_arrow(path: Path, compression: str | None) -> pd.DataFrame | None:
    names = next(csv.reader([_header_line(path, compression)]))
    if len(set(names)) != len(names):
        return None
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            table = pacsv.read_csv(stream, convert_options=options)
    except (pa.ArrowInvalid, OSError, EOFError):
        return None  # pandas reads it again, and names the line when it is malformed
    try:
        return table.to_pandas(types_mapper={pa.string(): STRING}.get)
    except UnicodeDecodeError:  # a column name that is not UTF-8 (Arrow checks only values)
        return None


def _read_csv_pandas(path: Path, compression: str | None) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path,
            dtype=str,
            na_filter=False,
            keep_default_na=False,
            compression=compression,
            encoding="utf-8",
            encoding_errors="replace",
        )
    except pd.errors.EmptyDataError as exc:
        raise DataFileError(str(path), None, "the file is empty (no header line)") from exc
    except pd.errors.ParserError as exc:
        found = re.search(r"line (\d+)", str(exc))
        row = int(found.group(1)) if found else None
        raise DataFileError(str(path), row, f"malformed CSV: {str(exc).strip()}") from exc
    except (OSError, EOFError) as exc:
        raise DataFileError(str(path), None, f"cannot read the file: {exc}") from exc


# --- columns ------------------------------------------------------------------------------------


def first_true(mask: pd.Series | np.ndarray) -> int | None:
    """The 0-based position of the first True (the first bad row), or None when there is none."""
    hits = np.flatnonzero(np.asarray(mask, dtype=bool))
    return int(hits[0]) if hits.size else None


def text_column(frame: pd.DataFrame, name: str | None) -> pd.Series:
    """Stripped nullable strings; an empty value or an absent column (``name=None``) is NA."""
    if name is None:
        return pd.Series(pd.NA, index=frame.index, dtype=STRING)
    column = frame[name].astype(STRING)
    text = unchanged_or(column, column.str.strip())
    empty = text == ""
    return text.mask(empty) if empty.any() else text


def unchanged_or(column: pd.Series, transformed: pd.Series) -> pd.Series:
    """``column`` itself where ``transformed`` (of the same index) holds the same strings, else
    ``transformed``: a clean column then shares the file's buffers instead of holding a second
    copy (46M ids at a million customers are gigabytes)."""
    same = pa.array(column.array).equals(pa.array(transformed.array))
    return column if same else transformed


def repeated(values: pd.Series) -> np.ndarray:
    """``values.notna() & values.duplicated()`` (every present value after its first row), by a
    stable sort and a look at each value's neighbour instead of a hash table of every value:
    for 46M distinct event ids, about a quarter of the memory and a seventh of the time."""
    column = pa.chunked_array([pa.array(values.array, type=pa.large_string())])
    out = np.zeros(len(values), dtype=bool)
    if len(values) < 2:
        return out
    order = pc.sort_indices(column)  # stable: the first stays first; nulls (never equal) last
    ordered = pc.take(column, order)
    same = pc.fill_null(pc.equal(ordered[1:], ordered[:-1]), False)
    out[order.to_numpy()[1:][same.to_numpy(zero_copy_only=False)]] = True
    return out


def per_unique(values: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a string transform to the distinct values only, then spread it back (same index).

    Identifier and description columns repeat a few thousand values hundreds of thousands of
    times, so this turns a per-row regular expression into a per-value one.
    """
    codes, uniques = pd.factorize(values)
    done = pa.array(transform(pd.Series(uniques, dtype=STRING)), type=pa.string())
    spread = done.take(pa.array(codes, mask=codes < 0))
    return pd.Series(pd.arrays.ArrowStringArray(spread), index=values.index)


def float_ids(ids: pd.Series, *, whole_column: bool) -> pd.Series:
    """Undo pandas' float identifiers (``"17850.0"`` -> ``"17850"``).

    ``whole_column=True`` does it only when every present value looks like one (a float column
    written out), so that a genuine identifier such as ``"1.0"`` among others is left alone.
    """
    if whole_column:
        present = ids.dropna().unique()
        if len(present) == 0 or not pd.Series(present).str.fullmatch(_FLOAT_ID).all():
            return ids
    return per_unique(ids, lambda s: s.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True))


def upper_ids(ids: pd.Series) -> pd.Series:
    """Upper-cased identifiers (per distinct value; NA stays NA)."""
    return per_unique(ids, lambda s: s.str.upper())


def item_id_column(
    frame: pd.DataFrame, name: str | None, *, whole_column: bool, upper: bool = False
) -> pd.Series:
    """Item ids: stripped, float-written numbers made whole (see :func:`float_ids`), empty is
    NA. ``upper=True`` also upper-cases them (``"85123a"`` -> ``"85123A"``): the rule for
    formats whose codes are case-insensitive, like Online Retail's stock codes. Generic
    ``events`` files and catalogues keep the shop's own spelling, since answers echo it."""
    ids = text_column(frame, name)
    return float_ids(upper_ids(ids) if upper else ids, whole_column=whole_column)


def _to_float(text: pd.Series) -> pd.Series:
    """Arrow's fast cast when every value is a number; pandas' coercion (NaN) when not."""
    try:
        cast = pc.cast(pa.array(text, type=pa.string()), pa.float64())
        values = cast.to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return pd.Series(values, index=text.index, dtype="float64")


def number_column(raw: RawTable, name: str | None, label: str) -> pd.Series:
    """float64 values (NaN where empty); the first non-numeric value raises DataFileError."""
    frame = raw.frame
    if name is None:
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    column = frame[name]
    if pd.api.types.is_bool_dtype(column.dtype) or not pd.api.types.is_numeric_dtype(column):
        text = text_column(frame, name)
        values = _to_float(text)
        bad = text.notna().to_numpy() & ~np.isfinite(values.to_numpy())
    else:
        values = column.astype("float64")
        bad = np.isinf(values.to_numpy())
    position = first_true(bad)
    if position is not None:
        raise raw.error(position, f"{label} {str(column.iloc[position])!r} is not a number")
    return values


def _as_ns(values: pd.Series) -> pd.Series:
    """datetime64[ns]; a time outside its range (years 1677-2262: pandas parses wider, in
    microseconds) becomes NaT, reported as not a valid date and time."""
    if values.dtype == "datetime64[ns]":
        return values
    inside = values.isna() | ((values >= pd.Timestamp.min) & (values <= pd.Timestamp.max))
    return values.where(inside).astype("datetime64[ns]")


def timestamp_column(
    raw: RawTable, name: str, label: str, formats: Sequence[str] = ()
) -> pd.Series:
    """datetime64[ns], naive UTC; a missing or unparsable value raises DataFileError.

    Strings are tried against each of ``formats`` in turn, then ISO 8601 (with or without a
    zone; zoned values are converted to UTC).
    """
    column = raw.frame[name]
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        parsed, text = _as_ns(column.dt.tz_convert("UTC").dt.tz_localize(None)), column
    elif pd.api.types.is_datetime64_dtype(column.dtype):
        parsed, text = _as_ns(column), column  # already times: no text of every row (46M)
    else:
        text = text_column(raw.frame, name)
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        for fmt in formats:
            todo = parsed.isna() & text.notna()
            if not todo.any():
                break
            parsed[todo] = _as_ns(pd.to_datetime(text[todo], format=fmt, errors="coerce"))
        todo = parsed.isna() & text.notna()
        if todo.any():
            iso = pd.to_datetime(text[todo], format="ISO8601", utc=True, errors="coerce")
            parsed[todo] = _as_ns(iso.dt.tz_localize(None))
    position = first_true(parsed.isna())
    if position is not None:
        value = text.iloc[position]
        if pd.isna(value):
            raise raw.error(position, f"{label} is missing")
        raise raw.error(position, f"{label} {str(value)!r} is not a valid date and time")
    return parsed

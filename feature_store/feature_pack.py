"""Customer features as one packed binary row each, described once per model version.

A bulk load writes each customer's features (field ``p`` of the batch record) as one
fixed-width little-endian row of a numpy structured dtype instead of a JSON object: no feature
name is repeated per customer, and a number takes 1-8 bytes instead of its decimal text. The
:class:`FeatureSchema` describing the row is stored once per version (key
``<p>:meta:schema:<version>``, :func:`feature_store.keys.feature_schema`) and named in every
row by its 4-byte digest (the row's first bytes), so a reader needs it once per process
(:func:`register`).

Lossless: each column is stored in the narrowest type that gives back exactly the value the
JSON record held (:func:`column_values` is that JSON form, the one the bulk load always wrote):

=======  ===========================  ===================================================
kind     stored as                    decoded to
=======  ===========================  ===================================================
``f2``   ``<f2`` (``f4``, ``f8``)     float; NaN and infinities to None. A float64 column
                                      whose every value round-trips through a narrower
                                      float is stored in it (``nps`` 8.0 in two bytes)
``r4``   ``<f4``                      a float32 column: the float32's shortest decimal
                                      (0.1, not 0.100000001), as the JSON path wrote it
``i1``   ``<i1`` (``i2``, ``i4``,     int; a nullable column keeps the type's minimum
         ``i8``)                      for NA (decoded to None)
``b``    ``u1``: 0, 1, 2 for NA       bool or None
``c``    ``u1``: 0 for NA, else       one of the schema's categories (a text column of at
         1 + category index           most 255 distinct values)
``t``    ``<i8`` Unix seconds,        ISO 8601 text to the second (``tz``: UTC with
         ``tz``  minimum for NaT      ``+00:00``); NaT to None
``j``    JSON, after the row          any other column (text of many distinct values,
                                      mixed types): a JSON object of those columns
=======  ===========================  ===================================================
"""

from __future__ import annotations

import hashlib
import math
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd

from recsys.errors import StoreUnavailableError

DIGEST_BYTES = 4
MAX_CATEGORIES = 255
_EPOCH = datetime(1970, 1, 1)
_NAT = np.iinfo(np.int64).min
_FLOATS = ("f2", "f4", "f8")
_INTS = ("i1", "i2", "i4", "i8")
_FORMAT = {"r4": "<f4", "b": "u1", "c": "u1", "t": "<i8", "tz": "<i8"}
_STRUCT = {
    **{"f2": "e", "f4": "f", "f8": "d", "r4": "f", "b": "B", "c": "B", "t": "q", "tz": "q"},
    **{"i1": "b", "i2": "h", "i4": "i", "i8": "q"},
}


# -- the JSON form of a feature column (what the batch record's ``f`` holds) -------------------


def plain(value: Any) -> Any:
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


def _utc_naive(column: pd.Series) -> tuple[pd.Series, bool]:
    if getattr(column.dtype, "tz", None) is not None:
        return column.dt.tz_convert("UTC").dt.tz_localize(None), True
    return column, False


def _iso_seconds(column: pd.Series) -> list[str | None]:
    """Datetimes as ISO 8601 text to the second (UTC offset kept for aware ones), vectorised."""
    column, aware = _utc_naive(column)
    values = column.to_numpy(dtype="datetime64[s]")
    text: list[Any] = np.datetime_as_string(values, unit="s").tolist()
    if aware:
        text = [t + "+00:00" for t in text]
    for i in np.flatnonzero(np.isnat(values)).tolist():
        text[i] = None
    return text


def column_values(column: pd.Series) -> list[Any]:
    """A feature column as a list of JSON-able values, vectorised for the common dtypes."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        values = column.to_numpy()
        if dtype.itemsize < 8:  # keep float32's shortest decimal form: 0.1, not 0.100000001
            values = values.astype(str).astype(np.float64)
        out: list[Any] = values.astype(np.float64).tolist()
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            out[i] = None
        return out
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return column.to_numpy().tolist()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _iso_seconds(column)
    return [plain(v) for v in column.to_numpy(dtype=object, na_value=None).tolist()]


# -- the schema --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    categories: tuple[str, ...] = ()
    nullable: bool = False  # integer columns: the type's minimum stands for NA


def _narrowest_float(values: np.ndarray) -> str:
    for kind in _FLOATS[:-1]:
        with np.errstate(over="ignore"):
            narrow = values.astype("<" + kind).astype(np.float64)
        if np.array_equal(narrow, values, equal_nan=True):
            return kind
    return "f8"


def _narrowest_int(low: int, high: int, nullable: bool) -> str | None:
    for kind in _INTS:
        info = np.iinfo(np.dtype(kind))
        if (low > info.min if nullable else low >= info.min) and high <= info.max:
            return kind
    return None


def _column(name: str, column: pd.Series) -> Column:
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        kind = "r4" if dtype.itemsize < 8 else _narrowest_float(column.to_numpy(np.float64))
        return Column(name, kind)
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        return Column(name, "b")
    if pd.api.types.is_bool_dtype(dtype):  # pandas' nullable boolean
        return Column(name, "b", nullable=True)
    if pd.api.types.is_integer_dtype(dtype):
        nullable = bool(column.isna().any())
        present = column.dropna()
        low, high = (int(present.min()), int(present.max())) if len(present) else (0, 0)
        narrowest = _narrowest_int(low, high, nullable)
        return Column(name, narrowest or "j", nullable=nullable and narrowest is not None)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return Column(name, "tz" if getattr(dtype, "tz", None) is not None else "t")
    values = column.to_numpy(dtype=object, na_value=None)
    present = [v for v in pd.unique(values) if v is not None]
    if all(isinstance(v, str) for v in present) and len(present) <= MAX_CATEGORIES:
        return Column(name, "c", categories=tuple(sorted(present)))
    return Column(name, "j")


@dataclass(frozen=True)
class FeatureSchema:
    """The columns of a packed feature row, in the feature table's order."""

    columns: tuple[Column, ...]
    dtype: np.dtype = field(init=False, compare=False)
    digest: bytes = field(init=False, compare=False)
    _reader: _RowReader = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        formats = [("digest", f"V{DIGEST_BYTES}")]
        formats += [
            (f"c{i}", _FORMAT.get(c.kind, "<" + c.kind))
            for i, c in enumerate(self.columns)
            if c.kind != "j"
        ]
        object.__setattr__(self, "dtype", np.dtype(formats))
        digest = hashlib.blake2b(self.to_json(), digest_size=DIGEST_BYTES).digest()
        object.__setattr__(self, "digest", digest)
        object.__setattr__(self, "_reader", _RowReader(self.columns))

    @classmethod
    def of(cls, frame: pd.DataFrame) -> FeatureSchema:
        """The schema of a feature table (its every column)."""
        return cls(tuple(_column(str(name), frame[name]) for name in frame.columns))

    def to_json(self) -> bytes:
        return orjson.dumps(
            [[c.name, c.kind, list(c.categories), c.nullable] for c in self.columns]
        )

    @classmethod
    def from_json(cls, raw: bytes) -> FeatureSchema:
        return cls(
            tuple(Column(n, k, tuple(cats), bool(na)) for n, k, cats, na in orjson.loads(raw))
        )

    @property
    def has_json(self) -> bool:
        return any(c.kind == "j" for c in self.columns)

    # -- every row at once (the bulk load) -----------------------------------------------------

    def pack(self, frame: pd.DataFrame) -> list[bytes]:
        """Every row of ``frame`` (this schema's columns), packed; vectorised by column."""
        rows = np.zeros(len(frame), dtype=self.dtype)
        rows["digest"] = np.void(self.digest)
        for i, c in enumerate(self.columns):
            if c.kind != "j":
                rows[f"c{i}"] = _stored(c, frame[c.name])
        size = self.dtype.itemsize
        buffer = rows.tobytes()
        packed = [buffer[i : i + size] for i in range(0, len(buffer), size)]
        if self.has_json:
            extra = [c.name for c in self.columns if c.kind == "j"]
            values = zip(*(column_values(frame[name]) for name in extra), strict=True)
            packed = [
                row + orjson.dumps(dict(zip(extra, v, strict=True)))
                for row, v in zip(packed, values, strict=True)
            ]
        return packed

    # -- one row (a read) ----------------------------------------------------------------------

    def unpack(self, raw: bytes) -> dict[str, Any]:
        return self._reader.read(raw)

    def unpack_many(self, raws: Sequence[bytes]) -> list[dict[str, Any]]:
        """Many rows at once (a read of many customers), vectorised by column."""
        size = self.dtype.itemsize
        if any(len(raw) != size for raw in raws):  # JSON after the row: one at a time
            return [self.unpack(raw) for raw in raws]
        rows = np.frombuffer(b"".join(raws), dtype=self.dtype)
        names = [c.name for c in self.columns]
        columns = [_json_values(c, rows[f"c{i}"]) for i, c in enumerate(self.columns)]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


class _RowReader:
    """One row back to its JSON form: ``struct`` (a few microseconds; numpy's per-row
    machinery costs more than the row), a dict in schema order, then only the columns whose
    stored value is not already the JSON value are converted."""

    def __init__(self, columns: Sequence[Column]) -> None:
        fixed = [c for c in columns if c.kind != "j"]
        self.row = struct.Struct("<" + "".join(_STRUCT[c.kind] for c in fixed))
        self.size = DIGEST_BYTES + self.row.size
        self.names = [c.name for c in fixed]
        self.floats = [c.name for c in fixed if c.kind in _FLOATS]
        self.lookups = [(c.name, _lookup(c)) for c in fixed if c.kind in ("b", "c")]
        self.convert = [
            (c.name, c)
            for c in fixed
            if c.kind in ("r4", "t", "tz") or (c.kind in _INTS and c.nullable)
        ]
        self.order = [c.name for c in columns] if len(fixed) < len(columns) else None

    def read(self, raw: bytes) -> dict[str, Any]:
        out = dict(zip(self.names, self.row.unpack_from(raw, DIGEST_BYTES), strict=True))
        for name in self.floats:
            value = out[name]
            if value - value != 0.0:  # NaN or an infinity: JSON's null
                out[name] = None
        for name, table in self.lookups:
            out[name] = table[out[name]]
        for name, column in self.convert:
            out[name] = _decoded(column, out[name])
        if self.order is None:
            return out
        extra = orjson.loads(raw[self.size :]) if len(raw) > self.size else {}
        return {name: out[name] if name in out else extra.get(name) for name in self.order}


def _stored(column: Column, series: pd.Series) -> np.ndarray:
    """A feature column as this column's stored values (NA as its marker)."""
    kind = column.kind
    if kind in _FLOATS or kind == "r4":
        return series.to_numpy(np.float64, na_value=np.nan)
    if kind in _INTS:
        if column.nullable:
            low = np.iinfo(np.dtype(kind)).min
            return series.astype("Int64").to_numpy(np.int64, na_value=low)
        return series.to_numpy(np.int64)
    if kind == "b":
        if column.nullable:
            return series.astype("Int8").to_numpy(np.uint8, na_value=2)
        return series.to_numpy(np.uint8)
    if kind == "c":
        return pd.Categorical(series, categories=list(column.categories)).codes + 1
    naive, _ = _utc_naive(series)  # t, tz
    return naive.to_numpy(dtype="datetime64[s]").view(np.int64)


def _json_values(column: Column, stored: np.ndarray) -> list[Any]:
    """A column's stored values as their JSON values (:func:`column_values`), vectorised."""
    kind = column.kind
    if kind in ("b", "c"):
        return np.array(_lookup(column), dtype=object)[stored].tolist()
    if kind in ("t", "tz"):
        text = column_values(pd.Series(stored.view("datetime64[s]")))
        return [t + "+00:00" if t is not None else None for t in text] if kind == "tz" else text
    if kind in _INTS:
        values: list[Any] = stored.tolist()
        if column.nullable:
            for i in np.flatnonzero(stored == np.iinfo(stored.dtype).min).tolist():
                values[i] = None
        return values
    if kind == "r4":  # through the float32's shortest decimal
        return column_values(pd.Series(stored))
    return column_values(pd.Series(stored.astype(np.float64)))


def _lookup(column: Column) -> tuple[Any, ...]:
    """The JSON value of each stored value of a ``b`` or ``c`` column, by that value."""
    return (False, True, None) if column.kind == "b" else (None, *column.categories)


def _decoded(column: Column, value: Any) -> Any:
    kind = column.kind
    if kind == "r4":
        return float(str(np.float32(value))) if math.isfinite(value) else None
    if kind in _INTS:
        return None if column.nullable and value == np.iinfo(np.dtype(kind)).min else value
    if value == _NAT:  # t, tz
        return None
    text = (_EPOCH + timedelta(seconds=value)).isoformat()
    return text + "+00:00" if kind == "tz" else text


# -- the schemas this process knows ------------------------------------------------------------

_known: dict[bytes, FeatureSchema] = {}
_lock = threading.Lock()


def register(schema: FeatureSchema) -> FeatureSchema:
    with _lock:
        return _known.setdefault(schema.digest, schema)


def register_json(raw: bytes) -> FeatureSchema:
    return register(FeatureSchema.from_json(raw))


def _schema_of(raw: bytes) -> FeatureSchema:
    schema = _known.get(bytes(raw[:DIGEST_BYTES]))
    if schema is None:
        raise StoreUnavailableError(
            f"packed features of schema {raw[:DIGEST_BYTES].hex()} were read, "
            "but that schema is not in the store"
        )
    return schema


def unpack(raw: bytes) -> dict[str, Any]:
    """The features of a packed row, by the registered schema its digest names."""
    return _schema_of(raw).unpack(raw)


#: From this many rows of one schema on, :func:`unpack_many` decodes by column.
MANY = 16


def unpack_many(raws: Sequence[bytes]) -> list[dict[str, Any]]:
    """The features of many packed rows (any schemas), in order."""
    if len(raws) < MANY:
        return [unpack(raw) for raw in raws]
    by_schema: dict[bytes, list[int]] = {}
    for i, raw in enumerate(raws):
        by_schema.setdefault(bytes(raw[:DIGEST_BYTES]), []).append(i)
    out: list[dict[str, Any]] = [{}] * len(raws)
    for at in by_schema.values():
        schema = _schema_of(raws[at[0]])
        for i, features in zip(at, schema.unpack_many([raws[i] for i in at]), strict=True):
            out[i] = features
    return out


_by_json: dict[bytes, FeatureSchema] = {}


def use(raw: bytes | None) -> None:
    """Register the schema a reader read from the store (its JSON; None: the version has no
    packed features); a schema already seen costs one dictionary look-up."""
    if raw and raw not in _by_json:
        schema = register(FeatureSchema.from_json(raw))
        with _lock:
            _by_json[bytes(raw)] = schema

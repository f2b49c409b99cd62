"""``Series.map`` of string keys by one Arrow hash lookup per row.

pandas maps an Arrow-backed string column through a Python object array (a str per row); at a
million customers the event table has 46M rows, and the customer features map it several
times. :func:`map_strings` gives the same values (NaN where a key is absent) without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def map_strings(values: pd.Series, mapping: pd.Series | Mapping[str, Any]) -> pd.Series:
    """``values.map(mapping)`` for string keys (``mapping``: a dict, or a Series with a unique
    index), same index; NaN where the key is absent or missing."""
    table = mapping if isinstance(mapping, pd.Series) else pd.Series(dict(mapping))
    column = pa.array(values, from_pandas=True)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return values.map(table)
    keys = pa.array(table.index.to_numpy(dtype=object), type=column.type, from_pandas=True)
    found = pc.index_in(column, value_set=keys, skip_nulls=True)
    rows = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    out = table.array.take(rows, allow_fill=True)
    return pd.Series(out, index=values.index, name=values.name, copy=False)

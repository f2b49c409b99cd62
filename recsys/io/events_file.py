"""The ``events`` file format: parsing and validation into the interaction table.

Columns (names case-insensitive): ``customer_id, event_type, timestamp`` required; ``item_id,
quantity, price, order_id, properties, event_id`` optional. A *malformed* value raises
:class:`~recsys.errors.DataFileError` naming the file, the row and the problem: an unknown or
missing event type, an unparsable timestamp or number, an item event without ``item_id``,
``properties`` that are not a JSON object, a survey without a known metric or with a score out
of its range. Bad *values* a real export contains are dropped and counted: ``bad_quantity``
(an item event with a quantity <= 0), ``bad_price`` (negative, or zero on a purchase),
``duplicate_event_id``. A return with a negative quantity is made positive (counted as
``returns_made_positive``); an item event without a quantity counts one unit. Item ids follow
:func:`recsys.io.tabular.item_id_column` (stripped; case kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd

from recsys.io.tabular import (
    Normalized,
    RawTable,
    first_true,
    float_ids,
    item_id_column,
    number_column,
    repeated,
    text_column,
    timestamp_column,
    unchanged_or,
)
from recsys.schema import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_EVENT_TYPES,
    REQUIRED_EVENT_COLUMNS,
    SURVEY_METRICS,
)

FORMAT: Final[str] = "events"
REQUIRED: Final[tuple[str, ...]] = REQUIRED_EVENT_COLUMNS
OPTIONAL: Final[tuple[str, ...]] = EVENT_COLUMNS[len(REQUIRED_EVENT_COLUMNS) :]

_INVALID = object()


def missing_columns(columns: Sequence[str]) -> list[str]:
    """The required columns that ``columns`` lacks (names compared case-insensitively)."""
    have = {str(c).strip().lower() for c in columns}
    return [c for c in REQUIRED if c not in have]


def _json_or_invalid(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _INVALID


def _parse_properties(raw: RawTable, properties: pd.Series) -> pd.Series:
    """Parse the non-empty properties (one orjson call per distinct text: rows repeating a
    text share its parsed object); each must be a JSON object."""
    present = properties.dropna()
    codes, texts = pd.factorize(present)
    values = np.empty(len(texts), dtype=object)
    values[:] = [_json_or_invalid(v) for v in texts]
    parsed = pd.Series(values[codes], index=present.index, dtype=object)
    is_object = np.fromiter((isinstance(v, dict) for v in values), bool, len(values))[codes]
    position = first_true(~is_object)
    if position is not None:
        where = int(present.index[position])
        value = present.iloc[position]
        if parsed.iloc[position] is _INVALID:
            raise raw.error(where, f"properties {value!r} is not valid JSON")
        raise raw.error(where, f"properties {value!r} is not a JSON object")
    return parsed


def _metric_name(properties: Any) -> str | None:
    metric = properties.get("metric") if isinstance(properties, dict) else None
    return metric if isinstance(metric, str) else None


def _check_surveys(raw: RawTable, event_type: pd.Series, parsed: pd.Series) -> None:
    """Every survey names a known metric and a whole-number score within its range."""
    surveys = np.flatnonzero((event_type == "survey").to_numpy())
    if surveys.size == 0:
        return
    props = parsed.reindex(raw.frame.index[surveys])
    metric = props.map(_metric_name)
    score = props.map(lambda p: p.get("score") if isinstance(p, dict) else None)
    numeric = score.map(lambda s: isinstance(s, int | float) and not isinstance(s, bool))
    value = pd.to_numeric(score.where(numeric.astype(bool)), errors="coerce").astype("float64")
    low = metric.map(lambda m: SURVEY_METRICS.get(m, (np.nan, np.nan))[0]).astype("float64")
    high = metric.map(lambda m: SURVEY_METRICS.get(m, (np.nan, np.nan))[1]).astype("float64")
    bad_metric = low.isna().to_numpy()
    bad_score = (
        ~bad_metric & ~((value >= low) & (value <= high) & (value == np.round(value))).to_numpy()
    )
    position = first_true(bad_metric | bad_score)
    if position is None:
        return
    row = int(surveys[position])
    found = props.iloc[position]
    if not isinstance(found, dict):
        raise raw.error(row, "a survey event needs properties with a metric and a score")
    if bad_metric[position]:
        raise raw.error(
            row,
            f"survey metric {found.get('metric')!r} is not one of {sorted(SURVEY_METRICS)}",
        )
    name = metric.iloc[position]
    lo, hi = SURVEY_METRICS[name]
    raise raw.error(
        row, f"survey score {found.get('score')!r} for {name} is out of range {lo}-{hi}"
    )


def _event_types(raw: RawTable, column: str) -> pd.Series:
    text = text_column(raw.frame, column)
    event_type = unchanged_or(text, text.str.lower())
    unknown = first_true((~event_type.isin(EVENT_TYPES)).to_numpy() | event_type.isna().to_numpy())
    if unknown is not None:
        found = event_type.iloc[unknown]
        shown = "missing" if pd.isna(found) else repr(str(raw.frame[column].iloc[unknown]))
        raise raw.error(unknown, f"event_type {shown} is not one of {list(EVENT_TYPES)}")
    return event_type


def normalize(raw: RawTable) -> Normalized:
    """The ``events`` format into the interaction table (validated; bad values dropped)."""
    absent = missing_columns(list(raw.frame.columns))
    if absent:
        raise raw.error(None, f"missing required column(s) {absent} for the {FORMAT} format")
    frame = raw.frame
    names = {str(c).strip().lower(): c for c in frame.columns}

    def text(name: str) -> pd.Series:
        return text_column(frame, names.get(name))

    event_type = _event_types(raw, names["event_type"])
    timestamp = timestamp_column(raw, names["timestamp"], "timestamp")
    item_id = item_id_column(frame, names.get("item_id"), whole_column=True)
    needs_item = event_type.isin(ITEM_EVENT_TYPES).to_numpy()
    position = first_true(needs_item & item_id.isna().to_numpy())
    if position is not None:
        raise raw.error(position, f"a {event_type.iloc[position]} event needs an item_id")
    quantity = number_column(raw, names.get("quantity"), "quantity")
    price = number_column(raw, names.get("price"), "price")
    properties = text("properties")
    _check_surveys(raw, event_type, _parse_properties(raw, properties))

    is_return = (event_type == "return").to_numpy()
    negative_return = is_return & (quantity < 0).to_numpy()
    quantity = quantity.where(~negative_return, -quantity)
    quantity = quantity.where(~(needs_item & quantity.isna().to_numpy()), 1.0)
    is_purchase = (event_type == "purchase").to_numpy()
    bad_quantity = needs_item & (quantity <= 0).to_numpy()
    bad_price = ((price < 0) | (is_purchase & (price == 0))).to_numpy() & ~bad_quantity
    event_id = text("event_id")
    duplicate = repeated(event_id) & ~bad_quantity & ~bad_price

    table = pd.DataFrame(
        {
            "customer_id": float_ids(text("customer_id"), whole_column=True),
            "event_type": event_type,
            "timestamp": timestamp,
            "item_id": item_id,
            "quantity": quantity,
            "price": price,
            "order_id": float_ids(text("order_id"), whole_column=True),
            "properties": properties,
            "is_product": item_id.notna().to_numpy(),
            "event_id": event_id,
        },
        copy=False,  # the file's own columns where they needed no change: not a second copy
    )
    keep = ~(bad_quantity | bad_price | duplicate)
    dropped = {
        "bad_quantity": int(bad_quantity.sum()),
        "bad_price": int(bad_price.sum()),
        "duplicate_event_id": int(duplicate.sum()),
    }
    counts = {"returns_made_positive": int(negative_return.sum())}
    return Normalized(
        table if keep.all() else table[keep], dropped, counts
    )  # no copy: none dropped

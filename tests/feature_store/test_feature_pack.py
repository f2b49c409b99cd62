"""Packed feature rows: each column in its narrowest lossless type, read back as the JSON form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_store import feature_pack
from feature_store.feature_pack import FeatureSchema, column_values
from recsys.errors import StoreUnavailableError


def table() -> pd.DataFrame:
    n = 6
    return pd.DataFrame(
        {
            "recency_days": [9.400231481481482, 0.1, np.nan, 1e300, -2.5, np.inf],
            "nps": [8.0, np.nan, 10.0, 0.5, 0.0999755859375, 7.0],  # fits float16 exactly
            "share": np.array([0.1, 0.25, 1 / 3, 0.0, 7.0, np.nan], dtype=np.float32),
            "frequency": np.arange(n, dtype=np.int64) * 40,  # 0..200: int16
            "big": np.array([0, 2**40, -(2**40), 1, 2, 3], dtype=np.int64),
            "maybe_count": pd.array([1, None, 3, -128, 127, 0], dtype="Int64"),
            "consent": [True, False, True, True, False, False],
            "opt_in": pd.array([True, None, False, True, None, False], dtype="boolean"),
            "segment": pd.Series(["loyal", None, "new", "lost", "loyal", "Österreich"]),
            "email": pd.Series([f"c{i}@example.com" for i in range(n)]),  # kept as JSON
            "mixed": pd.Series([1, "a", None, 2.5, True, "b"], dtype=object),
            "last_purchase_at": pd.to_datetime(
                [
                    "2011-08-01 10:30:00",
                    None,
                    "2011-01-02 00:00:00",
                    "1969-12-31 23:59:59",
                    None,
                    None,
                ]
            ),
            "seen_at": pd.to_datetime(["2011-08-01 10:30:00+02:00"] * 5 + [None], utc=True),
        }
    )


def json_form(frame: pd.DataFrame) -> list[dict[str, object]]:
    """What the JSON batch record held for each row (``f``)."""
    columns = {name: column_values(frame[name]) for name in frame.columns}
    return [{name: columns[name][i] for name in frame.columns} for i in range(len(frame))]


def test_every_row_reads_back_exactly_as_its_json_form() -> None:
    frame = table()
    schema = feature_pack.register(FeatureSchema.of(frame))
    packed = schema.pack(frame)
    assert [feature_pack.unpack(row) for row in packed] == json_form(frame)
    got = feature_pack.unpack(packed[0])
    assert got["share"] == 0.1 and got["last_purchase_at"] == "2011-08-01T10:30:00"
    assert got["seen_at"] == "2011-08-01T08:30:00+00:00"
    assert feature_pack.unpack(packed[1])["maybe_count"] is None


def test_many_rows_read_by_column_give_the_same_values() -> None:
    frame = pd.concat([table().drop(columns=["mixed"])] * 5, ignore_index=True)  # by column
    schema = feature_pack.register(FeatureSchema.of(frame))
    packed = schema.pack(frame)
    assert len(packed) >= feature_pack.MANY
    assert feature_pack.unpack_many(packed) == json_form(frame)
    other = pd.DataFrame({"x": np.arange(20) / 4})
    mixed = [*packed[:10], *feature_pack.register(FeatureSchema.of(other)).pack(other)]
    assert feature_pack.unpack_many(mixed) == [*json_form(frame)[:10], *json_form(other)]


def test_each_column_takes_its_narrowest_lossless_type() -> None:
    kinds = {c.name: c.kind for c in FeatureSchema.of(table()).columns}
    assert kinds == {
        "recency_days": "f8",
        "nps": "f2",
        "share": "r4",
        "frequency": "i2",
        "big": "i8",
        "maybe_count": "i2",  # -128 is taken: i1's minimum stands for NA
        "consent": "b",
        "opt_in": "b",
        "segment": "c",
        "email": "c",
        "mixed": "j",
        "last_purchase_at": "t",
        "seen_at": "tz",
    }


def test_a_row_is_far_smaller_than_its_json() -> None:
    frame = table().drop(columns=["mixed", "email"])
    schema = FeatureSchema.of(frame)
    row = schema.pack(frame)[0]
    assert len(row) == schema.dtype.itemsize < 70
    import orjson

    assert len(orjson.dumps(json_form(frame)[0])) > 3 * len(row)


def test_text_of_many_distinct_values_is_kept_as_json_after_the_row() -> None:
    frame = pd.DataFrame({"x": [1.5] * 300, "code": [f"k{i}" for i in range(300)]})
    schema = feature_pack.register(FeatureSchema.of(frame))
    assert [c.kind for c in schema.columns] == ["f2", "j"]
    rows = schema.pack(frame)
    assert feature_pack.unpack(rows[299]) == {"x": 1.5, "code": "k299"}


def test_the_schema_round_trips_through_its_json_with_the_same_digest() -> None:
    schema = FeatureSchema.of(table())
    again = FeatureSchema.from_json(schema.to_json())
    assert again == schema and again.digest == schema.digest
    assert again.dtype == schema.dtype
    assert FeatureSchema.of(table().iloc[:3]).digest != schema.digest  # other categories


def test_a_row_of_an_unknown_schema_is_refused_not_misread() -> None:
    frame = pd.DataFrame({"only_here": [1.25, 2.5]})
    schema = FeatureSchema.of(frame)  # not registered
    with pytest.raises(StoreUnavailableError, match="schema"):
        feature_pack.unpack(schema.pack(frame)[0])
    feature_pack.use(schema.to_json())  # as a reader does with the schema it read
    assert feature_pack.unpack(schema.pack(frame)[1]) == {"only_here": 2.5}

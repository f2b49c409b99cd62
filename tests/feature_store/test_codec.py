"""Batch and live records to Redis hash fields and back, exactly."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from feature_store import codec
from recsys.store import BatchRecord, LiveRecord


def _batch() -> BatchRecord:
    return BatchRecord(
        features={
            "recency_days": 12.0,
            "frequency": 7,
            "monetary": 1234.5678901234567,
            "segment": "champions",
            "nps": None,
            "last_purchase_at": "2011-08-30T12:00:00",
            "country": "Österreich",
        },
        user_vector=np.array([0.1, -2.5, 3.0e-8, 1e30], dtype=np.float32),
        history_items=np.array([3, 17, 2_000_000], dtype=np.int32),
        history_counts=np.array([1.0, 4.0, 12.0], dtype=np.float32),
        history_last_days=np.array([0.5, 30.0, 260.0], dtype=np.float32),
    )


def _bytes_of(fields: dict[str, bytes]) -> dict[bytes, bytes]:
    """What HGETALL answers: field names as bytes."""
    return {k.encode(): v for k, v in fields.items()}


def test_batch_record_round_trips_exactly() -> None:
    record = _batch()
    decoded = codec.decode_batch(_bytes_of(codec.encode_batch(record)))
    assert decoded is not None
    assert decoded.features == record.features
    for name in ("user_vector", "history_items", "history_counts", "history_last_days"):
        original, back = getattr(record, name), getattr(decoded, name)
        assert back.dtype == original.dtype
        assert back.tobytes() == original.tobytes()


def test_vectors_are_raw_little_endian_bytes() -> None:
    fields = codec.encode_batch(_batch())
    assert fields["u"] == struct.pack("<4f", 0.1, -2.5, 3.0e-8, 1e30)
    assert fields["hi"] == struct.pack("<3i", 3, 17, 2_000_000)
    assert orjson.loads(fields["f"])["country"] == "Österreich"


def test_big_endian_and_float64_inputs_are_written_as_little_endian_float32() -> None:
    record = BatchRecord(features={}, user_vector=np.array([1.5, 2.0], dtype=">f8"))
    assert codec.encode_batch(record)["u"] == struct.pack("<2f", 1.5, 2.0)


def test_batch_without_vector_or_history_round_trips_as_empty() -> None:
    decoded = codec.decode_batch(_bytes_of(codec.encode_batch(BatchRecord(features={"a": 1}))))
    assert decoded is not None
    assert decoded.user_vector is None
    assert decoded.history_items.dtype == np.int32 and decoded.history_items.size == 0
    assert decoded.history_counts.dtype == np.float32 and decoded.history_counts.size == 0


def test_every_batch_field_is_always_written_so_a_reload_overwrites_all() -> None:
    every = {"p", "f", "u", "u2", "hi", "hc", "hd"}
    assert set(codec.encode_batch(BatchRecord(features={}))) == every
    assert set(codec.encode_batch(BatchRecord(features={}), compact=True)) == every


def test_missing_batch_hash_decodes_to_none() -> None:
    assert codec.decode_batch({}) is None


def test_nan_and_numpy_scalars_in_features_become_json() -> None:
    record = BatchRecord(features={"x": float("nan"), "y": np.float32(0.5), "z": np.int64(3)})
    decoded = codec.decode_batch(_bytes_of(codec.encode_batch(record)))
    assert decoded is not None and decoded.features == {"x": None, "y": 0.5, "z": 3}


def _live() -> LiveRecord:
    return LiveRecord(
        recent_views=("85123A", "22423", "85123A"),
        cart=("22423",),
        purchased={"85099B": 3.0, "POST": 1.0},
        disliked=frozenset({"21212", "84879"}),
        features={"nps": 9, "csat": 5, "churn_risk": 0.125},
        user_vector=np.array([0.25, -1.0], dtype=np.float32),
    )


def test_live_record_round_trips_exactly() -> None:
    record = _live()
    decoded = codec.decode_live(_bytes_of(codec.encode_live(record)))
    assert decoded.recent_views == record.recent_views  # order kept: newest first
    assert decoded.cart == record.cart
    assert decoded.purchased == record.purchased
    assert decoded.disliked == record.disliked
    assert decoded.features == record.features
    assert decoded.user_vector is not None and record.user_vector is not None
    assert decoded.user_vector.tobytes() == record.user_vector.tobytes()


def test_live_layout_is_json_fields_and_vector_bytes() -> None:
    fields = codec.encode_live(_live())
    assert orjson.loads(fields["views"]) == ["85123A", "22423", "85123A"]
    assert orjson.loads(fields["purchased"]) == {"85099B": 3.0, "POST": 1.0}
    assert orjson.loads(fields["disliked"]) == ["21212", "84879"]
    assert fields["u"] == struct.pack("<2f", 0.25, -1.0)


def test_live_decode_accepts_what_a_lua_cjson_writer_produces() -> None:
    # cjson writes an empty table as {} and may leave fields out; unknown fields are ignored.
    fields = {b"views": b"{}", b"cart": b"[]", b"purchased": b"{}", b"ts": b"1700000000"}
    decoded = codec.decode_live(fields)
    assert decoded == LiveRecord()
    assert decoded.user_vector is None


def test_missing_live_hash_decodes_to_the_empty_record() -> None:
    assert codec.decode_live({}) is codec.EMPTY_LIVE


@pytest.mark.parametrize("record", [_batch(), BatchRecord(features={})])
def test_batch_export_form_is_plain_json(record: BatchRecord) -> None:
    plain = codec.batch_to_json(record)
    assert orjson.loads(orjson.dumps(plain)) == plain


def test_live_export_form_is_plain_json() -> None:
    plain = codec.live_to_json(_live())
    assert plain["disliked"] == ["21212", "84879"]
    assert plain["user_vector"] == [0.25, -1.0]
    assert orjson.loads(orjson.dumps(plain)) == plain


def test_contacts_decode_to_offer_and_time() -> None:
    assert codec.decode_contacts([(b"winback-10", 1700000000.0)]) == {"winback-10": 1.7e9}

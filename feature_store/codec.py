"""How a customer's records are laid out in Redis hash fields, both ways.

Values are bytes (the client runs with ``decode_responses=False``). Vectors are raw
little-endian bytes, decoded with :func:`numpy.frombuffer` (no copy: the decoded arrays are
read-only views); everything else is compact JSON (``orjson``).

Batch record, hash ``<p>:{c:<id>}:v:<version>`` (written once by a bulk load; every field is
always written, empty where unused, so a reload overwrites all of them):

===========  ==================  ==================================================
field        encoding            holds
===========  ==================  ==================================================
``p``        packed row          the customer's features as one binary row of the
                                 version's schema (``feature_store.feature_pack``;
                                 a bundle's bulk load); wins over ``f``
``f``        JSON object         the customer's features (NaN written as ``null``;
                                 records loaded one by one)
``u``        ``<f4`` bytes       the ALS factor vector; empty bytes for none
``u2``       ``<f2`` bytes       the same vector as float16, written instead of ``u``
                                 by a compact load (decoded to float32; ``u`` wins)
``hi``       ``<i4`` bytes       purchase history: item rows of that version
``hc``       ``<f4`` bytes       purchase history: counts, same order
``hd``       ``<f4`` bytes       purchase history: days since last purchase, at as_of
===========  ==================  ==================================================

Live record, hash ``<p>:{c:<id>}:live`` (written by event ingestion, shared by every version;
every field is optional, an absent or empty field reads as empty; unknown fields are ignored,
so a writer may keep its own bookkeeping in the same hash, as ``feature_store.ingest`` does
with ``rev``; stores written before also kept the online state there, ``agg``, now in its own
key ``<p>:{c:<id>}:online``: ``feature_store.keys``):

==============  ==================  ===============================================
field           encoding            holds
==============  ==================  ===============================================
``views``       JSON array          item ids viewed, newest first, bounded by the writer
``cart``        JSON array          item ids in the cart
``purchased``   JSON object         item id -> units bought since training
``disliked``    JSON array          item ids the customer said no to
``features``    JSON object         online feature values (e.g. ``nps``, ``csat``)
``u``           ``<f4`` bytes       folded-in factor vector (overrides the batch one);
                                    empty bytes for none
``uv``          text                the model version ``u`` was folded against (absent:
                                    unknown; readers drop a ``u`` of another version)
==============  ==================  ===============================================

The contact history (sorted set ``<p>:{c:<id>}:contacts``, member ``<offer_id>|<channel>``
(:func:`contact_member`), score: Unix time of the send) is read in the same round trip as the
live hash and decoded into ``LiveRecord.contacts`` (:func:`decode_live`, :func:`parse_contacts`);
one member per offer and channel, so a repeated send of the same offer on the same channel
keeps only its latest time. A member written without a ``|`` reads as an offer on no channel.

A Lua script can maintain the JSON fields with the ``cjson`` library Redis embeds; because
``cjson.encode`` writes an empty table as ``{}``, an empty object is accepted wherever an
array is expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from feature_store import feature_pack, keys
from recsys.decisions.contacts import Contact
from recsys.store import BatchRecord, LiveRecord

F4 = np.dtype("<f4")
F2 = np.dtype("<f2")
I4 = np.dtype("<i4")

# the hash fields as Redis returns them (bytes)
_B_BATCH_FEATURES = keys.BATCH_FEATURES.encode()
_B_BATCH_PACKED_FEATURES = keys.BATCH_PACKED_FEATURES.encode()
_B_BATCH_HISTORY_COUNTS = keys.BATCH_HISTORY_COUNTS.encode()
_B_BATCH_HISTORY_ITEMS = keys.BATCH_HISTORY_ITEMS.encode()
_B_BATCH_HISTORY_LAST_DAYS = keys.BATCH_HISTORY_LAST_DAYS.encode()
_B_BATCH_USER_VECTOR = keys.BATCH_USER_VECTOR.encode()
_B_BATCH_USER_VECTOR_F2 = keys.BATCH_USER_VECTOR_F2.encode()
_B_LIVE_CART = keys.LIVE_CART.encode()
_B_LIVE_DISLIKED = keys.LIVE_DISLIKED.encode()
_B_LIVE_FEATURES = keys.LIVE_FEATURES.encode()
_B_LIVE_PURCHASED = keys.LIVE_PURCHASED.encode()
_B_LIVE_USER_VECTOR = keys.LIVE_USER_VECTOR.encode()
_B_LIVE_USER_VECTOR_VERSION = keys.LIVE_USER_VECTOR_VERSION.encode()
_B_LIVE_VIEWS = keys.LIVE_VIEWS.encode()

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_EMPTY_I4 = np.zeros(0, dtype=I4)
_EMPTY_F4 = np.zeros(0, dtype=F4)


def dumps(value: Any) -> bytes:
    """Compact JSON; numpy scalars and arrays allowed, NaN and infinities become ``null``."""
    return orjson.dumps(value, option=_JSON_OPTIONS)


def vector_bytes(vector: np.ndarray | None, dtype: np.dtype = F4) -> bytes:
    if vector is None:
        return b""
    return np.ascontiguousarray(vector, dtype=dtype).tobytes()


def _array(raw: bytes | None, dtype: np.dtype, empty: np.ndarray) -> np.ndarray:
    if not raw:
        return empty
    return np.frombuffer(raw, dtype=dtype)


def _vector(raw: bytes | None) -> np.ndarray | None:
    return np.frombuffer(raw, dtype=F4) if raw else None


def _half(raw: bytes | None) -> np.ndarray | None:
    return np.frombuffer(raw, dtype=F2).astype(F4) if raw else None


def _json(raw: bytes | None) -> Any:
    return orjson.loads(raw) if raw else None


def encode_batch(record: BatchRecord, compact: bool = False) -> dict[str, bytes]:
    """The hash fields of a batch record, features as JSON (every field, always; ``compact``:
    the vector as ``u2``, float16, and ``u`` empty, which halves its bytes at a relative error
    of about 1e-3). A bundle's bulk load packs the features instead (``feature_store.bulk_load``).
    """
    f4, f2 = (
        (b"", vector_bytes(record.user_vector, F2))
        if compact
        else (vector_bytes(record.user_vector), b"")
    )
    return {
        keys.BATCH_PACKED_FEATURES: b"",
        keys.BATCH_FEATURES: dumps(dict(record.features)),
        keys.BATCH_USER_VECTOR: f4,
        keys.BATCH_USER_VECTOR_F2: f2,
        keys.BATCH_HISTORY_ITEMS: vector_bytes(record.history_items, I4),
        keys.BATCH_HISTORY_COUNTS: vector_bytes(record.history_counts),
        keys.BATCH_HISTORY_LAST_DAYS: vector_bytes(record.history_last_days),
    }


def decode_batch(
    fields: Mapping[bytes, bytes], features: Mapping[str, Any] | None = None
) -> BatchRecord | None:
    """The batch record in an ``HGETALL`` answer; ``None`` when the hash does not exist.

    Packed features need their schema registered first (:func:`feature_pack.use`, which the
    readers do with the schema they read in the same round trip); ``features``: already
    decoded (:func:`decode_batches`)."""
    if not fields:
        return None
    get = fields.get
    if features is None:
        packed = get(_B_BATCH_PACKED_FEATURES)
        features = feature_pack.unpack(packed) if packed else (_json(get(_B_BATCH_FEATURES)) or {})
    return BatchRecord(
        features=features,
        user_vector=_vector(get(_B_BATCH_USER_VECTOR))
        if get(_B_BATCH_USER_VECTOR)
        else _half(get(_B_BATCH_USER_VECTOR_F2)),
        history_items=_array(get(_B_BATCH_HISTORY_ITEMS), I4, _EMPTY_I4),
        history_counts=_array(get(_B_BATCH_HISTORY_COUNTS), F4, _EMPTY_F4),
        history_last_days=_array(get(_B_BATCH_HISTORY_LAST_DAYS), F4, _EMPTY_F4),
    )


def decode_batches(hashes: Sequence[Mapping[bytes, bytes]]) -> list[BatchRecord | None]:
    """:func:`decode_batch` of many answers, packed features decoded together (by column)."""
    packed = [i for i, fields in enumerate(hashes) if fields.get(_B_BATCH_PACKED_FEATURES)]
    features: list[Mapping[str, Any] | None] = [None] * len(hashes)
    rows = feature_pack.unpack_many([hashes[i][_B_BATCH_PACKED_FEATURES] for i in packed])
    for i, row in zip(packed, rows, strict=True):
        features[i] = row
    return [decode_batch(h, f) for h, f in zip(hashes, features, strict=True)]


def encode_live(record: LiveRecord) -> dict[str, bytes]:
    """The hash fields of a live record (for tests, tools and writers that replace it whole)."""
    fields = {
        keys.LIVE_VIEWS: dumps(list(record.recent_views)),
        keys.LIVE_CART: dumps(list(record.cart)),
        keys.LIVE_PURCHASED: dumps({str(k): float(v) for k, v in record.purchased.items()}),
        keys.LIVE_DISLIKED: dumps(sorted(record.disliked)),
        keys.LIVE_FEATURES: dumps(dict(record.features)),
    }
    if record.user_vector is not None:
        fields[keys.LIVE_USER_VECTOR] = vector_bytes(record.user_vector)
    if record.user_vector_version is not None:
        fields[keys.LIVE_USER_VECTOR_VERSION] = record.user_vector_version.encode()
    return fields


def _strings(value: Any) -> list[str]:
    if not value:  # None, [] or cjson's {} for an empty table
        return []
    if isinstance(value, dict):
        value = value.values()
    return [str(item) for item in value]


EMPTY_LIVE = LiveRecord()


def decode_contacts(pairs: Sequence[tuple[bytes, float]] | None) -> dict[str, float]:
    """A ``ZRANGE ... WITHSCORES`` answer as member (``offer|channel``) -> Unix time (export)."""
    return {member.decode(): float(score) for member, score in pairs or ()}


def contact_member(offer_id: str, channel: str) -> str:
    """The contacts sorted-set member of one offer sent on one channel: ``offer_id|channel``."""
    return f"{offer_id}|{channel}"


def parse_contacts(pairs: Sequence[tuple[bytes, float]] | None) -> tuple[Contact, ...]:
    """A ``ZRANGE ... WITHSCORES`` answer as contacts (send time naive UTC, oldest first)."""
    out = []
    for member, score in pairs or ():
        offer_id, _, channel = member.decode("utf-8", "replace").partition("|")
        sent_at = datetime.fromtimestamp(float(score), UTC).replace(tzinfo=None)
        out.append(Contact(offer_id, channel, sent_at))
    return tuple(out)


def decode_live(
    fields: Mapping[bytes, bytes], contacts: Sequence[tuple[bytes, float]] | None = None
) -> LiveRecord:
    """The live record in an ``HGETALL`` answer (plus the contact history, when read)."""
    extra: dict[str, Any] = {}
    if contacts:
        extra["contacts"] = parse_contacts(contacts)
    if not fields and not extra:
        return EMPTY_LIVE
    get = fields.get
    purchased = _json(get(_B_LIVE_PURCHASED)) or {}
    vector_version = get(_B_LIVE_USER_VECTOR_VERSION)
    return LiveRecord(
        recent_views=tuple(_strings(_json(get(_B_LIVE_VIEWS)))),
        cart=tuple(_strings(_json(get(_B_LIVE_CART)))),
        purchased={str(k): float(v) for k, v in purchased.items()},
        disliked=frozenset(_strings(_json(get(_B_LIVE_DISLIKED)))),
        features=_json(get(_B_LIVE_FEATURES)) or {},
        user_vector=_vector(get(_B_LIVE_USER_VECTOR)),
        user_vector_version=None if vector_version is None else vector_version.decode(),
        **extra,
    )


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(x) else x for x in values.astype(float).tolist()]


def batch_to_json(record: BatchRecord) -> dict[str, Any]:
    """A batch record as plain JSON-able values (for a customer's data export)."""
    return {
        "features": dict(record.features),
        "user_vector": None if record.user_vector is None else _floats(record.user_vector),
        "history_items": np.asarray(record.history_items).astype(int).tolist(),
        "history_counts": _floats(np.asarray(record.history_counts)),
        "history_last_days": _floats(np.asarray(record.history_last_days)),
    }


def live_to_json(record: LiveRecord) -> dict[str, Any]:
    """A live record as plain JSON-able values (for a customer's data export)."""
    return {
        "recent_views": list(record.recent_views),
        "cart": list(record.cart),
        "purchased": dict(record.purchased),
        "disliked": sorted(record.disliked),
        "features": dict(record.features),
        "user_vector": None if record.user_vector is None else _floats(record.user_vector),
        "user_vector_version": record.user_vector_version,
    }


def decode_text(values: Iterable[bytes]) -> list[str]:
    return [v.decode("utf-8", "replace") for v in values]


def plain(value: Any) -> Any:
    """A raw Redis reply as JSON-able values: JSON text decoded, other bytes as text."""
    if isinstance(value, bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


_LIVE_KNOWN = {
    keys.LIVE_VIEWS,
    keys.LIVE_CART,
    keys.LIVE_PURCHASED,
    keys.LIVE_DISLIKED,
    keys.LIVE_FEATURES,
    keys.LIVE_USER_VECTOR_VERSION,
}


def export_form(entries: Iterable[tuple[str, str | None, Any]]) -> dict[str, Any]:
    """A customer's keys, as ``(suffix after the hash tag, Redis type, raw value)``, for export.

    ``batch`` maps each version holding a batch record to it; ``live`` is the live record with
    any further field of its hash (a writer's bookkeeping) under ``other_fields``, and there as
    ``agg`` the online state (suffix ``online``, its own key; where a store written before kept
    it: the layout of ``feature_store.keys``);
    ``contacts`` is offer -> Unix time; ``event_ids`` the applied event ids; ``other`` any
    further key by its suffix.
    """
    held: dict[str, Any] = {
        "batch": {},
        "live": None,
        "contacts": {},
        "event_ids": [],
        "other": {},
    }
    online: Any = None
    for suffix, kind, value in entries:
        if suffix == "online" and kind == "string":
            online = plain(value)
        elif suffix.startswith("v:") and kind == "hash":
            record = decode_batch(value)
            if record is not None:
                held["batch"][suffix[2:]] = batch_to_json(record)
        elif suffix == "live" and kind == "hash":
            live = live_to_json(decode_live(value))
            extra = {k.decode(): v for k, v in value.items() if k.decode() not in _LIVE_KNOWN}
            extra.pop(keys.LIVE_USER_VECTOR, None)
            live["other_fields"] = plain(extra)
            held["live"] = live
        elif suffix == "contacts" and kind == "zset":
            held["contacts"] = decode_contacts(value)
        elif suffix == "evt" and kind == "set":
            held["event_ids"] = sorted(decode_text(value))
        else:
            held["other"][suffix] = plain(value)
    if online is not None:
        if held["live"] is None:
            held["live"] = {**live_to_json(EMPTY_LIVE), "other_fields": {}}
        held["live"]["other_fields"][keys.LEGACY_LIVE_ONLINE] = online
    return held

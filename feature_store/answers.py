"""The page view's answer cache: a customer's last answer, stored in their own slot.

A page view's answer is decided by the model version, the catalogue (its revision), the
customer's records (the batch record never changes within a version; every write of the live
record bumps its ``rev`` field: the ingest script, the only writer of that hash) and the request's
parameters. So an answer stored under :func:`feature_store.keys.customer_answer` with the
**tag** ``<version>|<catalogue revision>|<live rev>|<16-byte signature of the parameters>`` is
exactly the answer of any later page view whose tag is the same: the page view reads the key in
its one round trip (:mod:`feature_store.reads`) and, when the stored value starts with the tag
it expects, answers the body without decoding the records or ranking.

The **body** (:func:`encode_body`, :func:`decode_body`): a format byte, the strategy (u1), then
the item rows (i4), the scores (f4) and the reason codes (u1, indices of the reason table
given), so ``k`` = 100 fits in 1 KB. A value over :data:`MAX_VALUE_BYTES` is not stored.

**The write-back** (:func:`store_command`): one ``EVAL`` of :data:`STORE` that sets the value
(with a TTL) only when the live record's revision is still the one read and the customer still
has a record (an erasure deletes every key of theirs, the answer key among them: a write-back
that crosses an erasure finds nothing and stores nothing). Every key is in the customer's hash
slot, so it runs on Redis Cluster too.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from feature_store import keys

#: A stored value (tag and body) is at most this long; a longer answer is not stored.
MAX_VALUE_BYTES: Final = 1024
FORMAT: Final = 1
_HEAD = struct.Struct("<BB")  # format, strategy code
_ITEM_BYTES = 4 + 4 + 1  # row i4, score f4, reason u1

#: The strategies an answer may be stored with (a fallback never is).
STRATEGIES: Final = ("personalized", "cold_start")

#: KEYS: live hash, batch hash (of the version), answer; ARGV: the live revision read ("0":
#: none), the value, the TTL (s). Returns 1 when stored, 0 when refused.
STORE: Final = f"""
if (redis.call('HGET', KEYS[1], '{keys.LIVE_REVISION}') or '0') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
return 1
"""

STORED, REFUSED, FAILED = "stored", "refused", "failed"


def tag(version: str, catalogue_revision: int, live_revision: bytes, signature: bytes) -> bytes:
    """What a stored answer must start with to be the answer of a page view that read these."""
    return b"%s|%d|%s|%s" % (version.encode(), catalogue_revision, live_revision, signature)


def live_revision(reply: Any) -> bytes:
    """The live record's ``rev`` as read (``HGET`` reply), ``b"0"`` when there is none, as the
    ingest and store scripts read it."""
    if reply is None:
        return b"0"
    return reply if isinstance(reply, bytes) else str(reply).encode()


def encode_body(
    strategy: str,
    rows: np.ndarray,
    scores: np.ndarray,
    reasons: Sequence[str],
    table: Sequence[str],
) -> bytes | None:
    """The stored body of an answer; None when it cannot be stored exactly (a strategy or a
    reason outside the tables, scores that are not float32)."""
    if strategy not in STRATEGIES or scores.dtype != np.float32:
        return None
    try:
        codes = bytes(table.index(reason) for reason in reasons)
    except ValueError:
        return None
    head = _HEAD.pack(FORMAT, STRATEGIES.index(strategy))
    return b"".join(
        (head, np.asarray(rows, dtype="<i4").tobytes(), scores.astype("<f4").tobytes(), codes)
    )


def decode_body(body: bytes, table: Sequence[str]) -> tuple[str, np.ndarray, np.ndarray, list[str]]:
    """The strategy, rows (i4), scores (f4) and reasons of a body of :func:`encode_body`;
    ValueError for a body this version cannot read."""
    if len(body) < _HEAD.size or (len(body) - _HEAD.size) % _ITEM_BYTES:
        raise ValueError(f"an answer body of {len(body)} bytes")
    fmt, strategy = _HEAD.unpack_from(body)
    if fmt != FORMAT or strategy >= len(STRATEGIES):
        raise ValueError(f"an answer body of format {fmt}, strategy {strategy}")
    n = (len(body) - _HEAD.size) // _ITEM_BYTES
    start = _HEAD.size
    rows = np.frombuffer(body, dtype="<i4", count=n, offset=start).astype(np.int32)
    scores = np.frombuffer(body, dtype="<f4", count=n, offset=start + 4 * n).astype(np.float32)
    reasons = [table[code] for code in body[start + 8 * n :]]
    return STRATEGIES[strategy], rows, scores, reasons


def store_command(
    prefix: str,
    customer_id: str,
    version: str,
    live_revision: bytes,
    value: bytes,
    ttl_s: int,
) -> tuple[Any, ...]:
    """The write-back of ``value`` (tag and body): ``EVAL`` of :data:`STORE`; its reply is 1
    when stored, 0 when refused (the customer wrote events since, or was erased)."""
    return (
        "EVAL",
        STORE,
        3,
        keys.customer_live(prefix, customer_id),
        keys.customer_batch(prefix, customer_id, version),
        keys.customer_answer(prefix, customer_id),
        live_revision,
        value,
        ttl_s,
    )


def outcome(reply: Any) -> str:
    """:data:`STORED` or :data:`REFUSED` from the script's reply."""
    return STORED if reply == 1 else REFUSED

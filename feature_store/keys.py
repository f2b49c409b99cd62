"""The Redis key schema: every key this project writes is built here, nowhere else.

Per-customer keys carry a hash tag (``{c:<customer_id>}``) so Redis Cluster keeps one
customer's keys on one slot and a pipeline over them stays on one node.

=====================================  ===========  =====================================
key                                    type         holds
=====================================  ===========  =====================================
``<p>:{c:<id>}:v:<version>``           hash         batch record of one model version
``<p>:{c:<id>}:live``                  hash         live record (what the routes read of
                                                    what happened since training)
``<p>:{c:<id>}:online``                string       online state (JSON, ``recsys.customers.
                                                    online_state``): read and written by the
                                                    event path only (see below)
``<p>:{c:<id>}:contacts``              sorted set   offers sent: member ``offer_id|channel``,
                                                    score the send time (Unix s); entries
                                                    older than the longest contact-policy
                                                    window are trimmed on write, and the key
                                                    expires that long after its newest entry
``<p>:{c:<id>}:ids``                   sorted set   event ids applied (idempotency): score the
                                                    time applied; bounded in age and number
                                                    (see ``feature_store.ingest``), expires
``<p>:{c:<id>}:evt``                   set          legacy: the unbounded event-id set of
                                                    older stores (only exported and erased)
``<p>:{c:<id>}:offers``                hash         offer id -> ``sent_at|cell|flags``: the
                                                    latest send of each offer (attribution)
``<p>:{c:<id>}:answer``                string       the last page view's answer, tagged with
                                                    what decided it (``feature_store.
                                                    answers``); expires
``<p>:{o:<offer>}:stats``              hash         per cell: ``s:<cell>`` sends,
                                                    ``r:<cell>`` responses (conversions),
                                                    ``k:<cell>`` clicks, ``d:<cell>`` dismissals
``<p>:{o:<offer>}:budget:<what>:<d>``  integer      budget used: ``sends``/``redemptions`` on
                                                    UTC day ``d`` (expires) or ``total``
``<p>:meta:active``                    string       the active model version
``<p>:meta:previous``                  string       the version active before the last switch
``<p>:meta:loaded:<version>``          string       set last by a completed bulk load (JSON)
``<p>:meta:loading:<version>``         string       lock held by the process loading it
``<p>:meta:versions``                  set          every version with batch records written
``<p>:meta:schema:<version>``          string       the packed features' schema of a version
                                                    (``feature_store.feature_pack``, JSON)
``<p>:{items}:overrides``              hash         item id -> JSON catalogue change
``<p>:{items}:rev``                    integer      bumped on every catalogue change
``<p>:events``                         stream       every accepted event, durable
``<p>:erased``                         set          erased customers, as keyed digests of
                                                    their ids (``feature_store.tombstones``)
``<p>:{erasure}:key``                  string       the digests' key, when none is configured
``<p>:{erasure}:check``                string       which key the digests were made with
``<p>:{<slot tag>}:events``            stream       Redis Cluster: the events of the customers
                                                    of one hash slot
``<p>:{<slot tag>}:erased``            set          Redis Cluster: the erased customers (digests)
                                                    of one hash slot
``<p>:meta:shards``                    set          Redis Cluster: the slots whose shards exist
=====================================  ===========  =====================================

The two catalogue keys share the hash tag ``{items}`` so that one ``MULTI`` can change both on
Redis Cluster too.

**Shards** (``feature_store.shards``): one Lua script writes a customer's records, their events
to the stream and checks the erased set, so on Redis Cluster all of those keys must share the
customer's slot. There, the stream and the erased set are sharded by slot: the shard of slot
``s`` has the hash tag :func:`slot_tag` ``(s)``, a short text whose CRC16 is ``s``, so
``<p>:{<slot tag>}:events`` lives on the same slot as ``<p>:{c:<id>}:*`` of every customer of
that slot. On one server (no cluster) there is one shard, the unsharded keys above.

The fields of the two per-customer hashes are named here too (``BATCH_*``, ``LIVE_*``): the
codec, the ingest path and the Lua scripts all take them from this module.

**The online state's own key.** The online state (every event's aggregate, up to ~100 KB for an
active customer) lives in ``<p>:{c:<id>}:online``, not in the live hash, so that no read of the
live hash carries it: the routes ``HMGET`` the record fields they use (:data:`LIVE_RECORD`,
:data:`LIVE_PAGE_VIEW`) and only the event path reads the state. Stores written before kept it
in the live hash's field ``agg`` (:data:`LEGACY_LIVE_ONLINE`); the event path reads that field
when the ``online`` key is absent and its first write of the customer moves it (``SET`` of the
key, ``HDEL`` of the field, in the same script): migrated on first write, and no route ever
reads it meanwhile (they name their fields).
"""

from __future__ import annotations

import re
from binascii import crc_hqx
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

from recsys import schema

CUSTOMER_ID_PATTERN = schema.CUSTOMER_ID_PATTERN  # the one alphabet, re-exported

# -- fields of the batch hash (``<p>:{c:<id>}:v:<version>``) --------------------------------
BATCH_FEATURES: Final = "f"  # JSON feature row (records loaded one by one)
BATCH_PACKED_FEATURES: Final = "p"  # packed feature row (a bundle's bulk load)
BATCH_USER_VECTOR: Final = "u"  # raw f4 factor vector
BATCH_USER_VECTOR_F2: Final = "u2"  # raw f2 factor vector (a compact load)
BATCH_HISTORY_ITEMS: Final = "hi"  # raw i4 item rows of the version
BATCH_HISTORY_COUNTS: Final = "hc"  # raw f4
BATCH_HISTORY_LAST_DAYS: Final = "hd"  # raw f4, days before as_of

# -- fields of the live hash (``<p>:{c:<id>}:live``) ----------------------------------------
LIVE_VIEWS: Final = "views"  # JSON list, newest first
LIVE_CART: Final = "cart"  # JSON list
LIVE_PURCHASED: Final = "purchased"  # JSON item id -> units since training
LIVE_DISLIKED: Final = "disliked"  # JSON list
LIVE_FEATURES: Final = "features"  # JSON online feature values
LIVE_USER_VECTOR: Final = "u"  # raw f4 folded-in vector
LIVE_USER_VECTOR_VERSION: Final = "uv"  # the version it was folded against
LIVE_REVISION: Final = "rev"  # integer, bumped by every write of events
#: Where stores written before kept the online state (now :func:`customer_online`): read by the
#: event path when that key is absent, deleted by its first write (see the module docstring).
LEGACY_LIVE_ONLINE: Final = "agg"

#: What a whole-record read takes of the two hashes (``HMGET``; ``recsys.store.BatchRecord``,
#: ``LiveRecord``): no revision, no legacy online state.
BATCH_RECORD: Final = (
    BATCH_FEATURES,
    BATCH_PACKED_FEATURES,
    BATCH_USER_VECTOR,
    BATCH_USER_VECTOR_F2,
    BATCH_HISTORY_ITEMS,
    BATCH_HISTORY_COUNTS,
    BATCH_HISTORY_LAST_DAYS,
)
LIVE_RECORD: Final = (
    LIVE_VIEWS,
    LIVE_CART,
    LIVE_PURCHASED,
    LIVE_DISLIKED,
    LIVE_FEATURES,
    LIVE_USER_VECTOR,
    LIVE_USER_VECTOR_VERSION,
)

#: What a page view reads of the two hashes (``HMGET``): no features JSON, no online state.
BATCH_PAGE_VIEW: Final = (
    BATCH_USER_VECTOR,
    BATCH_USER_VECTOR_F2,
    BATCH_HISTORY_ITEMS,
    BATCH_HISTORY_COUNTS,
    BATCH_HISTORY_LAST_DAYS,
)
LIVE_PAGE_VIEW: Final = (
    LIVE_VIEWS,
    LIVE_CART,
    LIVE_PURCHASED,
    LIVE_DISLIKED,
    LIVE_USER_VECTOR,
    LIVE_USER_VECTOR_VERSION,
)


def _tag(customer_id: str) -> str:
    return "{c:" + customer_id + "}"


def customer_batch(prefix: str, customer_id: str, version: str) -> str:
    return f"{prefix}:{_tag(customer_id)}:v:{version}"


def customer_live(prefix: str, customer_id: str) -> str:
    return f"{prefix}:{_tag(customer_id)}:live"


def customer_online(prefix: str, customer_id: str) -> str:
    """The customer's online state (JSON string; the event path's own, see the docstring)."""
    return f"{prefix}:{_tag(customer_id)}:online"


def customer_contacts(prefix: str, customer_id: str) -> str:
    return f"{prefix}:{_tag(customer_id)}:contacts"


def customer_event_ids(prefix: str, customer_id: str) -> str:
    return f"{prefix}:{_tag(customer_id)}:ids"


def legacy_customer_event_ids(prefix: str, customer_id: str) -> str:
    """The unbounded set older stores kept the applied event ids in (export and erase only)."""
    return f"{prefix}:{_tag(customer_id)}:evt"


def customer_offer_sends(prefix: str, customer_id: str) -> str:
    """The latest send of each offer to the customer, for response attribution."""
    return f"{prefix}:{_tag(customer_id)}:offers"


def customer_answer(prefix: str, customer_id: str) -> str:
    """The customer's last page-view answer (``feature_store.answers``: tag, then body)."""
    return f"{prefix}:{_tag(customer_id)}:answer"


# -- adaptive offers (``feature_store.offer_stats``) -----------------------------------------
#: Fields of the per-offer stats hash: ``<kind>:<cell>``.
STATS_SENDS: Final = "s"
STATS_RESPONSES: Final = "r"
STATS_CLICKS: Final = "k"
STATS_DISMISSALS: Final = "d"
BUDGET_TOTAL: Final = "total"


def _offer_tag(offer_id: str) -> str:
    return "{o:" + offer_id + "}"


def offer_stats(prefix: str, offer_id: str) -> str:
    """Counts of one offer's sends and responses per context cell (hash)."""
    return f"{prefix}:{_offer_tag(offer_id)}:stats"


def offer_budget(prefix: str, offer_id: str, what: str, day: str) -> str:
    """How much of one offer's budget of ``what`` (``sends``, ``redemptions``) is used on UTC
    ``day`` (``YYYY-MM-DD``) or in total (``day`` = :data:`BUDGET_TOTAL`)."""
    return f"{prefix}:{_offer_tag(offer_id)}:budget:{what}:{day}"


def offer_stats_pattern(prefix: str) -> str:
    """A SCAN pattern over every offer's stats hash (the model endpoint's export)."""
    return f"{prefix}:{{o:*}}:stats"


def customer_keys(prefix: str, customer_id: str, versions: Iterable[str]) -> list[str]:
    """Every key of one customer, by name, given the versions that may hold a batch record.

    Export and erase read or delete exactly these (no SCAN); a new per-customer key must be
    added here too, or erasure misses it.
    """
    return [
        *(customer_batch(prefix, customer_id, version) for version in versions),
        customer_live(prefix, customer_id),
        customer_online(prefix, customer_id),
        customer_contacts(prefix, customer_id),
        customer_event_ids(prefix, customer_id),
        legacy_customer_event_ids(prefix, customer_id),
        customer_offer_sends(prefix, customer_id),
        customer_answer(prefix, customer_id),
    ]


def customer_pattern(prefix: str, customer_id: str) -> str:
    """A SCAN pattern over every key of one customer (to verify an erasure; not a hot path)."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", customer_id)
    return f"{prefix}:{{c:{escaped}}}:*"


def live_pattern(prefix: str) -> str:
    """A SCAN pattern over every customer's live record (to enumerate customers known only
    from events, for the offers export; not a hot path)."""
    return f"{prefix}:{{c:*}}:live"


def customer_of_live_key(prefix: str, key: str) -> str | None:
    """The customer id in a live-record key of ``prefix``, or None for any other key."""
    head, tail = f"{prefix}:{{c:", "}:live"
    if not (key.startswith(head) and key.endswith(tail)):
        return None
    customer_id = key[len(head) : -len(tail)]
    return customer_id if schema.is_customer_id(customer_id) else None


def version_pattern(prefix: str, version: str) -> str:
    """A SCAN pattern over every batch record of one model version (to drop a version)."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", version)
    return f"{prefix}:{{c:*}}:v:{escaped}"


def active_version(prefix: str) -> str:
    return f"{prefix}:meta:active"


def previous_version(prefix: str) -> str:
    return f"{prefix}:meta:previous"


def loaded_marker(prefix: str, version: str) -> str:
    return f"{prefix}:meta:loaded:{version}"


def load_lock(prefix: str, version: str) -> str:
    return f"{prefix}:meta:loading:{version}"


def model_versions(prefix: str) -> str:
    """The set of versions whose batch records may exist (added before a load writes any)."""
    return f"{prefix}:meta:versions"


def feature_schema(prefix: str, version: str) -> str:
    """The schema of ``version``'s packed feature rows (written by its bulk load)."""
    return f"{prefix}:meta:schema:{version}"


def item_overrides(prefix: str) -> str:
    return f"{prefix}:{{items}}:overrides"


def item_revision(prefix: str) -> str:
    return f"{prefix}:{{items}}:rev"


SLOTS: Final = 16384  # Redis Cluster's hash slots


def event_stream(prefix: str, shard: str | None = None) -> str:
    """The event stream; ``shard``: a :func:`slot_tag` (Redis Cluster), None: unsharded."""
    return f"{prefix}:events" if shard is None else f"{prefix}:{{{shard}}}:events"


def erased_customers(prefix: str, shard: str | None = None) -> str:
    """The erased set; ``shard`` as for :func:`event_stream`."""
    return f"{prefix}:erased" if shard is None else f"{prefix}:{{{shard}}}:erased"


def erasure_key(prefix: str) -> str:
    """The key of the erased set's digests, kept in Redis when none is configured."""
    return f"{prefix}:{{erasure}}:key"


def erasure_check(prefix: str) -> str:
    """The digest of ``""`` under the key the erased set was written with (same slot as
    :func:`erasure_key`)."""
    return f"{prefix}:{{erasure}}:check"


def stream_shards(prefix: str) -> str:
    """Redis Cluster: the set of slots (decimal text) whose stream or erased shard was written."""
    return f"{prefix}:meta:shards"


def tag_slot(tag: str) -> int:
    """The hash slot of the keys with hash tag ``tag`` (Redis Cluster's CRC16 of it)."""
    return crc_hqx(tag.encode(), 0) % SLOTS


def customer_slot(customer_id: str) -> int:
    """The hash slot of every key of the customer."""
    return tag_slot("c:" + customer_id)


@lru_cache(maxsize=1)
def _slot_tags() -> tuple[str, ...]:
    """For every slot, the first text ``e<hex>`` whose CRC16 is that slot (found once, ~0.3 s)."""
    tags: list[str | None] = [None] * SLOTS
    left, n = SLOTS, 0
    while left:
        tag = f"e{n:x}"
        slot = crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            left -= 1
        n += 1
    return tuple(t for t in tags if t is not None)


def slot_tag(slot: int) -> str:
    """The hash tag of the stream and erased shards of ``slot`` (see the module docstring)."""
    return _slot_tags()[slot]

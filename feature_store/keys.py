"""The Redis key schema: every key this project writes is built here, nowhere else.

Per-customer keys carry a hash tag (``{c:<customer_id>}``) so Redis Cluster keeps one
customer's keys on one slot and a pipeline over them stays on one node.

=====================================  ===========  =====================================
key                                    type         holds
=====================================  ===========  =====================================
``<p>:{c:<id>}:v:<version>``           hash         batch record of one model version
``<p>:{c:<id>}:live``                  hash         live record (online state)
``<p>:{c:<id>}:contacts``              sorted set   offers sent: member ``offer_id|channel``,
                                                    score the send time (Unix s); entries
                                                    older than the longest contact-policy
                                                    window are trimmed on write, and the key
                                                    expires that long after its newest entry
``<p>:{c:<id>}:evt``                   set          event ids already applied (idempotency)
``<p>:{c:<id>}:offers``                hash         offer id -> ``sent_at|cell|flags``: the
                                                    latest send of each offer (attribution)
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
``<p>:{items}:overrides``              hash         item id -> JSON catalogue change
``<p>:{items}:rev``                    integer      bumped on every catalogue change
``<p>:events``                         stream       every accepted event, durable
``<p>:erased``                         set          erased customer ids (kept out of training)
=====================================  ===========  =====================================

The two catalogue keys share the hash tag ``{items}`` so that one ``MULTI`` can change both on
Redis Cluster too.

The fields of the two per-customer hashes are named here too (``BATCH_*``, ``LIVE_*``): the
codec, the ingest path and the Lua scripts all take them from this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from recsys import schema

CUSTOMER_ID_PATTERN = schema.CUSTOMER_ID_PATTERN  # the one alphabet, re-exported

# -- fields of the batch hash (``<p>:{c:<id>}:v:<version>``) --------------------------------
BATCH_FEATURES: Final = "f"  # JSON feature row
BATCH_USER_VECTOR: Final = "u"  # raw f4 factor vector
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
LIVE_ONLINE: Final = "agg"  # JSON online state (recsys.customers.online_state)
LIVE_REVISION: Final = "rev"  # integer, bumped by every write of events

#: What a page view reads of the two hashes (``HMGET``): no features JSON, no online state.
BATCH_PAGE_VIEW: Final = (
    BATCH_USER_VECTOR,
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


def customer_contacts(prefix: str, customer_id: str) -> str:
    return f"{prefix}:{_tag(customer_id)}:contacts"


def customer_event_ids(prefix: str, customer_id: str) -> str:
    return f"{prefix}:{_tag(customer_id)}:evt"


def customer_offer_sends(prefix: str, customer_id: str) -> str:
    """The latest send of each offer to the customer, for response attribution."""
    return f"{prefix}:{_tag(customer_id)}:offers"


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
        customer_contacts(prefix, customer_id),
        customer_event_ids(prefix, customer_id),
        customer_offer_sends(prefix, customer_id),
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
    return customer_id if CUSTOMER_ID_PATTERN.match(customer_id) else None


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


def item_overrides(prefix: str) -> str:
    return f"{prefix}:{{items}}:overrides"


def item_revision(prefix: str) -> str:
    return f"{prefix}:{{items}}:rev"


def event_stream(prefix: str) -> str:
    return f"{prefix}:events"


def erased_customers(prefix: str) -> str:
    return f"{prefix}:erased"

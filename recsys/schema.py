"""The normalized interaction table: the one shape every loader produces.

Every input format (``events``, ``online-retail``; CSV, gzip CSV or Parquet) is turned into a
pandas DataFrame with exactly the columns of :data:`INTERACTION_COLUMNS`, in that order:

=============  ==================  ============================================================
column         dtype               meaning
=============  ==================  ============================================================
customer_id    string (nullable)   the customer; missing for guest checkouts
event_type     string              one of :data:`EVENT_TYPES`
timestamp      datetime64[ns]      when it happened, naive UTC (local time for Online Retail)
item_id        string (nullable)   the product; missing for events without one (search, survey)
quantity       float64             units (positive; a return carries the returned units)
price          float64             unit price at the time of the event (NaN when unknown)
order_id       string (nullable)   the order/invoice the row belongs to
properties     string (nullable)   JSON object text (survey scores, search query, offer id...)
is_product     bool                False for non-product codes (postage, manual, bank charges)
event_id       string (nullable)   client-given idempotency key, when there is one
=============  ==================  ============================================================

The derived item catalogue has the columns of :data:`CATALOG_COLUMNS`.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

EventType = Literal[
    "view",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "return",
    "search",
    "email_open",
    "email_click",
    "survey",
    "offer_sent",
    "dislike",
    "offer_click",
    "offer_redeemed",
    "offer_dismissed",
]

EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)

# -- ids: the one definition, used by the events, the key schema, the routes and the OpenAPI --
# Each id has a ``*_REGEX`` (anchored with ``^...$``: the OpenAPI ``pattern`` and pydantic's
# pattern, both of which match ``$`` only at the very end) and a compiled ``*_PATTERN`` whose
# end anchor is ``\Z``: Python's ``$`` also matches before a trailing newline, so "15222\n"
# would pass as "15222". Nothing is stripped or rewritten into another id: an id with surrounding
# spaces or a newline is rejected.

#: Customer ids: what the Redis key schema's hash tag (``{c:<id>}``) and the URL paths accept.
CUSTOMER_ID_CHARS: Final = r"[A-Za-z0-9._:@+\-]"
CUSTOMER_ID_RULE: Final = "1-128 characters of A-Z a-z 0-9 . _ : @ + -"
CUSTOMER_ID_REGEX: Final = f"^{CUSTOMER_ID_CHARS}{{1,128}}$"
CUSTOMER_ID_PATTERN: Final = re.compile(f"{CUSTOMER_ID_CHARS}{{1,128}}\\Z")

#: Item ids: printable, no whitespace (so no newline) and none of the Redis glob / hash-tag
#: characters ``{ } * ? [ ] \`` (the item overrides, the URL paths and events accept these).
ITEM_ID_CHARS: Final = r"[^\s\x00-\x1f\x7f{}*?\[\]\\]"
ITEM_ID_RULE: Final = "1-128 characters, no whitespace, control characters or { } * ? [ ] \\"
ITEM_ID_REGEX: Final = f"^{ITEM_ID_CHARS}{{1,128}}$"
ITEM_ID_PATTERN: Final = re.compile(f"{ITEM_ID_CHARS}{{1,128}}\\Z")


def is_customer_id(value: object) -> bool:
    """True for a well-formed customer id (the whole string; no trailing newline)."""
    return isinstance(value, str) and CUSTOMER_ID_PATTERN.match(value) is not None


def is_item_id(value: object) -> bool:
    """True for a well-formed item id (the whole string; no trailing newline)."""
    return isinstance(value, str) and ITEM_ID_PATTERN.match(value) is not None


#: Columns of an ``events`` file, in file order: three required, the rest where they apply.
EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "customer_id",
    "event_type",
    "timestamp",
    "item_id",
    "quantity",
    "price",
    "order_id",
    "properties",
    "event_id",
)
REQUIRED_EVENT_COLUMNS: Final[tuple[str, ...]] = EVENT_COLUMNS[:3]

#: Event types that must name an item.
ITEM_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {"view", "add_to_cart", "remove_from_cart", "purchase", "return", "dislike"}
)

#: Responses to an offer (each names ``properties.offer_id``; ``offer_redeemed`` converts it).
OFFER_RESPONSE_TYPES: Final[frozenset[str]] = frozenset(
    {"offer_click", "offer_redeemed", "offer_dismissed"}
)

#: Survey metrics and their inclusive score ranges.
SURVEY_METRICS: Final[dict[str, tuple[int, int]]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}

INTERACTION_COLUMNS: Final[tuple[str, ...]] = (
    "customer_id",
    "event_type",
    "timestamp",
    "item_id",
    "quantity",
    "price",
    "order_id",
    "properties",
    "is_product",
    "event_id",
)

CATALOG_COLUMNS: Final[tuple[str, ...]] = ("item_id", "title", "category", "price", "in_stock")

InputFormat = Literal["auto", "events", "online-retail"]

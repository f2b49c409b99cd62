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

#: Customer ids: what the Redis key schema's hash tag (``{c:<id>}``) and the URL paths accept.
CUSTOMER_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:@+\-]{1,128}$")

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

"""One event of the ``events`` format, validated: the shape POST /v1/events accepts.

An event has the columns of the events format (api.md): ``customer_id, event_type, timestamp``
and, where they apply, ``item_id, quantity, price, order_id, properties, event_id``.

Rules (each broken rule is reported with the event's index and the field):

* ``customer_id`` matches :data:`recsys.schema.CUSTOMER_ID_PATTERN` (the key schema's hash tag
  needs it) and ``item_id`` :data:`recsys.schema.ITEM_ID_PATTERN`, the whole string: nothing is
  stripped, so an id with surrounding spaces or a trailing newline is rejected, never turned
  into another id.
* ``event_type`` is one of :data:`recsys.schema.EVENT_TYPES`.
* ``timestamp`` is optional: when omitted, the server's receive time is used. An ISO 8601 value
  with a zone is converted to UTC; one without a zone is taken as UTC. Stored naive UTC, as the
  interaction table holds it. More than :data:`MAX_FUTURE_SKEW` in the future, or before
  :data:`MIN_TIMESTAMP` (1970; pandas cannot even hold dates before 1677), is rejected.
* item events (:data:`recsys.schema.ITEM_EVENT_TYPES`) need ``item_id``.
* ``quantity`` is positive (default 1); ``price`` is finite and not negative (a purchase's
  price, when given, positive: training drops zero-price purchases).
* a ``survey`` carries ``properties = {"metric": m, "score": s}`` with ``m`` one of
  :data:`recsys.schema.SURVEY_METRICS` and ``s`` an integer in that metric's range.
* an ``offer_sent`` names the offer and channel in ``properties = {"offer_id": o, "channel":
  c}`` (each 1-128 characters without ``|``; the channel is case-folded): the contact policy
  counts it (:func:`offer_contact`). Either may be left out (older feeds know only the offer).
* ``properties`` is a JSON object of at most :data:`MAX_PROPERTIES_BYTES` whose numbers are all
  finite (``NaN`` and ``Infinity``, which Python's JSON parser accepts, are rejected).
* a response to an offer (:data:`recsys.schema.OFFER_RESPONSE_TYPES`: ``offer_click``,
  ``offer_redeemed``, ``offer_dismissed``) names the offer in ``properties.offer_id`` (required)
  and may name the channel; whether the offer exists is the serving offer set's to say.
* ``event_id`` (optional, up to 128 characters) makes the event idempotent; it and
  ``order_id`` hold no control characters.
* unknown fields are rejected (a misspelt ``item`` must not pass as an event without item).

:func:`validate_batch` validates a whole request: all events or none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.errors import InvalidEventError
from recsys.schema import (
    CUSTOMER_ID_REGEX,
    CUSTOMER_ID_RULE,
    INTERACTION_COLUMNS,
    ITEM_EVENT_TYPES,
    ITEM_ID_REGEX,
    ITEM_ID_RULE,
    OFFER_RESPONSE_TYPES,
    SURVEY_METRICS,
    EventType,
    is_customer_id,
    is_item_id,
)

MAX_FUTURE_SKEW: Final = timedelta(days=1)
MAX_PROPERTIES_BYTES: Final = 4096
#: The earliest event time accepted (naive UTC): older is a client bug, and before 1677 the
#: interaction table's ``datetime64[ns]`` cannot hold it at all (training would fail).
MIN_TIMESTAMP: Final = datetime(1970, 1, 1)
_TEXT_ID: Final = r"^[^\x00-\x1f\x7f]{1,128}$"  # order and event ids: no control characters
DEFAULT_MAX_EVENTS: Final = 1000


def utcnow() -> datetime:
    """Now, naive UTC (the interaction table's convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Event(BaseModel):
    """One validated event; ``timestamp`` is naive UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(
        json_schema_extra={"pattern": CUSTOMER_ID_REGEX},
        description=f"the customer the event is about: {CUSTOMER_ID_RULE}",
        examples=["17850"],
    )
    event_type: EventType = Field(
        description="what happened; item events (view, add_to_cart, remove_from_cart, "
        "purchase, return, dislike) need item_id, a survey needs properties.metric and "
        "properties.score, an offer response (offer_click, offer_redeemed, offer_dismissed) "
        "needs properties.offer_id",
        examples=["purchase"],
    )
    timestamp: datetime = Field(
        default_factory=utcnow,
        description="when it happened, ISO 8601; without a zone it is UTC; left out: the time "
        "the server receives it; at most a day in the future, not before 1970",
        examples=["2010-12-01T08:26:00Z"],
    )
    item_id: str | None = Field(
        default=None,
        json_schema_extra={"pattern": ITEM_ID_REGEX},
        description=f"the product ({ITEM_ID_RULE}); null for events without one (search, "
        "survey, email events)",
        examples=["85123A"],
    )
    quantity: float = Field(
        default=1.0,
        gt=0,
        allow_inf_nan=False,
        description="units, more than 0 (a return carries the units returned)",
        examples=[6],
    )
    price: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="the unit price at the time, in the shop's currency, 0 or more; null: unknown",
        examples=[2.55],
    )
    order_id: str | None = Field(
        default=None,
        pattern=_TEXT_ID,
        description="the order or invoice the event belongs to (a purchase's order counts "
        "once however many lines it has), up to 128 characters",
        examples=["536365"],
    )
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description=f"what else the event says, a JSON object of at most "
        f"{MAX_PROPERTIES_BYTES:,} bytes: a "
        'survey\'s {"metric": "nps"|"csat"|"ces", "score": n} (0-10, 1-5, 1-7), an offer '
        'event\'s {"offer_id": ..., "channel": ...}, a consent change\'s '
        '{"marketing_consent": false}',
        examples=[{"marketing_consent": True}],
    )
    event_id: str | None = Field(
        default=None,
        pattern=_TEXT_ID,
        description="the caller's id of the event, up to 128 characters: an event sent again "
        "with the same id is counted as a duplicate and not applied twice",
        examples=["web-2f6c1a"],
    )

    @field_validator("customer_id")
    @classmethod
    def _customer_id(cls, value: str) -> str:
        if not is_customer_id(value):
            raise ValueError(f"customer_id {value[:140]!r} must be {CUSTOMER_ID_RULE}")
        return value

    @field_validator("item_id")
    @classmethod
    def _item_id(cls, value: str | None) -> str | None:
        if value is not None and not is_item_id(value):
            raise ValueError(f"item_id {value[:140]!r} must be {ITEM_ID_RULE}")
        return value

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            try:
                value = value.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
                raise ValueError(
                    f"timestamp {value.isoformat()} is outside the representable range in UTC"
                ) from None
        if value > utcnow() + MAX_FUTURE_SKEW:
            raise ValueError(f"timestamp {value.isoformat()} is more than a day in the future")
        if value < MIN_TIMESTAMP:
            raise ValueError(
                f"timestamp {value.isoformat()} is before {MIN_TIMESTAMP.date().isoformat()}"
            )
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        path = _non_finite(value)
        if path is not None:
            raise ValueError(f"properties{path} is NaN or infinite (not valid JSON)")
        size = len(json.dumps(value, separators=(",", ":"), default=str))
        if size > MAX_PROPERTIES_BYTES:
            raise ValueError(f"properties is {size} bytes of JSON; at most {MAX_PROPERTIES_BYTES}")
        return value

    @model_validator(mode="after")
    def _rules_of_the_type(self) -> Event:
        if self.event_type in ITEM_EVENT_TYPES and not self.item_id:
            raise ValueError(f"a {self.event_type} event needs item_id")
        if self.event_type == "survey":
            survey_answer(self.properties)
        if self.event_type == "offer_sent":
            offer_contact(self.properties)
        if self.event_type in OFFER_RESPONSE_TYPES:
            found = offer_contact(self.properties)
            if found is None or not found[0]:
                raise ValueError(f"an {self.event_type} needs properties.offer_id")
        if self.event_type == "purchase" and self.price == 0:
            raise ValueError("a purchase's price must be positive when given (training drops 0)")
        return self

    @property
    def contact(self) -> tuple[str, str] | None:
        """``(offer_id, channel)`` of an ``offer_sent`` event ("" for a part not given)."""
        return offer_contact(self.properties) if self.event_type == "offer_sent" else None

    @property
    def offer(self) -> tuple[str, str] | None:
        """``(offer_id, channel)`` of an offer event (sent or a response), else None."""
        if self.event_type == "offer_sent" or self.event_type in OFFER_RESPONSE_TYPES:
            return offer_contact(self.properties)
        return None

    @property
    def survey(self) -> tuple[str, int] | None:
        """``(metric, score)`` of a survey event, else None."""
        return survey_answer(self.properties) if self.event_type == "survey" else None

    def to_row(self) -> dict[str, str]:
        """The event as text columns of the events format; absent values are left out."""
        row = {
            "customer_id": self.customer_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp.isoformat(timespec="microseconds"),
            "quantity": repr(self.quantity),
        }
        if self.item_id is not None:
            row["item_id"] = self.item_id
        if self.price is not None:
            row["price"] = repr(self.price)
        if self.order_id is not None:
            row["order_id"] = self.order_id
        if self.properties:
            row["properties"] = json.dumps(self.properties, separators=(",", ":"), default=str)
        if self.event_id is not None:
            row["event_id"] = self.event_id
        return row


def _non_finite(value: Any, path: str = "") -> str | None:
    """Where in ``value`` (a JSON value) a NaN or infinite number is, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, Mapping):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def to_interactions(events: Sequence[Event]) -> pd.DataFrame:
    """Events as the interaction table of :mod:`recsys.schema` (``is_product``: has an item)."""
    frame = pd.DataFrame(
        {
            "customer_id": [e.customer_id for e in events],
            "event_type": [e.event_type for e in events],
            "timestamp": pd.to_datetime([e.timestamp for e in events]),
            "item_id": [e.item_id for e in events],
            "quantity": np.array([e.quantity for e in events], dtype=np.float64),
            "price": np.array(
                [np.nan if e.price is None else e.price for e in events], dtype=np.float64
            ),
            "order_id": [e.order_id for e in events],
            "properties": [e.to_row().get("properties") for e in events],
            "is_product": np.array([e.item_id is not None for e in events], dtype=bool),
            "event_id": [e.event_id for e in events],
        },
        columns=list(INTERACTION_COLUMNS),
    )
    for name in ("customer_id", "event_type", "item_id", "order_id", "properties", "event_id"):
        frame[name] = frame[name].astype(pd.StringDtype())
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame


def survey_answer(properties: Mapping[str, Any]) -> tuple[str, int]:
    """``(metric, score)`` from survey properties, or ValueError saying what is wrong."""
    metric = properties.get("metric")
    if metric not in SURVEY_METRICS:
        raise ValueError(
            f"a survey needs properties.metric in {sorted(SURVEY_METRICS)}, got {metric!r}"
        )
    score = properties.get("score")
    low, high = SURVEY_METRICS[metric]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise ValueError(f"a {metric} survey needs a numeric properties.score, got {score!r}")
    if score != int(score) or not low <= score <= high:
        raise ValueError(f"{metric} score must be an integer from {low} to {high}, got {score!r}")
    return str(metric), int(score)


def offer_contact(properties: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(offer_id, channel)`` from offer_sent properties ("" for a part not given; None when
    neither is), or ValueError saying what is wrong."""
    parts: list[str] = []
    for name in ("offer_id", "channel"):
        value = properties.get(name)
        if value is None:
            parts.append("")
            continue
        text = value.strip() if isinstance(value, str) else ""
        if not 1 <= len(text) <= 128 or "|" in text:
            raise ValueError(
                f"an offer_sent needs properties.{name} of 1-128 characters without '|', "
                f"got {value!r}"
            )
        parts.append(text)
    offer_id, channel = parts[0], parts[1].casefold()
    return (offer_id, channel) if offer_id or channel else None


def _problem(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def validate_batch(raw: Sequence[object], max_events: int = DEFAULT_MAX_EVENTS) -> list[Event]:
    """All events of a request, validated, or :class:`InvalidEventError` for the first bad one."""
    if not raw:
        raise InvalidEventError(None, "events: at least one event is needed")
    if len(raw) > max_events:
        raise InvalidEventError(
            None, f"events: {len(raw)} events; at most {max_events} per request"
        )
    events: list[Event] = []
    for index, item in enumerate(raw):
        if isinstance(item, Event):
            events.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InvalidEventError(index, f"an event is a JSON object, got {type(item).__name__}")
        try:
            events.append(Event.model_validate(item))
        except ValidationError as exc:
            raise InvalidEventError(index, _problem(exc)) from None
    return events

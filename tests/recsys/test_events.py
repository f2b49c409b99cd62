"""The events format as POST /v1/events accepts it: rules, defaults and batch validation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from feature_store.keys import CUSTOMER_ID_PATTERN as KEY_PATTERN
from recsys.errors import InvalidEventError, InvalidRequestError
from recsys.events import Event, utcnow, validate_batch
from recsys.schema import (
    CUSTOMER_ID_PATTERN,
    EVENT_COLUMNS,
    EVENT_TYPES,
    INTERACTION_COLUMNS,
    ITEM_EVENT_TYPES,
    OFFER_RESPONSE_TYPES,
)


def valid(event_type: str) -> dict[str, object]:
    event: dict[str, object] = {"customer_id": "17850", "event_type": event_type}
    if event_type in ITEM_EVENT_TYPES:
        event["item_id"] = "85123A"
    if event_type == "survey":
        event["properties"] = {"metric": "nps", "score": 9}
    if event_type in OFFER_RESPONSE_TYPES:
        event["properties"] = {"offer_id": "welcome-5"}
    return event


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_has_a_valid_minimal_form(event_type: str) -> None:
    (event,) = validate_batch([valid(event_type)])
    assert event.event_type == event_type
    assert event.quantity == 1.0


@pytest.mark.parametrize("event_type", sorted(ITEM_EVENT_TYPES))
def test_item_events_without_item_id_are_rejected(event_type: str) -> None:
    raw = valid(event_type)
    del raw["item_id"]
    with pytest.raises(InvalidEventError, match=f"a {event_type} event needs item_id"):
        validate_batch([raw])


@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        ({}, "metric"),
        ({"metric": "stars", "score": 3}, "metric"),
        ({"metric": "nps"}, "numeric"),
        ({"metric": "nps", "score": 11}, "from 0 to 10"),
        ({"metric": "csat", "score": 0}, "from 1 to 5"),
        ({"metric": "ces", "score": 8}, "from 1 to 7"),
        ({"metric": "csat", "score": 4.5}, "integer"),
        ({"metric": "csat", "score": True}, "numeric"),
        ({"metric": "csat", "score": "4"}, "numeric"),
    ],
)
def test_survey_needs_a_known_metric_and_a_score_in_its_range(
    properties: dict[str, object], problem: str
) -> None:
    with pytest.raises(InvalidEventError, match=problem):
        validate_batch([{**valid("survey"), "properties": properties}])


def test_survey_answer_is_exposed_with_an_integer_score() -> None:
    (event,) = validate_batch([{**valid("survey"), "properties": {"metric": "csat", "score": 4.0}}])
    assert event.survey == ("csat", 4)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("quantity", 0, "quantity"),
        ("quantity", -2, "quantity"),
        ("price", -1.0, "price"),
        ("price", "nan", "price"),
        ("customer_id", "", "customer_id"),
        ("customer_id", "a b", "customer_id"),
        ("customer_id", "x" * 129, "customer_id"),
        ("event_type", "click", "event_type"),
        ("timestamp", "yesterday", "timestamp"),
        ("item", "85123A", "item"),
        ("properties", ["a"], "properties"),
        ("properties", {"blob": "x" * 5000}, "properties"),
        ("event_id", "", "event_id"),
    ],
)
def test_bad_fields_are_rejected_naming_the_field(field: str, value: object, problem: str) -> None:
    with pytest.raises(InvalidEventError, match=problem):
        validate_batch([{**valid("purchase"), field: value}])


def test_the_first_bad_event_is_named_by_its_index() -> None:
    raw = [valid("view"), valid("purchase"), {**valid("purchase"), "quantity": 0}, {"x": 1}]
    with pytest.raises(InvalidEventError) as caught:
        validate_batch(raw)
    assert caught.value.index == 2
    assert str(caught.value).startswith("events[2]: quantity")


def test_non_objects_and_empty_or_oversized_batches_are_rejected() -> None:
    with pytest.raises(InvalidEventError, match=r"events\[1\]: an event is a JSON object"):
        validate_batch([valid("view"), "view"])
    with pytest.raises(InvalidRequestError, match="at least one"):
        validate_batch([])
    with pytest.raises(InvalidRequestError, match="at most 3"):
        validate_batch([valid("view")] * 4, max_events=3)


def test_timestamp_defaults_to_server_time_and_is_stored_naive_utc() -> None:
    before = utcnow()
    (default, zoned) = validate_batch(
        [valid("view"), {**valid("view"), "timestamp": "2011-05-01T12:00:00+02:00"}]
    )
    assert before <= default.timestamp <= utcnow()
    assert default.timestamp.tzinfo is None
    assert zoned.timestamp == datetime(2011, 5, 1, 10, 0, 0)


def test_timestamps_far_in_the_future_are_rejected() -> None:
    future = (utcnow() + timedelta(days=3)).isoformat()
    with pytest.raises(InvalidEventError, match="future"):
        validate_batch([{**valid("view"), "timestamp": future}])


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_timestamps_outside_utc_range_are_rejected_not_crashing(stamp: str) -> None:
    with pytest.raises(InvalidEventError, match="representable range"):
        validate_batch([{**valid("view"), "timestamp": stamp}])


def test_to_row_gives_the_events_format_columns_and_round_trips() -> None:
    raw = {
        **valid("purchase"),
        "timestamp": "2011-05-01T10:00:00",
        "quantity": 3,
        "price": 2.55,
        "order_id": "536365",
        "properties": {"channel": "web"},
        "event_id": "e-1",
    }
    (event,) = validate_batch([raw])
    row = event.to_row()
    assert set(row) == set(EVENT_COLUMNS)
    assert set(EVENT_COLUMNS) <= set(INTERACTION_COLUMNS)
    assert Event.model_validate({**row, "properties": raw["properties"]}) == event


def test_customer_ids_the_key_schema_cannot_hash_tag_are_rejected() -> None:
    # one alphabet: what events accept is what the Redis keys can carry
    assert CUSTOMER_ID_PATTERN is KEY_PATTERN
    for bad in ("a{b", "a}b", "a b", "x" * 129, ""):
        with pytest.raises(InvalidRequestError):
            validate_batch([{"customer_id": bad, "event_type": "search"}])

"""The exact key strings: changing one strands data written under the old name."""

from __future__ import annotations

import binascii

import pytest

from feature_store import keys


def test_customer_keys_are_pinned() -> None:
    assert keys.customer_batch("pl", "17850", "20261122T185000Z-1a2b3c") == (
        "pl:{c:17850}:v:20261122T185000Z-1a2b3c"
    )
    assert keys.customer_live("pl", "17850") == "pl:{c:17850}:live"
    assert keys.customer_online("pl", "17850") == "pl:{c:17850}:online"
    assert keys.customer_contacts("pl", "17850") == "pl:{c:17850}:contacts"
    assert keys.customer_event_ids("pl", "17850") == "pl:{c:17850}:ids"
    assert keys.legacy_customer_event_ids("pl", "17850") == "pl:{c:17850}:evt"
    assert keys.customer_answer("pl", "17850") == "pl:{c:17850}:answer"


def test_customer_keys_name_every_key_of_one_customer() -> None:
    assert keys.customer_keys("pl", "17850", ["v1", "v2"]) == [
        "pl:{c:17850}:v:v1",
        "pl:{c:17850}:v:v2",
        "pl:{c:17850}:live",
        "pl:{c:17850}:online",
        "pl:{c:17850}:contacts",
        "pl:{c:17850}:ids",
        "pl:{c:17850}:evt",
        "pl:{c:17850}:offers",
        "pl:{c:17850}:answer",
    ]


def test_global_keys_are_pinned() -> None:
    assert keys.active_version("pl") == "pl:meta:active"
    assert keys.previous_version("pl") == "pl:meta:previous"
    assert keys.loaded_marker("pl", "v1") == "pl:meta:loaded:v1"
    assert keys.load_lock("pl", "v1") == "pl:meta:loading:v1"
    assert keys.model_versions("pl") == "pl:meta:versions"
    assert keys.item_overrides("pl") == "pl:{items}:overrides"
    assert keys.item_revision("pl") == "pl:{items}:rev"
    assert keys.event_stream("pl") == "pl:events"
    assert keys.erased_customers("pl") == "pl:erased"


def test_scan_patterns_are_pinned_and_escape_glob_characters() -> None:
    assert keys.customer_pattern("pl", "17850") == "pl:{c:17850}:*"
    assert keys.customer_pattern("pl", "a*b?[c]") == r"pl:{c:a\*b\?\[c\]}:*"
    assert keys.version_pattern("pl", "v1") == "pl:{c:*}:v:v1"
    assert keys.version_pattern("pl", "v[1]*") == r"pl:{c:*}:v:v\[1\]\*"
    assert keys.live_pattern("pl") == "pl:{c:*}:live"


def test_the_customer_of_a_live_key_is_read_back_and_other_keys_are_not_live() -> None:
    assert keys.customer_of_live_key("pl", keys.customer_live("pl", "a.b:17850")) == "a.b:17850"
    assert keys.customer_of_live_key("pl", keys.customer_contacts("pl", "17850")) is None
    assert keys.customer_of_live_key("pl", keys.customer_live("other", "17850")) is None


def _slot(key: str) -> int:
    """Redis Cluster's slot: CRC16 of the hash tag (binascii's CRC-CCITT is the same CRC16)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start != -1 and end > start + 1:
        key = key[start + 1 : end]
    return binascii.crc_hqx(key.encode(), 0) % 16384


def test_a_customers_keys_share_one_cluster_slot() -> None:
    customer_keys = [
        keys.customer_batch("pl", "17850", "v1"),
        keys.customer_batch("pl", "17850", "v2"),
        keys.customer_live("pl", "17850"),
        keys.customer_online("pl", "17850"),
        keys.customer_contacts("pl", "17850"),
        keys.customer_event_ids("pl", "17850"),
        keys.legacy_customer_event_ids("pl", "17850"),
    ]
    assert len({_slot(k) for k in customer_keys}) == 1
    assert _slot(keys.item_overrides("pl")) == _slot(keys.item_revision("pl"))


@pytest.mark.parametrize("good", ["17850", "c0000001", "a.b_c:d@e+f-g", "x" * 128])
def test_customer_id_pattern_accepts_ids_that_make_safe_keys(good: str) -> None:
    assert keys.CUSTOMER_ID_PATTERN.match(good)


@pytest.mark.parametrize("bad", ["", "a}b", "a{b", "a b", "a*", "x" * 129, "é"])
def test_customer_id_pattern_rejects_ids_that_would_break_the_hash_tag(bad: str) -> None:
    assert not keys.CUSTOMER_ID_PATTERN.match(bad)


def test_slot_helper_matches_redis_known_answer() -> None:
    # From the Redis Cluster specification: "123456789" hashes to 0x31C3 (12739).
    assert _slot("123456789") == 0x31C3


def test_no_record_read_of_the_live_hash_names_the_online_state() -> None:
    for fields in (keys.LIVE_RECORD, keys.LIVE_PAGE_VIEW):
        assert keys.LEGACY_LIVE_ONLINE not in fields and keys.LIVE_REVISION not in fields
    assert set(keys.LIVE_PAGE_VIEW) <= set(keys.LIVE_RECORD)
    assert set(keys.BATCH_PAGE_VIEW) <= set(keys.BATCH_RECORD)

"""The write script's offer keys: pinned, and built once per prefix, offer set and day."""

from __future__ import annotations

from feature_store import offer_attribution
from feature_store.offer_attribution import OFFER_KEYS, Attribution


def test_offer_keys_are_the_stats_and_budget_keys_in_offer_order() -> None:
    attribution = Attribution(offers=("a", "b"), window_s=7 * 86_400.0, day="2026-12-05")
    assert attribution.keys("p") == [
        "p:{o:a}:stats",
        "p:{o:a}:budget:redemptions:2026-12-05",
        "p:{o:a}:budget:redemptions:total",
        "p:{o:b}:stats",
        "p:{o:b}:budget:redemptions:2026-12-05",
        "p:{o:b}:budget:redemptions:total",
    ]
    assert len(attribution.keys("p")) == OFFER_KEYS * 2


def test_offer_keys_are_cached_across_requests_and_follow_the_day_and_prefix() -> None:
    offer_attribution._offer_keys.cache_clear()
    first = Attribution(offers=("a",), window_s=1.0, day="2026-12-05")
    again = Attribution(offers=("a",), window_s=1.0, day="2026-12-05")  # the next request's
    assert first.keys("p") == again.keys("p")
    assert offer_attribution._offer_keys.cache_info().hits == 1
    keys = first.keys("p")
    keys.append("changed by a caller")  # each call gets its own list
    assert "changed by a caller" not in again.keys("p")
    assert (
        Attribution(offers=("a",), window_s=1.0, day="2026-12-06")
        .keys("p")[1]
        .endswith("2026-12-06")
    )
    assert first.keys("q")[0] == "q:{o:a}:stats"

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recsys.decisions.contacts import Contact, channel_open, cooling_down
from recsys.decisions.offer_set import OFFER_TYPES, Condition, load_offer_set, parse_offer_set
from recsys.decisions.offers import offer_matrix, rank_offers, rank_offers_batch

NOW = datetime(2024, 7, 1, 12, 0)


@pytest.fixture(scope="module")
def offer_set():
    return load_offer_set()


def customer(**overrides):
    """A regular, satisfied, consenting customer with a churn risk of 0.2."""
    base = {
        "customer_id": "c1",
        "frequency": 4,
        "recency_days": 10.0,
        "orders_30d": 0,
        "orders_90d": 2,
        "avg_order_value": 200.0,
        "clv": 800.0,
        "churn_risk": 0.2,
        "cart_open_items": 0,
        "marketing_consent": True,
        "segment": "potential_loyalist",
        "nps": np.nan,
        "csat": np.nan,
    }
    return {**base, **overrides}


def ids(offers):
    return [o.offer_id for o in offers]


def test_shipped_catalogue_covers_every_offer_type(offer_set):
    assert {o.type for o in offer_set.offers} == set(OFFER_TYPES)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("<", 3, [True, False, False, False]),
        ("<=", 3, [True, True, False, False]),
        (">", 3, [False, False, True, False]),
        (">=", 3, [False, True, True, False]),
        ("==", 3, [False, True, False, False]),
        ("!=", 3, [True, False, True, True]),
        ("in", [2, 5], [True, False, True, False]),
    ],
)
def test_condition_operators_on_numbers_with_missing_values(op, value, expected):
    table = pd.DataFrame({"frequency": [2, 3, 5, np.nan]})
    assert Condition(feature="frequency", op=op, value=value).holds(table).tolist() == expected


def test_condition_on_text_and_on_a_single_dict():
    table = pd.DataFrame({"segment": ["loyal", "lost", None]})
    cond = Condition(feature="segment", op="in", value=["loyal", "champions"])
    assert cond.holds(table).tolist() == [True, False, False]
    assert cond.holds({"segment": "champions"}).tolist() == [True]
    assert Condition(feature="segment", op="==", value="lost").holds(table).tolist() == [
        False,
        True,
        False,
    ]


def test_catalogue_rejects_unknown_operators_and_types():
    bad_op = {
        "offers": [
            {
                "offer_id": "x",
                "type": "discount",
                "title": "t",
                "conditions": [{"feature": "a", "op": "=~", "value": 1}],
            }
        ]
    }
    bad_type = {"offers": [{"offer_id": "x", "type": "lottery", "title": "t"}]}
    for data in (bad_op, bad_type):
        with pytest.raises(ValidationError):
            parse_offer_set(data)


def test_regular_customer_gets_the_discount_with_recommended_items(offer_set):
    offers = rank_offers(customer(), offer_set, now=NOW, items=["i1", "i2"], k=5)
    assert ids(offers)[0] == "favourites-10"
    assert offers[0].items == ["i1", "i2"]
    assert offers[0].discount_pct == 10
    # 0.25 * 200 * (0.04 + 0.08 * 0.8 + 0.04) - 0.2
    assert offers[0].score == pytest.approx(0.25 * 200 * 0.144 - 0.2)
    assert "win-back-15" not in ids(offers) and "service-recovery" not in ids(offers)


def test_offer_that_needs_items_is_dropped_without_items(offer_set):
    assert "favourites-10" not in ids(rank_offers(customer(), offer_set, now=NOW, k=5))


def test_high_churn_risk_gets_a_win_back_offer(offer_set):
    offers = rank_offers(customer(churn_risk=0.9), offer_set, now=NOW, items=["i1"], k=5)
    assert ids(offers)[0] == "win-back-15"
    assert "churn risk 0.90" in offers[0].reason


def test_cart_reminder_needs_a_cart_and_shows_the_cart(offer_set):
    assert "cart-reminder" not in ids(rank_offers(customer(), offer_set, now=NOW, items=["i1"]))
    offers = rank_offers(customer(), offer_set, now=NOW, items=["i1"], cart=["c9", "c8"], k=8)
    reminder = next(o for o in offers if o.offer_id == "cart-reminder")
    assert reminder.items == ["c9", "c8"]


def test_a_cart_reminder_never_lists_recommended_items_instead_of_the_cart(offer_set):
    """Training saw an open cart, but the live cart is empty now: nothing to remind of."""
    stale = customer(cart_open_items=2)
    offers = rank_offers(stale, offer_set, now=NOW, items=["i1", "i2"], cart=[], k=8)
    assert "cart-reminder" not in ids(offers)
    assert all(o.items != ["i1", "i2"] or o.type != "cart_reminder" for o in offers)


def test_new_customer_gets_welcome_and_promoter_gets_referral(offer_set):
    assert "welcome-5" in ids(rank_offers(customer(frequency=1), offer_set, now=NOW, k=8))
    promoter = rank_offers(customer(nps=10), offer_set, now=NOW, k=8)
    assert "refer-a-friend" in ids(promoter)
    assert "refer-a-friend" not in ids(rank_offers(customer(nps=8), offer_set, now=NOW, k=8))


def test_recent_buyer_gets_review_request_even_without_consent(offer_set):
    offers = rank_offers(
        customer(orders_30d=1, marketing_consent=False), offer_set, now=NOW, items=["i1"], k=8
    )
    assert ids(offers) == ["review-request"]  # the only non-marketing offer they qualify for


def test_no_marketing_offer_without_consent(offer_set):
    offers = rank_offers(
        customer(marketing_consent=False, churn_risk=0.9, nps=10),
        offer_set,
        now=NOW,
        items=["i1"],
        cart=["i2"],
        k=8,
    )
    assert offers == []


@pytest.mark.parametrize("survey", [{"nps": 3}, {"csat": 2}])
def test_detractor_gets_service_recovery_and_never_a_sales_push(offer_set, survey):
    offers = rank_offers(
        customer(churn_risk=0.9, orders_30d=1, **survey),
        offer_set,
        now=NOW,
        items=["i1"],
        cart=["i2"],
        k=8,
    )
    assert ids(offers) == ["service-recovery"]
    assert "unhappy" in offers[0].reason


def test_service_recovery_only_for_detractors(offer_set):
    assert "service-recovery" not in ids(rank_offers(customer(nps=7), offer_set, now=NOW, k=8))


def test_validity_window_and_channel():
    cat = parse_offer_set(
        {
            "offers": [
                {
                    "offer_id": "summer",
                    "type": "welcome",
                    "title": "t",
                    "value": 10,
                    "valid_from": "2024-06-01",
                    "valid_until": "2024-07-01",
                    "channels": ["email"],
                },
            ]
        }
    )
    c = customer(frequency=1)
    assert ids(rank_offers(c, cat, now=datetime(2024, 6, 30))) == ["summer"]
    assert rank_offers(c, cat, now=datetime(2024, 7, 1)) == []
    assert rank_offers(c, cat, now=datetime(2024, 6, 30), channel="sms") == []


def test_frequency_cap_send_ask_again_get_none_then_after_expiry_get_one(offer_set):
    c = customer(nps=10)
    first = rank_offers(c, offer_set, now=NOW, channel="email", items=["i1"], k=1)
    assert len(first) == 1
    sent = [Contact(first[0].offer_id, "email", NOW)]
    later = NOW + timedelta(hours=1)
    assert rank_offers(c, offer_set, now=later, channel="email", contacts=sent, items=["i1"]) == []
    # another channel is not capped by email contacts
    assert rank_offers(c, offer_set, now=later, channel="app", contacts=sent, items=["i1"])
    after_cap = NOW + timedelta(days=8)
    again = rank_offers(c, offer_set, now=after_cap, channel="email", contacts=sent, items=["i1"])
    assert len(again) == 1 and again[0].offer_id != first[0].offer_id  # same offer cooling down
    after_cooldown = NOW + timedelta(days=15)
    best = rank_offers(
        c, offer_set, now=after_cooldown, channel="email", contacts=sent, items=["i1"], k=1
    )
    assert ids(best) == ids(first)


def test_contact_policy_functions():
    policy = load_offer_set().contact_policy
    contacts = [Contact("a", "email", NOW - timedelta(days=3)), Contact("b", "app", NOW)]
    assert not channel_open(contacts, "email", NOW, policy)
    assert channel_open(contacts, "email", NOW + timedelta(days=4, seconds=1), policy)
    assert channel_open(contacts, "app", NOW, policy)  # app allows two a week
    assert channel_open(contacts, None, NOW, policy)  # no channel, no cap
    assert cooling_down(contacts, NOW, policy) == {"a", "b"}
    assert cooling_down(contacts, NOW + timedelta(days=12), policy) == {"b"}


def test_batch_equals_one_by_one(offer_set):
    rows = [
        customer(customer_id="a"),
        customer(customer_id="b", churn_risk=0.9),
        customer(customer_id="c", nps=2),
        customer(customer_id="d", marketing_consent=False),
        customer(customer_id="e", frequency=1, nps=10),
    ]
    items = {r["customer_id"]: ["i1", "i2"] for r in rows}
    contacts = {"e": [Contact("welcome-5", "email", NOW - timedelta(days=1))]}
    batch = rank_offers_batch(
        pd.DataFrame(rows), offer_set, now=NOW, items=items, contacts=contacts, k=3
    )
    single = [
        rank_offers(
            r,
            offer_set,
            now=NOW,
            items=items[r["customer_id"]],
            contacts=contacts.get(r["customer_id"], ()),
            k=3,
        )
        for r in rows
    ]
    assert [ids(x) for x in batch] == [ids(x) for x in single]
    assert [[o.score for o in x] for x in batch] == [[o.score for o in x] for x in single]


def test_offer_matrix_is_vectorized_over_customers(offer_set):
    table = pd.DataFrame([customer(), customer(nps=1)])
    eligible, value = offer_matrix(table, offer_set, NOW)
    assert eligible.shape == value.shape == (2, len(offer_set.offers))
    recovery = [o.offer_id for o in offer_set.offers].index("service-recovery")
    assert eligible[:, recovery].tolist() == [False, True]


@pytest.mark.parametrize(("channel", "k"), [("email", 3), ("app", 2), (None, 8)])
def test_batch_equals_one_by_one_for_a_mixed_set(offer_set, channel, k):
    """Every path of the choice at once: consent, detractors, carts with and without
    recommended items, offers cooling down, a capped channel, customers with no offer."""
    rows = [
        customer(customer_id="regular"),
        customer(customer_id="at-risk", churn_risk=0.9, recency_days=200.0),
        customer(customer_id="detractor", nps=2),
        customer(customer_id="no-consent", marketing_consent=False, orders_30d=1),
        customer(customer_id="promoter", frequency=1, nps=10),
        customer(customer_id="cart-no-items", cart_open_items=2),
        customer(customer_id="cart-items", cart_open_items=1),
        customer(customer_id="cooling", frequency=8, orders_30d=2),
        customer(customer_id="capped", frequency=6),
        customer(customer_id="nothing", frequency=np.nan, churn_risk=np.nan, clv=np.nan),
        customer(customer_id="regular"),  # twice: each answered
    ]
    items = {r["customer_id"]: ["i1", "i2", "i3"] for r in rows}
    for cid in ("cart-no-items", "promoter", "nothing"):
        items.pop(cid)
    carts = {"cart-no-items": ["c1", "c2"], "cart-items": ["c3"]}
    week = NOW - timedelta(days=2)
    contacts = {
        "cooling": [Contact(o.offer_id, "sms", week) for o in offer_set.offers[:3]],
        "capped": [
            Contact("x", "email", week),
            Contact("y", "app", week),
            Contact("z", "app", NOW - timedelta(hours=1)),
        ],
    }
    batch = rank_offers_batch(
        pd.DataFrame(rows), offer_set, now=NOW, channel=channel, contacts=contacts,
        items=items, carts=carts, k=k,
    )  # fmt: skip
    single = [
        rank_offers(
            r,
            offer_set,
            now=NOW,
            channel=channel,
            items=items.get(r["customer_id"], ()),
            cart=carts.get(r["customer_id"], ()),
            contacts=contacts.get(r["customer_id"], ()),
            k=k,
        )
        for r in rows
    ]
    assert batch == single  # every field: ids, items, reasons, scores
    assert any(batch) and not all(batch)

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.customers.features import FEATURE_COLUMNS, FEATURES_DOC, compute_customer_features
from recsys.schema import INTERACTION_COLUMNS

AS_OF = pd.Timestamp("2024-07-01")


def _ev(
    customer: str | None,
    kind: str,
    days_before: float,
    item: str | None = None,
    qty: float = 1.0,
    price: float = float("nan"),
    order: str | None = None,
    props: dict | None = None,
    is_product: bool = True,
) -> dict:
    return {
        "customer_id": customer,
        "event_type": kind,
        "timestamp": AS_OF - pd.Timedelta(days=days_before),
        "item_id": item,
        "quantity": qty,
        "price": price,
        "order_id": order,
        "properties": json.dumps(props) if props is not None else None,
        "is_product": is_product,
        "event_id": None,
    }


def _table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df


@pytest.fixture
def interactions() -> pd.DataFrame:
    rows = [
        # customer a: three orders 100, 40 and 20 days ago, one return, postage line
        _ev("a", "purchase", 100, "i1", 2, 10.0, "o1"),
        _ev("a", "purchase", 100, "POST", 1, 5.0, "o1", is_product=False),
        _ev("a", "purchase", 40, "i2", 1, 30.0, "o2"),
        _ev("a", "purchase", 20, "i1", 1, 10.0, "o3"),
        _ev("a", "purchase", 20, "i3", 1, 20.0, "o3"),
        _ev("a", "return", 10, "i3", 1, 20.0, "c1"),
        _ev("a", "view", 5, "i4"),
        _ev("a", "view", 45, "i4"),
        _ev("a", "add_to_cart", 3, "i4"),
        _ev("a", "add_to_cart", 3, "i2"),
        _ev("a", "purchase", 2, "i2", 1, 30.0, "o4"),
        _ev("a", "survey", 50, props={"metric": "nps", "score": 4}),
        _ev("a", "survey", 8, props={"metric": "nps", "score": 10}),
        _ev("a", "survey", 8, props={"metric": "csat", "score": 2}),
        _ev("a", "email_open", 60),
        _ev("a", "email_open", 120),
        _ev("a", "email_click", 60),
        _ev("a", "view", 1, "i5", props={"marketing_consent": False}),
        # customer b: only views, once opted out then opted back in
        _ev("b", "view", 200, "i1", props={"consent": False}),
        _ev("b", "view", 3, "i1", props={"consent": True}),
        # guest purchase: ignored
        _ev(None, "purchase", 5, "i1", 1, 10.0, "o9"),
    ]
    return _table(rows)


@pytest.fixture
def catalog() -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": ["i1", "i2", "i3", "i4", "i5"], "category": ["x", "y", "y", "z", "z"]}
    )


def test_one_row_per_customer_with_every_documented_feature(interactions, catalog):
    feats = compute_customer_features(interactions, AS_OF, catalog)
    assert list(feats["customer_id"]) == ["a", "b"]
    assert list(feats.columns) == ["customer_id", *FEATURE_COLUMNS]
    assert set(FEATURES_DOC) == set(FEATURE_COLUMNS)


def test_rfm_and_order_figures_have_known_values(interactions, catalog):
    a = compute_customer_features(interactions, AS_OF, catalog).set_index("customer_id").loc["a"]
    assert a["frequency"] == 4
    assert a["recency_days"] == pytest.approx(2.0)
    # products only: 20 + 30 + (10 + 20) + 30 = 110 gross, minus the 20 returned
    assert a["monetary"] == pytest.approx(90.0)
    assert a["avg_order_value"] == pytest.approx(110.0 / 4)
    assert a["avg_repeat_order_value"] == pytest.approx(90.0 / 3)
    assert a["tenure_days"] == pytest.approx(120.0)
    assert a["return_rate"] == pytest.approx(20.0 / 110.0)
    gaps = np.array([60.0, 20.0, 18.0])
    assert a["inter_purchase_mean_days"] == pytest.approx(gaps.mean())
    assert a["inter_purchase_std_days"] == pytest.approx(gaps.std())
    assert (a["orders_30d"], a["orders_90d"]) == (2, 3)
    assert a["spend_30d"] == pytest.approx(30.0 + 30.0 - 20.0)
    assert a["spend_90d"] == pytest.approx(60.0 + 30.0 - 20.0)
    assert a["n_items_distinct"] == 3
    assert a["last_purchase_at"] == AS_OF - pd.Timedelta(days=2)


def test_behaviour_survey_and_consent_features(interactions, catalog):
    feats = compute_customer_features(interactions, AS_OF, catalog).set_index("customer_id")
    a, b = feats.loc["a"], feats.loc["b"]
    assert (a["views_30d"], a["carts_30d"]) == (2, 2)
    assert a["cart_open_items"] == 1  # i4 left in the cart, i2 bought afterwards
    assert (a["nps"], a["nps_mean"]) == (10.0, 7.0)
    assert a["csat"] == 2.0 and np.isnan(a["ces"])
    assert (a["email_opens_90d"], a["email_clicks_90d"]) == (1, 1)
    assert not a["marketing_consent"]
    assert b["marketing_consent"]
    # weights: x = 3 + 3 (i1 bought twice); y = 3 + 3 + 3 + 2 (i2 twice, i3, a cart of i2);
    # z = 1 + 1 + 2 + 1 (two views and a cart of i4, a view of i5)
    assert a["top_category"] == "y"
    assert a["top_category_share"] == pytest.approx(11.0 / 22.0)


def test_customer_without_purchase_has_missing_recency_and_zero_money(interactions):
    b = compute_customer_features(interactions, AS_OF).set_index("customer_id").loc["b"]
    assert b["frequency"] == 0 and b["monetary"] == 0.0
    assert np.isnan(b["recency_days"]) and pd.isna(b["last_purchase_at"])
    assert b["tenure_days"] == pytest.approx(200.0)
    assert b["top_category"] is None


def test_events_after_as_of_do_not_change_features(interactions, catalog):
    before = compute_customer_features(interactions, AS_OF, catalog)
    later = _table(
        [
            _ev("a", "purchase", 0, "i1", 5, 99.0, "o-late"),  # exactly at as_of: excluded
            _ev("a", "purchase", -3, "i1", 5, 99.0, "o-later"),
            _ev("a", "survey", -1, props={"metric": "nps", "score": 0}),
            _ev("a", "view", -1, props={"marketing_consent": True}),
            _ev("c", "view", -2, "i1"),
        ]
    )
    after = compute_customer_features(pd.concat([interactions, later]), AS_OF, catalog)
    pd.testing.assert_frame_equal(before, after)


def test_malformed_properties_are_ignored(interactions):
    bad = _table([_ev("a", "survey", 1), _ev("a", "survey", 1, props={"metric": "nps"})])
    bad.loc[0, "properties"] = "{not json"
    before = compute_customer_features(interactions, AS_OF)
    after = compute_customer_features(pd.concat([interactions, bad]), AS_OF)
    pd.testing.assert_frame_equal(before, after)


def test_missing_price_is_taken_from_the_catalogue():
    rows = [_ev("a", "purchase", 1, "i1", 2, float("nan"), "o1")]
    catalog = pd.DataFrame({"item_id": ["i1"], "category": ["x"], "price": [7.5]})
    feats = compute_customer_features(_table(rows), AS_OF, catalog)
    assert feats.loc[0, "monetary"] == pytest.approx(15.0)

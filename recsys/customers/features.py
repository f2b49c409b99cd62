"""The customer feature table: one row per customer, computed from the interaction table.

:func:`compute_customer_features` uses only events with ``timestamp < as_of`` (no leakage) and
returns one row per customer with at least one such event: column ``customer_id`` and the
features below. Everything is a vectorized groupby; nothing loops over customers.

Definitions (``D`` = a day; windows are ``[as_of - N days, as_of)``):

* an **order** is a distinct ``order_id`` of a ``purchase`` event (a purchase without an order id
  is its own order, keyed by customer and timestamp);
* **spend** counts product lines only (``is_product``): postage, manual adjustments, bank charges
  and other non-product codes are left out of every money figure, because they say nothing about
  what the customer wants and manual adjustments can be huge. A line's value is
  ``quantity * price``; a missing price is taken from the catalogue when one is given, else 0;
* **net spend** is purchases minus returns (cancellations), both as positive amounts;
* **marketing consent** is the value of ``marketing_consent`` (or ``consent``) in the
  ``properties`` of the customer's latest event that carries one; without any such event the
  customer counts as consenting (``True``), the state of an ordinary shop customer who has not
  opted out (the shop's export is expected to carry opt-outs).

========================  ==========================================================  =========
feature                   meaning                                                     unit
========================  ==========================================================  =========
recency_days              days from the last purchase to as_of (NaN: never bought)    days
frequency                 distinct orders                                             orders
monetary                  net spend: product purchases minus product returns          currency
avg_order_value           mean gross product value of an order (NaN: no order)        currency
avg_repeat_order_value    mean order value of all orders but the first (NaN: < 2)     currency
tenure_days               days from the first event of any kind to as_of              days
days_since_last_event     days from the latest event of any kind to as_of             days
first_seen_at             time of the first event                                     timestamp
last_purchase_at          time of the last purchase (NaT: never bought)               timestamp
first_purchase_at         time of the first purchase (NaT: never bought)              timestamp
inter_purchase_mean_days  mean days between consecutive orders (NaN: < 2 orders)      days
inter_purchase_std_days   std (ddof=0) of days between orders (NaN: < 2 orders)       days
orders_30d                orders in the last 30 days                                  orders
orders_90d                orders in the last 90 days                                  orders
spend_30d                 net spend in the last 30 days                               currency
spend_90d                 net spend in the last 90 days                               currency
return_rate               returned product value / purchased product value, in [0,1]  ratio
views_30d                 view events in the last 30 days                             events
carts_30d                 add_to_cart events in the last 30 days                      events
cart_open_items           items whose latest cart/purchase event is an add_to_cart    items
                          in the last 30 days (left in the cart)
n_items_distinct          distinct products bought                                    items
top_category              category with the largest interaction weight (purchase 3,   label
                          add_to_cart 2, view 1); None without a catalogue
top_category_share        that category's share of the customer's weight              ratio
nps                       latest NPS answer (0-10; NaN: none)                         score
nps_mean                  mean NPS answer                                             score
csat                      latest CSAT answer (1-5; NaN: none)                         score
csat_mean                 mean CSAT answer                                            score
ces                       latest CES answer (1-7; NaN: none)                          score
ces_mean                  mean CES answer                                             score
email_opens_90d           email_open events in the last 90 days                       events
email_clicks_90d          email_click events in the last 90 days                      events
marketing_consent         may receive marketing (see above)                           bool
========================  ==========================================================  =========
"""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np
import pandas as pd

from recsys.customers.lookup import map_strings

DAY: Final = pd.Timedelta(days=1)

FEATURES_DOC: Final[dict[str, tuple[str, str]]] = {
    "recency_days": ("days from the last purchase to as_of (NaN: never bought)", "days"),
    "frequency": ("distinct orders", "orders"),
    "monetary": ("net spend: product purchases minus product returns", "currency"),
    "avg_order_value": ("mean gross product value of an order (NaN: no order)", "currency"),
    "avg_repeat_order_value": (
        "mean order value of all orders but the first (NaN: fewer than 2 orders)",
        "currency",
    ),
    "tenure_days": ("days from the first event of any kind to as_of", "days"),
    "days_since_last_event": ("days from the latest event of any kind to as_of", "days"),
    "first_seen_at": ("time of the first event", "timestamp"),
    "last_purchase_at": ("time of the last purchase (NaT: never bought)", "timestamp"),
    "first_purchase_at": ("time of the first purchase (NaT: never bought)", "timestamp"),
    "inter_purchase_mean_days": (
        "mean days between consecutive orders (NaN: fewer than 2 orders)",
        "days",
    ),
    "inter_purchase_std_days": (
        "std (ddof=0) of days between consecutive orders (NaN: fewer than 2 orders)",
        "days",
    ),
    "orders_30d": ("orders in the last 30 days", "orders"),
    "orders_90d": ("orders in the last 90 days", "orders"),
    "spend_30d": ("net spend in the last 30 days", "currency"),
    "spend_90d": ("net spend in the last 90 days", "currency"),
    "return_rate": ("returned product value / purchased product value, in [0, 1]", "ratio"),
    "views_30d": ("view events in the last 30 days", "events"),
    "carts_30d": ("add_to_cart events in the last 30 days", "events"),
    "cart_open_items": (
        "items whose latest cart/purchase event is an add_to_cart in the last 30 days",
        "items",
    ),
    "n_items_distinct": ("distinct products bought", "items"),
    "top_category": (
        "category with the largest interaction weight (purchase 3, add_to_cart 2, view 1)",
        "label",
    ),
    "top_category_share": ("that category's share of the customer's weight", "ratio"),
    "nps": ("latest NPS answer (0-10; NaN: none)", "score"),
    "nps_mean": ("mean NPS answer", "score"),
    "csat": ("latest CSAT answer (1-5; NaN: none)", "score"),
    "csat_mean": ("mean CSAT answer", "score"),
    "ces": ("latest CES answer (1-7; NaN: none)", "score"),
    "ces_mean": ("mean CES answer", "score"),
    "email_opens_90d": ("email_open events in the last 90 days", "events"),
    "email_clicks_90d": ("email_click events in the last 90 days", "events"),
    "marketing_consent": ("may receive marketing (latest consent flag; default True)", "bool"),
}

FEATURE_COLUMNS: Final[tuple[str, ...]] = tuple(FEATURES_DOC)

_INT_FEATURES: Final = (
    "frequency",
    "orders_30d",
    "orders_90d",
    "views_30d",
    "carts_30d",
    "cart_open_items",
    "n_items_distinct",
    "email_opens_90d",
    "email_clicks_90d",
)
_TIME_FEATURES: Final = ("first_seen_at", "last_purchase_at", "first_purchase_at")
_CATEGORY_WEIGHTS: Final = {"purchase": 3.0, "add_to_cart": 2.0, "view": 1.0}
_SURVEY_METRICS: Final = ("nps", "csat", "ces")
_CART_WINDOW_DAYS: Final = 30


def compute_customer_features(
    interactions: pd.DataFrame,
    as_of: pd.Timestamp | str,
    catalog: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per customer with an event before ``as_of``; see the module docstring."""
    as_of = pd.Timestamp(as_of)
    ts = interactions["timestamp"]
    mask = ts.lt(as_of).to_numpy() & interactions["customer_id"].notna().to_numpy()
    columns = [c for c in interactions.columns if c != "event_id"]  # not a feature
    # every row (the usual case): no copy of the table (gigabytes at a million customers);
    # the columns set below are ev's own either way
    ev = interactions[columns] if mask.all() else interactions.loc[mask, columns]
    ev["customer_id"] = ev["customer_id"].astype(str)
    ev["event_type"] = ev["event_type"].astype(str)
    ev["age_days"] = (as_of - ev["timestamp"]) / DAY
    ev["value"] = _line_values(ev, catalog)
    customers = pd.Index(np.sort(ev["customer_id"].unique()), name="customer_id")

    parts = [
        _activity(ev, as_of),
        _orders(ev, as_of),
        _returns(ev),
        _event_counts(ev),
        _open_cart(ev),
        _categories(ev, catalog),
        _surveys(ev),
        _consent(ev),
    ]
    out = pd.concat([p.reindex(customers) for p in parts], axis=1)
    return _finish(out)


def _line_values(ev: pd.DataFrame, catalog: pd.DataFrame | None) -> pd.Series:
    price = ev["price"].astype(float)
    if catalog is not None and "price" in catalog.columns and price.isna().any():
        cat_price = catalog.drop_duplicates("item_id").set_index("item_id")["price"]
        price = price.fillna(map_strings(ev["item_id"], cat_price).astype(float))
    value = ev["quantity"].astype(float).abs() * price.fillna(0.0)
    return value.where(ev["is_product"].astype(bool), 0.0)


def _activity(ev: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    g = ev.groupby("customer_id", sort=False)["timestamp"]
    first, last = g.min(), g.max()
    return pd.DataFrame(
        {
            "first_seen_at": first,
            "tenure_days": (as_of - first) / DAY,
            "days_since_last_event": (as_of - last) / DAY,
        }
    )


def _orders(ev: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    buys = ev.loc[ev["event_type"].eq("purchase")]
    order_key = buys["order_id"].astype("string")
    order_key = order_key.fillna("t:" + buys["timestamp"].astype("string"))
    orders = (
        buys.assign(order_key=order_key)
        .groupby(["customer_id", "order_key"], sort=False)
        .agg(at=("timestamp", "min"), value=("value", "sum"))
        .reset_index()
        .sort_values(["customer_id", "at"], kind="stable")
    )
    orders["age_days"] = (as_of - orders["at"]) / DAY
    gap = orders.groupby("customer_id", sort=False)["at"].diff() / DAY
    orders["gap"] = gap
    g = orders.groupby("customer_id", sort=False)
    n = g.size()
    total, first_value = g["value"].sum(), g["value"].first()
    first, last = g["at"].min(), g["at"].max()
    products = buys.loc[buys["is_product"].astype(bool)]
    return pd.DataFrame(
        {
            "frequency": n,
            "gross_spend": total,
            "avg_order_value": total / n,
            "avg_repeat_order_value": ((total - first_value) / (n - 1)).where(n > 1),
            "first_purchase_at": first,
            "last_purchase_at": last,
            "recency_days": (as_of - last) / DAY,
            "inter_purchase_mean_days": g["gap"].mean(),
            "inter_purchase_std_days": g["gap"].std(ddof=0),
            "orders_30d": _recent_sum(orders.assign(one=1), "one", 30),
            "orders_90d": _recent_sum(orders.assign(one=1), "one", 90),
            "gross_30d": _recent_sum(orders, "value", 30),
            "gross_90d": _recent_sum(orders, "value", 90),
            "n_items_distinct": products.groupby("customer_id", sort=False)["item_id"].nunique(),
        }
    )


def _recent_sum(frame: pd.DataFrame, column: str, days: int) -> pd.Series:
    """Per customer, the sum of ``column`` over rows younger than ``days``."""
    recent = frame[column].where(frame["age_days"].lt(days), 0.0)
    return recent.groupby(frame["customer_id"], sort=False).sum()


def _returns(ev: pd.DataFrame) -> pd.DataFrame:
    ret = ev.loc[ev["event_type"].eq("return")]
    g = ret["value"].groupby(ret["customer_id"], sort=False)
    return pd.DataFrame(
        {
            "returned": g.sum(),
            "returned_30d": _recent_sum(ret, "value", 30),
            "returned_90d": _recent_sum(ret, "value", 90),
        }
    )


def _count_recent(ev: pd.DataFrame, event_type: str, days: int) -> pd.Series:
    hit = ev["event_type"].eq(event_type) & ev["age_days"].lt(days)
    return hit.groupby(ev["customer_id"], sort=False).sum()


def _event_counts(ev: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "views_30d": _count_recent(ev, "view", 30),
            "carts_30d": _count_recent(ev, "add_to_cart", 30),
            "email_opens_90d": _count_recent(ev, "email_open", 90),
            "email_clicks_90d": _count_recent(ev, "email_click", 90),
        }
    )


def _open_cart(ev: pd.DataFrame) -> pd.Series:
    kinds = ("add_to_cart", "remove_from_cart", "purchase")
    cart = ev.loc[ev["event_type"].isin(kinds) & ev["item_id"].notna()]
    latest = cart.sort_values("timestamp", kind="stable").drop_duplicates(
        ["customer_id", "item_id"], keep="last"
    )
    left = latest["event_type"].eq("add_to_cart") & latest["age_days"].lt(_CART_WINDOW_DAYS)
    return left.groupby(latest["customer_id"], sort=False).sum().rename("cart_open_items")


def _categories(ev: pd.DataFrame, catalog: pd.DataFrame | None) -> pd.DataFrame:
    if catalog is None or "category" not in catalog.columns:
        return pd.DataFrame(columns=["top_category", "top_category_share"])
    weight = map_strings(ev["event_type"], _CATEGORY_WEIGHTS)
    categories = catalog.drop_duplicates("item_id").set_index("item_id")["category"]
    cat = map_strings(ev["item_id"], categories)
    keep = weight.notna() & cat.notna()
    w = pd.DataFrame(
        {"customer_id": ev["customer_id"][keep], "category": cat[keep], "w": weight[keep]}
    )
    per = w.groupby(["customer_id", "category"], sort=False)["w"].sum().reset_index()
    per["share"] = per["w"] / per.groupby("customer_id", sort=False)["w"].transform("sum")
    # highest weight first; ties broken by category name so the answer is deterministic
    top = per.sort_values(["customer_id", "w", "category"], ascending=[True, False, True])
    top = top.drop_duplicates("customer_id").set_index("customer_id")
    return pd.DataFrame(
        {"top_category": top["category"].astype(object), "top_category_share": top["share"]}
    )


def _parse_properties(texts: pd.Series) -> list[dict[str, Any]]:
    """JSON object text -> dict; anything else (malformed, not an object) -> {}."""
    out: list[dict[str, Any]] = []
    for text in texts.tolist():
        try:
            value = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            value = None
        out.append(value if isinstance(value, dict) else {})
    return out


def _surveys(ev: pd.DataFrame) -> pd.DataFrame:
    sv = ev.loc[ev["event_type"].eq("survey") & ev["properties"].notna()]
    props = _parse_properties(sv["properties"])
    metric = pd.Series([p.get("metric") for p in props], index=sv.index, dtype=object)
    score = pd.to_numeric(
        pd.Series([p.get("score") for p in props], index=sv.index, dtype=object),
        errors="coerce",
    )
    answers = pd.DataFrame(
        {
            "customer_id": sv["customer_id"],
            "timestamp": sv["timestamp"],
            "metric": metric.astype(str).str.lower(),
            "score": score,
        }
    ).dropna(subset=["score"])
    answers = answers.loc[answers["metric"].isin(_SURVEY_METRICS)].sort_values(
        "timestamp", kind="stable"
    )
    g = answers.groupby(["customer_id", "metric"], sort=False)["score"]
    latest = g.last().unstack("metric")
    mean = g.mean().unstack("metric")
    cols: dict[str, pd.Series] = {}
    for name in _SURVEY_METRICS:
        empty = pd.Series(dtype=float)
        cols[name] = latest[name] if name in latest.columns else empty
        cols[f"{name}_mean"] = mean[name] if name in mean.columns else empty
    return pd.DataFrame(cols)


def _consent(ev: pd.DataFrame) -> pd.Series:
    props = ev["properties"]
    has = props.notna() & props.astype("string").str.contains("consent", regex=False).fillna(False)
    rows = ev.loc[has.astype(bool)]
    parsed = _parse_properties(rows["properties"])
    values = [p.get("marketing_consent", p.get("consent")) for p in parsed]
    flag = pd.Series(values, index=rows.index, dtype=object)
    valid = flag.map(lambda v: isinstance(v, bool))
    flags = pd.DataFrame(
        {"customer_id": rows["customer_id"], "timestamp": rows["timestamp"], "flag": flag}
    ).loc[valid.astype(bool)]
    latest = flags.sort_values("timestamp", kind="stable").drop_duplicates(
        "customer_id", keep="last"
    )
    return latest.set_index("customer_id")["flag"].astype(bool).rename("marketing_consent")


_MONEY_PARTS: Final = (
    "gross_spend",
    "returned",
    "gross_30d",
    "gross_90d",
    "returned_30d",
    "returned_90d",
)


def _finish(out: pd.DataFrame) -> pd.DataFrame:
    for name in _MONEY_PARTS:
        if name not in out.columns:
            out[name] = 0.0
        out[name] = out[name].astype(float).fillna(0.0)
    out["monetary"] = out["gross_spend"] - out["returned"]
    out["spend_30d"] = out["gross_30d"] - out["returned_30d"]
    out["spend_90d"] = out["gross_90d"] - out["returned_90d"]
    gross = out["gross_spend"]
    out["return_rate"] = (out["returned"] / gross.where(gross > 0)).clip(0.0, 1.0).fillna(0.0)
    for name in _INT_FEATURES:
        out[name] = out[name].fillna(0).astype(np.int64)
    for name in _TIME_FEATURES:
        out[name] = pd.to_datetime(out[name])
    if "top_category" not in out.columns:
        out["top_category"] = None
    top = out["top_category"].astype(object)
    out["top_category"] = top.where(top.notna(), None)
    consent = out["marketing_consent"] if "marketing_consent" in out.columns else None
    out["marketing_consent"] = (
        consent.astype(object).fillna(True).astype(bool) if consent is not None else True
    )
    float_cols = [c for c in FEATURE_COLUMNS if c not in _INT_FEATURES + _TIME_FEATURES]
    for name in float_cols:
        if name in ("top_category", "marketing_consent"):
            continue
        out[name] = out[name].astype(float)
    table = out[list(FEATURE_COLUMNS)].reset_index()
    table["customer_id"] = table["customer_id"].astype(object)
    return table

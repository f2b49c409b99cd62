"""The event path's question "is this product in the customer's batch history?" (``HistoryItems``)
answers as the list of the history's item ids did, and ``n_items_distinct`` counts alike."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from recsys.customers.live_update import HistoryItems, OnlineModel
from recsys.customers.online_features import online_features
from recsys.customers.online_state import OnlineState, apply_events
from recsys.events import Event
from recsys.store import BatchRecord

ITEMS = [f"i{k}" for k in range(10)]
MODEL = OnlineModel(
    version="v", as_of=None, item_ids=ITEMS, row_of={i: r for r, i in enumerate(ITEMS)}
)


def test_membership_is_that_of_the_history_item_ids() -> None:
    history = np.array([7, 2, 2, 11, -1, 0], dtype=np.int32)  # a repeat and out-of-range rows
    batch = BatchRecord(features={}, history_items=history)
    held = HistoryItems(MODEL, batch)
    ids = [ITEMS[r] for r in history.tolist() if 0 <= r < len(ITEMS)]  # what it replaces
    for item in [*ITEMS, "unknown", ""]:
        assert (item in held) == (item in ids), item
    assert "i7" in held and "i3" not in held
    assert "i0" not in HistoryItems(MODEL, None)
    assert "i0" not in HistoryItems(MODEL, BatchRecord(features={}))


def test_new_distinct_items_count_only_products_outside_the_history() -> None:
    t0 = datetime(2024, 1, 1)
    batch = BatchRecord(
        features={"n_items_distinct": 2, "frequency": 1},
        history_items=np.array([1, 4], dtype=np.int32),
    )
    bought = [
        Event.model_validate(
            {
                "customer_id": "c",
                "event_type": "purchase",
                "timestamp": t0 + timedelta(days=1, minutes=k),
                "item_id": item,
                "quantity": 1,
                "price": 2.0,
                "order_id": "o1",
            }
        )
        for k, item in enumerate(["i1", "i5", "i5", "i9", "new"])
    ]
    state = apply_events(OnlineState(), bought)
    row = online_features(
        state, batch.features, t0, t0 + timedelta(days=2), HistoryItems(MODEL, batch)
    )
    assert row["n_items_distinct"] == 2 + 3  # i5, i9 and an id the model does not know
    listed = online_features(state, batch.features, t0, t0 + timedelta(days=2), ["i1", "i4"])
    assert listed == row

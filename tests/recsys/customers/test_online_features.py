"""Online features equal training's features for the same history (recsys.customers.features).

A random history of many customers is split at the training date ``t0``: training's function
gives the batch rows at ``t0``; the later events are applied online in several requests; the
online row at ``as_of`` must equal training's function over the whole history at ``as_of``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from recsys.customers.features import FEATURE_COLUMNS, compute_customer_features
from recsys.customers.live_update import CustomerSnapshot, OnlineModel, plan_updates
from recsys.customers.online_features import changed, online_features
from recsys.customers.online_state import (
    OnlineState,
    apply_events,
    open_cart,
    purchase_weights,
    purchased_units,
    rebase,
    units_and_weights,
)
from recsys.events import Event, to_interactions
from recsys.ranking.foldin import FoldIn
from recsys.store import LiveRecord

T0 = datetime(2024, 3, 1)
PRICES = {f"i{n}": 1.0 + n for n in range(12)} | {f"cb{n}": 3.5 for n in range(4)}


def price_of(item: str) -> float | None:
    return PRICES.get(item)


def random_history(
    rng: np.random.Generator, customers: int, start: float, end: float, period: str
) -> list[Event]:
    """Events of every kind between ``T0 + start`` and ``T0 + end`` days.

    Before ``t0`` (period "old") carts use their own items ("ca*") and each survey metric is
    answered at most once; the batch row cannot say which cart items are open nor how many
    answers its means average (see the module docstring of recsys.customers.online_features).
    """
    events: list[Event] = []
    for c in range(customers):
        customer = f"c{c}"
        n = int(rng.integers(0, 25))
        answered: set[str] = set()
        for k in range(n):
            at = T0 + timedelta(days=float(rng.uniform(start, end)))
            kind = str(
                rng.choice(
                    ["purchase", "purchase", "return", "view", "view", "add_to_cart",
                     "remove_from_cart", "email_open", "email_click", "survey", "search",
                     "offer_sent"]
                )
            )  # fmt: skip
            item = f"i{rng.integers(0, 12)}"
            fields: dict[str, object] = {
                "customer_id": customer,
                "event_type": kind,
                "timestamp": at,
            }
            if kind in ("add_to_cart", "remove_from_cart"):
                pool = "ca" if period == "old" else "cb"
                item = f"{pool}{rng.integers(0, 4)}"
            if kind in ("purchase", "return", "view", "add_to_cart", "remove_from_cart"):
                fields["item_id"] = item
                fields["quantity"] = float(rng.integers(1, 4))
            if kind in ("purchase", "return"):
                if period == "new" and rng.random() < 0.3:
                    fields["item_id"] = f"cb{rng.integers(0, 4)}"
                if rng.random() < 0.7:
                    fields["price"] = float(rng.integers(1, 20)) / 2
                fields["order_id"] = f"{period}-{customer}-{k // 2}" if kind == "purchase" else None
            if kind == "survey":
                metric = str(rng.choice(["nps", "csat", "ces"]))
                if period == "old" and metric in answered:
                    continue
                answered.add(metric)
                low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[metric]
                fields["properties"] = {"metric": metric, "score": int(rng.integers(low, high + 1))}
            if kind == "email_open" and rng.random() < 0.3:
                fields["properties"] = {"marketing_consent": bool(rng.random() < 0.5)}
            events.append(Event.model_validate(fields))
    return events


def catalog() -> pd.DataFrame:
    return pd.DataFrame({"item_id": list(PRICES), "price": list(PRICES.values())})


def offline_rows(events: list[Event], as_of: datetime) -> dict[str, dict[str, object]]:
    table = compute_customer_features(to_interactions(events), pd.Timestamp(as_of), catalog())
    return {row["customer_id"]: row for row in table.to_dict("records")}


def online_rows(
    old: list[Event], new: list[Event], as_of: datetime, chunks: int, rng: np.random.Generator
) -> dict[str, dict[str, object]]:
    batch = offline_rows(old, T0)
    bought = {}
    for e in old:
        if e.event_type == "purchase":
            bought.setdefault(e.customer_id, set()).add(e.item_id)
    states: dict[str, OnlineState] = {}
    order = rng.permutation(len(new))  # requests arrive in any order
    for part in np.array_split(order, chunks):
        by_customer: dict[str, list[Event]] = {}
        for i in part:
            by_customer.setdefault(new[i].customer_id, []).append(new[i])
        for customer, events in by_customer.items():
            states[customer] = apply_events(states.get(customer, OnlineState()), events, price_of)
    out = {}
    for customer in set(batch) | set(states):
        state = OnlineState.from_json(states.get(customer, OnlineState()).to_json())
        row = batch.get(customer, {})
        out[customer] = online_features(
            state, row, T0 if row else None, as_of, bought.get(customer, ())
        )
    return out


def assert_rows_equal(offline: dict, online: dict) -> None:
    assert set(online) == set(offline)
    for customer, expected in offline.items():
        got = online[customer]
        for name in FEATURE_COLUMNS:
            want, have = expected[name], got[name]
            where = f"customer {customer}, {name}: offline {want!r}, online {have!r}"
            if isinstance(want, pd.Timestamp) or want is pd.NaT:
                want = None if want is pd.NaT else want.isoformat()
                assert have == want, where
            elif isinstance(want, bool | np.bool_):
                assert have == bool(want), where
            elif want is None or (isinstance(want, float) and math.isnan(want)):
                assert have is None or (isinstance(have, float) and math.isnan(have)), where
            elif isinstance(want, str):
                assert have == want, where
            else:
                assert have == pytest.approx(float(want), rel=1e-9, abs=1e-9), where


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_online_features_equal_training_features_after_the_windows_have_passed(seed: int) -> None:
    rng = np.random.default_rng(seed)
    old = random_history(rng, 40, -200, 0, "old")
    new = random_history(rng, 50, 0.001, 95, "new")  # 10 customers only ever seen online
    as_of = T0 + timedelta(days=100)
    assert_rows_equal(offline_rows(old + new, as_of), online_rows(old, new, as_of, 7, rng))


@pytest.mark.parametrize("seed", [4, 5])
def test_online_features_equal_training_features_inside_the_windows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    old = random_history(rng, 40, -20, 0, "old")  # every old event still inside every window
    new = random_history(rng, 40, 0.001, 5, "new")
    as_of = T0 + timedelta(days=6)
    assert_rows_equal(offline_rows(old + new, as_of), online_rows(old, new, as_of, 3, rng))


def ev(kind: str, item: str | None = None, day: float = 1.0, **fields: object) -> Event:
    return Event.model_validate(
        {
            "customer_id": "c1",
            "event_type": kind,
            "item_id": item,
            "timestamp": T0 + timedelta(days=day),
            **fields,
        }
    )


def test_live_lists_follow_the_events() -> None:
    state = apply_events(
        OnlineState(),
        [
            ev("view", "a", 1),
            ev("view", "b", 2),
            ev("view", "a", 3),
            ev("add_to_cart", "x", 1),
            ev("add_to_cart", "y", 2),
            ev("remove_from_cart", "x", 3),
            ev("purchase", "p", 2, quantity=2, order_id="o1"),
            ev("purchase", "p", 4, quantity=1, order_id="o2"),
            ev("purchase", "q", 4, quantity=1, order_id="o2"),
            ev("return", "q", 5, quantity=1),
            ev("dislike", "d", 5),
        ],
    )
    assert state.recent == ["a", "b"]
    assert open_cart(state) == ["y"]
    assert purchased_units(state) == {"p": 3.0}
    assert purchase_weights(state) == {"p": 2.0}
    assert state.disliked == ["d"]


def test_a_purchase_closes_the_cart_line_of_its_item() -> None:
    state = apply_events(OnlineState(), [ev("add_to_cart", "x", 1), ev("purchase", "x", 2)])
    assert open_cart(state) == []


def test_a_survey_answer_sets_the_latest_score_and_the_mean() -> None:
    batch = {"nps": 3.0, "nps_mean": 3.0, "csat": 2.0, "csat_mean": 2.0}
    state = apply_events(
        OnlineState(), [ev("survey", day=1, properties={"metric": "nps", "score": 9})]
    )
    row = online_features(state, batch, T0, T0 + timedelta(days=2))
    assert row["nps"] == 9 and row["nps_mean"] == 6.0
    assert row["csat"] == 2.0


def test_rebase_drops_what_a_newer_batch_row_already_counts() -> None:
    state = apply_events(
        OnlineState(),
        [ev("purchase", "p", 1, order_id="o1"), ev("purchase", "q", 10, order_id="o2")],
    )
    newer = rebase(state, (T0 + timedelta(days=5) - datetime(1970, 1, 1)).total_seconds())
    assert purchased_units(newer) == {"q": 1.0}


def test_state_round_trips_through_json() -> None:
    state = apply_events(OnlineState(), [ev("view", "a"), ev("purchase", "b", price=2.0)])
    assert OnlineState.from_json(state.to_json()) == state


def test_lines_stay_in_time_order_whatever_order_the_events_come_in() -> None:
    """Later events are appended, an earlier one is sorted in: the same state as all at once;
    units and order weights from one pass equal the two functions'."""
    events = [
        ev("purchase", "a", 1, order_id="o1"),
        ev("purchase", "b", 3, order_id="o2"),
        ev("return", "a", 4, order_id="o3"),
        ev("purchase", "a", 5, order_id="o4"),
        ev("purchase", "c", 2, order_id="o5"),
    ]
    at_once = apply_events(OnlineState(), events)
    state = OnlineState()
    for event in events:  # the last one is earlier than those before it
        state = apply_events(state, [event])
    assert state.lines == at_once.lines
    assert [line[0] for line in state.lines] == sorted(line[0] for line in state.lines)
    assert units_and_weights(state) == (purchased_units(state), purchase_weights(state))
    assert units_and_weights(state)[1] == {"a": 2.0, "b": 1.0, "c": 1.0}


def test_applying_events_leaves_the_state_it_started_from_unchanged() -> None:
    """The event path may reuse a parsed state (``feature_store.online_cache``): applying events
    to it must not change it."""
    state = apply_events(
        OnlineState(),
        [ev("view", "a"), ev("add_to_cart", "a"), ev("purchase", "b", price=2.0, order_id="o1")],
    )
    before = orjson.loads(orjson.dumps(state.to_json()))
    later = [ev("view", "c", 3), ev("add_to_cart", "c", 3), ev("email_open", None, 3)]
    apply_events(state, [*later, ev("remove_from_cart", "a", 4), ev("purchase", "d", 5)])
    assert orjson.loads(orjson.dumps(state.to_json())) == before


def test_changed_compares_numbers_with_missing_values_as_equal() -> None:
    assert not changed({"a": None, "b": 1.0}, {"a": float("nan"), "b": 1.0}, ["a", "b"])
    assert changed({"a": None}, {"a": 2.0}, ["a"])
    assert changed({"t": "x"}, {"t": None}, ["t"])
    assert not changed({}, {"a": None}, ["a"])


# -- plan_updates: the whole live record of one request --------------------------------------


class StubChurn:
    def __init__(self) -> None:
        self.rows = 0

    def score(self, features: np.ndarray) -> np.ndarray:
        self.rows += features.shape[0]
        return np.full(features.shape[0], 0.42)


def _model(churn: StubChurn | None = None) -> OnlineModel:
    factors = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    return OnlineModel(
        version="v2",
        as_of=T0,
        item_ids=["a", "b"],
        row_of={"a": 0, "b": 1},
        fold=FoldIn.from_factors(factors, 0.1, 2.0),
        churn=churn,
    )


def _snapshot(customer: str, **fields: object) -> CustomerSnapshot:
    return CustomerSnapshot(customer_id=customer, batch=None, live=LiveRecord(**fields))


def test_plan_rescores_churn_once_per_request_and_folds_in_on_purchases() -> None:
    churn = StubChurn()
    snaps = {"c1": _snapshot("c1"), "c2": _snapshot("c2")}
    events = [
        ev("purchase", "b", 2),
        Event.model_validate({"customer_id": "c2", "event_type": "view", "item_id": "a",
                              "timestamp": T0 + timedelta(days=2)}),
    ]  # fmt: skip
    plans = plan_updates(_model(churn), snaps, events, T0 + timedelta(days=3))
    assert churn.rows == 2
    assert plans["c1"].features["churn_risk"] == 0.42
    assert plans["c1"].refolded and plans["c1"].user_vector[1] > plans["c1"].user_vector[0]
    assert not plans["c2"].refolded and plans["c2"].recent_views == ["a"]
    assert plans["c1"].online["version"] == "v2"


def test_plan_refolds_a_vector_of_another_model_version() -> None:
    stale = _snapshot("c1", user_vector=np.array([1.0, 0.0], dtype=np.float32))
    plans = plan_updates(_model(), {"c1": stale}, [ev("view", "a", 2)], T0 + timedelta(days=3))
    assert plans["c1"].refolded and plans["c1"].user_vector is None  # nothing bought: cleared


def test_changed_with_its_shortcut_for_equal_values_answers_as_comparing_every_value() -> None:
    """``changed`` skips equal values of one type (the usual case: most features do not move);
    on every pair of these values it answers as the full comparison does."""
    import math

    from recsys.customers.online_state import _num

    def reference(a: object, b: object) -> bool:  # the comparison without the shortcut
        x, y = _num(a), _num(b)
        missing_a = a is None or (isinstance(a, float) and not math.isfinite(a))
        missing_b = b is None or (isinstance(b, float) and not math.isfinite(b))
        if x is None and y is None:
            return missing_a != missing_b or (not missing_a and a != b)
        return x is None or y is None or not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)

    values = [None, float("nan"), float("inf"), 0, 0.0, -0.0, 1, 1.0, True, False, 2.5,
              2.5 + 1e-12, "x", "x", "1.0", "", 10**20]  # fmt: skip
    for a in values:
        for b in values:
            assert changed({"f": a}, {"f": b}, ["f"]) == reference(a, b), (a, b)

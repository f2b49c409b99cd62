"""What one request of events does to each of its customers' live records (pure).

:func:`plan_updates` takes the model in memory (:class:`OnlineModel`), what the store holds of each
customer (:class:`CustomerSnapshot`, read in one round trip) and the request's new events
(duplicates already removed), and returns each customer's new live record (:class:`LiveUpdate`):

* the online state (``recsys.customers.online_features``) with the events applied, rebased first
  when the model version changed since it was last written;
* the lists the hot path reads: recent views, cart, purchased units since training, dislikes;
* the feature row at the request time, with ``churn_risk`` re-scored by the churn model when a churn
  input changed (one scorer call for the whole request);
* a folded-in factor vector (``recsys.ranking.foldin``) when the customer's purchases changed: batch
  history weights plus distinct live orders per item, the ALS weights of training (the request's
  customers solved together: one batched solve).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from recsys.customers.churn import BASE_FEATURES, ChurnScorer, churn_matrix
from recsys.customers.churn_row import churn_row
from recsys.customers.clv import BetaGeoModel
from recsys.customers.online_features import changed, online_features
from recsys.customers.online_state import (
    IsProduct,
    OnlineState,
    PriceOf,
    any_product,
    apply_events,
    no_price,
    open_cart,
    purchase_weights,
    rebase,
    to_iso,
    to_seconds,
    units_and_weights,
)
from recsys.events import Event
from recsys.ranking.foldin import FoldIn
from recsys.store import BatchRecord, LiveRecord


@dataclass(frozen=True)
class OnlineModel:
    """What the event path needs of the model in memory."""

    version: str | None
    as_of: datetime | None  # the batch rows' as_of (the bundle's)
    item_ids: Sequence[str] = ()
    row_of: Mapping[str, int] = field(default_factory=dict)
    fold: FoldIn | None = None
    churn: ChurnScorer | None = None
    churn_alive: BetaGeoModel | None = None  # the BG/NBD of the churn input's p_alive
    price_of: PriceOf = no_price
    is_product: IsProduct = any_product


@dataclass(frozen=True)
class CustomerSnapshot:
    """A customer's records as read before the write (``online``: the state's JSON)."""

    customer_id: str
    batch: BatchRecord | None
    live: LiveRecord
    online: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LiveUpdate:
    """A customer's new live record; ``user_vector`` None with ``refolded`` False: unchanged."""

    recent_views: list[str]
    cart: list[str]
    purchased: dict[str, float]
    disliked: list[str]
    features: dict[str, Any]
    online: dict[str, Any]
    user_vector: np.ndarray | None = None
    refolded: bool = False


class HistoryItems:
    """The products of a customer's batch history, as a container of item ids: whether it
    holds an item is one lookup of the item's row in the set of the history's rows, not a list
    of every history item's id rebuilt on each event. (Rows outside the model's items are never
    an item's row: ``row_of`` maps ids to rows in range.)"""

    __slots__ = ("_row_of", "_rows")

    def __init__(self, model: OnlineModel, batch: BatchRecord | None) -> None:
        self._row_of = model.row_of
        history = batch.history_items if batch is not None else ()
        self._rows = set(np.asarray(history, dtype=np.int64).tolist())

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and self._row_of.get(item) in self._rows


def fold_parts(
    model: OnlineModel,
    batch: BatchRecord | None,
    state: OnlineState,
    weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batch history's item rows and weights, and the live order counts' (item rows and
    weights), a customer is folded in with (``FoldIn.split_vectors``); ``weights``: the
    state's ``purchase_weights``, when the caller has them."""
    weights = purchase_weights(state) if weights is None else weights
    known = [(model.row_of[i], w) for i, w in weights.items() if i in model.row_of]
    live_rows = np.array([r for r, _ in known], dtype=np.int64)
    live_w = np.array([w for _, w in known], dtype=np.float64)
    if batch is not None and len(batch.history_items):
        batch_rows = np.asarray(batch.history_items, dtype=np.int64)
        batch_w = np.asarray(batch.history_counts, dtype=np.float64)
    else:
        batch_rows, batch_w = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return batch_rows, batch_w, live_rows, live_w


def fold_inputs(
    model: OnlineModel,
    batch: BatchRecord | None,
    state: OnlineState,
    weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The item rows and weights a customer is folded in with: batch history weights plus
    live order counts, merged (:func:`fold_parts` keeps them apart)."""
    batch_rows, batch_w, live_rows, live_w = fold_parts(model, batch, state, weights)
    rows, inverse = np.unique(np.concatenate([batch_rows, live_rows]), return_inverse=True)
    return rows, np.bincount(inverse, np.concatenate([batch_w, live_w]), minlength=rows.size)


def fold_vector(model: OnlineModel, batch: BatchRecord | None, state: OnlineState) -> np.ndarray:
    """The customer's vector from batch history weights plus live order counts."""
    assert model.fold is not None
    return model.fold.user_vector(*fold_inputs(model, batch, state))


def plan_updates(
    model: OnlineModel,
    snapshots: Mapping[str, CustomerSnapshot],
    events: Sequence[Event],
    now: datetime,
) -> dict[str, LiveUpdate]:
    """Each customer's new live record after ``events`` (see the module docstring)."""
    by_customer: dict[str, list[Event]] = {}
    for event in events:
        by_customer.setdefault(event.customer_id, []).append(event)
    base_as_of = to_seconds(model.as_of) if model.as_of is not None else None
    plans: dict[str, LiveUpdate] = {}
    rescore: list[str] = []
    refold: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for customer_id, mine in by_customer.items():
        snap = snapshots[customer_id]
        batch = snap.batch
        state = OnlineState.from_json(snap.online)
        new_version = state.version != model.version
        if new_version and batch is not None:
            state = rebase(state, base_as_of)
        state = apply_events(state, mine, model.price_of, model.is_product)
        state.version = model.version
        # the request's own events count: they are "before as_of"
        as_of = max(now, max(e.timestamp for e in mine)) + timedelta(microseconds=1)
        as_of_s = to_seconds(as_of)
        batch_features = dict(batch.features) if batch is not None else {}
        features = online_features(
            state,
            batch_features,
            model.as_of if batch is not None else None,
            as_of,
            HistoryItems(model, batch),
        )
        previous = dict(snap.live.features) or batch_features
        features["churn_risk"] = previous.get("churn_risk")
        features["features_as_of"] = to_iso(as_of_s)
        if model.churn is not None and changed(previous, features, BASE_FEATURES):
            rescore.append(customer_id)
        bought = any(e.event_type in ("purchase", "return") for e in mine)
        units, weights = units_and_weights(state)
        if model.fold is not None and (
            bought or (new_version and snap.live.user_vector is not None)
        ):
            refold[customer_id] = fold_parts(model, batch, state, weights)
        plans[customer_id] = LiveUpdate(
            recent_views=list(state.recent),
            cart=open_cart(state, as_of_s),
            purchased=units,
            disliked=list(state.disliked),
            features=features,
            online=state.to_json(),
        )
    if refold and model.fold is not None:
        for customer_id, vector in zip(
            refold, model.fold.split_vectors(list(refold.values())), strict=True
        ):
            # nothing to fold (all zeros): the batch vector (if any) stands
            folded = vector if np.any(vector) else None
            plans[customer_id] = replace(plans[customer_id], user_vector=folded, refolded=True)
    if rescore and model.churn is not None:
        rows = [plans[c].features for c in rescore]
        # one customer (a single event): plain floats, the same numbers (recsys.customers.churn_row)
        single = churn_row(rows[0], model.churn_alive) if len(rows) == 1 else None
        matrix = single if single is not None else churn_matrix(rows, model.churn_alive)
        risks = model.churn.score(matrix)
        for customer_id, risk in zip(rescore, np.asarray(risks).tolist(), strict=True):
            plans[customer_id].features["churn_risk"] = float(risk)
    return plans
